// A small agent for the crash test: `node agent.js <url> <namespace> <key>`.
// Awaits a human decision and prints one JSON line with it.
import { z } from "zod";
import { Client, awaitHuman } from "../src/index.js";

const [url, namespace, key] = process.argv.slice(2);
if (url === undefined || namespace === undefined || key === undefined) {
  console.error("usage: agent.js <url> <namespace> <key>");
  process.exit(2);
}
const Decision = z.object({ approved: z.boolean(), note: z.string().default("") });
const client = new Client({ databaseUrl: url, namespace });
const decision = await awaitHuman({
  title: "Approve the deploy?",
  payload: { service: "api", version: "1.2.3" },
  responseSchema: Decision,
  key,
  timeout: "1h",
  client,
});
process.stdout.write(JSON.stringify({ pid: process.pid, decision }) + "\n");
await client.close();
