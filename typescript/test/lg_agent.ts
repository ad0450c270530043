// The asking process of the cross-process LangGraph test:
// `node lg_agent.js <inloop url> <namespace> <checkpointer pg url> <thread id>`.
// Runs the single-question graph on a PostgresSaver with `invoke` (which waits for the answer)
// and prints the final state as one JSON line; the test SIGKILLs it while it waits.
import { Client } from "../src/index.js";
import { invoke } from "../src/langgraph.js";
import { postgresSaver, single } from "./lg_graphs.js";

const [url, namespace, pgUrl, threadId] = process.argv.slice(2);
if (url === undefined || namespace === undefined || pgUrl === undefined || threadId === undefined) {
  console.error("usage: lg_agent.js <inloop url> <namespace> <checkpointer pg url> <thread id>");
  process.exit(2);
}
const client = new Client({ databaseUrl: url, namespace });
const saver = postgresSaver(pgUrl);
const out = await invoke(single(saver, []), { orderId: "A-9" }, { configurable: { thread_id: threadId } }, { client });
process.stdout.write(JSON.stringify(out.value) + "\n");
await saver.end();
await client.close();
