// A process of the cross-process Mastra test:
// `node mastra_child.js <start|wait|resume> <inloop url> <namespace> <mastra store> <effects file> [run id]`.
// start: starts the run (it suspends on the human step) and exits; wait: runWorkflow, which
// waits for the answer (the test SIGKILLs it); resume: one Resumer pass. Prints one JSON line.
import { Client } from "../src/index.js";
import { Resumer, runWorkflow } from "../src/mastra.js";
import { refundApp } from "./mastra_flows.js";

const [mode, url, namespace, store, effects, runId] = process.argv.slice(2);
if (mode === undefined || url === undefined || namespace === undefined || store === undefined || effects === undefined) {
  console.error("usage: mastra_child.js <start|wait|resume> <inloop url> <namespace> <mastra store> <effects file> [run id]");
  process.exit(2);
}
const client = new Client({ databaseUrl: url, namespace });
const app = refundApp(client, store, effects);
const order = { orderId: "A-7", amount: 42 };
let out: unknown;
if (mode === "start") {
  const run = await app.mastra.getWorkflowById("refund-flow").createRun({ runId: runId ?? "run-1" });
  const r = await run.start({ inputData: order });
  out = { status: r.status };
} else if (mode === "wait") {
  out = await runWorkflow(app.mastra, "refund-flow", order, { runId: runId ?? "run-1", client });
} else {
  out = await new Resumer(app.mastra, { client }).runOnce();
}
process.stdout.write(JSON.stringify(out) + "\n");
await app.close();
process.exit(0);
