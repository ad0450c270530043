// A process that runs (or continues) an OpenAI Agents run through inloop:
// `node oa_child.js <inloop-url> <namespace> <run-id> <prompt-json or "-">`; prints one JSON
// line with the final output (or the error) when the run ends.
import { Client, InloopError } from "../src/index.js";
import { run } from "../src/openai-agents.js";
import { EXECUTED, makeAgent } from "./oa_agents.js";

const [url, namespace, runId, prompt] = process.argv.slice(2);
if (url === undefined || namespace === undefined || runId === undefined || prompt === undefined) {
  console.error("usage: oa_child.js <inloop-url> <namespace> <run-id> <prompt-json or ->");
  process.exit(2);
}
const client = new Client({ databaseUrl: url, namespace });
let out: Record<string, unknown>;
try {
  const result = await run(makeAgent(), prompt === "-" ? null : prompt, { runId, client });
  out = { output: result === null ? null : result.finalOutput };
} catch (e) {
  if (!(e instanceof InloopError)) throw e;
  out = { error: e.name, message: e.message };
}
process.stdout.write(JSON.stringify({ ...out, executed: EXECUTED }) + "\n");
await client.close();
