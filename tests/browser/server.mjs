// Starts `inloop serve` on a fresh loopback port for the browser tests.

import { spawn } from "node:child_process";

/** Starts `bin serve` on the database `dbUrl`; resolves with its process, URL and setup link. */
export function startServer(bin, dbUrl) {
  const proc = spawn(bin, ["serve", "--bind", "127.0.0.1:0"], {
    env: { ...process.env, INLOOP_DATABASE_URL: dbUrl, INLOOP_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no setup link from inloop serve:\n${out}`)), 30000);
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      const url = out.match(/listening on (http:\/\/[\d.:]+)/);
      const setup = out.match(/(http:\/\/\S+\/setup\?token=\S+)/);
      if (url && setup) {
        clearTimeout(timer);
        resolve({ proc, url: url[1], setup: setup[1] });
      }
    });
    proc.on("exit", (code) => reject(new Error(`inloop serve exited with ${code}:\n${out}`)));
  });
}
