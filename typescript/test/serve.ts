// `inloop serve` for the remote-mode tests (remote.test.ts, policies.test.ts): each test starts
// the server from the `inloop` CLI (`serve --bind 127.0.0.1:PORT`, database from
// INLOOP_DATABASE_URL) and creates an API key with
// `inloop apikey create --name agent --namespace NS --allow-answer --json` (field "secret").
// The CLI is `$INLOOP_CLI`, else `$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/debug/inloop`,
// else the venv's console script `../.venv/bin/inloop` (scripts/test.sh builds both first).
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Client } from "../src/index.js";
import { sleep } from "./helpers.js";

const run = promisify(execFile);

/** The `inloop` CLI binary, or a clear error saying how to build it. */
export function inloopCli(): string {
  const tried: string[] = [];
  const explicit = process.env["INLOOP_CLI"];
  if (explicit) {
    if (existsSync(explicit)) return explicit;
    tried.push(explicit);
  }
  const target = process.env["CARGO_TARGET_DIR"];
  if (target) {
    const p = join(target, "x86_64-unknown-linux-gnu", "debug", "inloop");
    if (existsSync(p)) return p;
    tried.push(p);
  }
  // Compiled, this file is typescript/dist/test/serve.js.
  const venv = fileURLToPath(new URL("../../../.venv/bin/inloop", import.meta.url));
  if (existsSync(venv)) return venv;
  tried.push(venv);
  throw new Error(
    `the inloop CLI was not found (tried ${tried.join(", ")}); build it with \`cargo build\` ` +
      "(CARGO_TARGET_DIR set) or `scripts/env.sh build_python` (the venv's console script), or set INLOOP_CLI",
  );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

const servers = new Set<Server>();

/** One `inloop serve` process on a fixed port; can be killed and started again. */
export class Server {
  readonly url: string;
  readonly #log: string;
  #proc: ChildProcess | undefined;

  constructor(
    readonly cli: string,
    readonly databaseUrl: string,
    readonly port: number,
    dir: string,
    readonly extraEnv: Record<string, string> = {},
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.#log = join(dir, "serve.log");
  }

  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.extraEnv, INLOOP_DATABASE_URL: this.databaseUrl };
    delete env["INLOOP_URL"];
    delete env["INLOOP_API_KEY"];
    return env;
  }

  log(): string {
    return existsSync(this.#log) ? readFileSync(this.#log, "utf8") : "";
  }

  async start(): Promise<void> {
    const fd = openSync(this.#log, "a");
    let exited: string | undefined;
    try {
      const proc = spawn(this.cli, ["serve", "--bind", `127.0.0.1:${this.port}`], {
        env: this.env(),
        stdio: ["ignore", fd, fd],
      });
      proc.once("exit", (code, sig) => {
        exited = `code ${code} signal ${sig}`;
      });
      proc.once("error", (e) => {
        exited = String(e);
      });
      this.#proc = proc;
      servers.add(this);
    } finally {
      closeSync(fd);
    }
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (exited !== undefined) throw new Error(`\`inloop serve\` exited (${exited}):\n${this.log()}`);
      try {
        const r = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`\`inloop serve\` did not answer /healthz within 30 s:\n${this.log()}`);
  }

  async kill(): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    servers.delete(this);
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGKILL");
    await gone;
  }

  async apikey(namespace: string): Promise<string> {
    const args = ["apikey", "create", "--name", "agent", "--namespace", namespace, "--allow-answer", "--json"];
    const { stdout } = await run(this.cli, args, { env: this.env(), timeout: 60_000 });
    const out = JSON.parse(stdout) as { secret?: unknown };
    assert.equal(typeof out.secret, "string", `no "secret" in the JSON of \`inloop apikey create\`: ${stdout}`);
    return out.secret as string;
  }
}

after(async () => {
  for (const s of [...servers]) await s.kill();
});

export interface Remote {
  server: Server;
  namespace: string;
  apiKey: string;
  /** A new remote client on this test's server, key and namespace (closed after the test). */
  client(): Client;
}

const PG_URL = process.env["INLOOP_TEST_PG_URL"];

/** Registers `name` on SQLite (a temp file) and, with INLOOP_TEST_PG_URL, on PostgreSQL; the
 * server gets `extraEnv` too. */
export function remote(
  name: string,
  fn: (r: Remote) => Promise<void>,
  timeoutMs = 60_000,
  extraEnv: Record<string, string> = {},
): void {
  test(`${name} [remote sqlite]`, { timeout: timeoutMs }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "inloop-ts-remote-"));
    try {
      await withServer(`sqlite://${dir}/x.db`, dir, fn, extraEnv);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  if (PG_URL === undefined || PG_URL === "") {
    test(`${name} [remote postgres]`, { skip: "INLOOP_TEST_PG_URL is not set" }, () => undefined);
  } else {
    test(`${name} [remote postgres]`, { timeout: timeoutMs }, async () => {
      const dir = mkdtempSync(join(tmpdir(), "inloop-ts-remote-"));
      try {
        await withServer(PG_URL, dir, fn, extraEnv);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}

export async function withServer(
  databaseUrl: string,
  dir: string,
  fn: (r: Remote) => Promise<void>,
  extraEnv: Record<string, string> = {},
): Promise<void> {
  const server = new Server(inloopCli(), databaseUrl, await freePort(), dir, extraEnv);
  const clients: Client[] = [];
  try {
    await server.start();
    const namespace = `r-${randomBytes(6).toString("hex")}`;
    const apiKey = await server.apikey(namespace);
    await fn({
      server,
      namespace,
      apiKey,
      client() {
        const c = new Client({ url: server.url, apiKey, namespace });
        clients.push(c);
        return c;
      },
    });
  } catch (e) {
    if (e instanceof Error) e.message += `\n--- serve.log ---\n${server.log()}`;
    throw e;
  } finally {
    for (const c of clients) await c.close();
    await server.kill();
  }
}
