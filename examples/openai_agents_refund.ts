// An OpenAI Agents SDK (@openai/agents) agent whose refund tool needs a person's approval
// (`needsApproval`). Build with `cd typescript && npm run build`, run
// `node typescript/dist/examples/openai_agents_refund.js`, then answer from a second terminal:
//   .venv/bin/inloop tasks list
//   .venv/bin/inloop tasks answer ID '{"decision": "approve"}'
//   #   or '{"decision": "reject", "reason": "not eligible"}'   (the model reads the reason)
// The model is the SDK's ScriptedModel (no API key needed); swap in a real one. The run stops on
// the approval, inloop stores its RunState with one task per call, and the run goes on when the
// task is answered: kill the script while it waits and run it again, and it picks the run up by
// its id.
import { Agent, setTracingDisabled, tool } from "@openai/agents";
import { ScriptedModel, assistantMessage, functionCall, modelResponder, type RecordedModelCall } from "@openai/agents/testing";
import { z } from "zod";
import { run } from "inloop/openai-agents";

setTracingDisabled(true);

function scripted(call: RecordedModelCall) {
  const items = Array.isArray(call.request.input) ? (call.request.input as unknown as Record<string, unknown>[]) : [];
  const done = items.filter((i) => i["type"] === "function_call_result");
  if (done.length > 0) {
    const out = done[done.length - 1]?.["output"] as { text?: string } | string;
    return [assistantMessage(`Done: ${typeof out === "string" ? out : String(out.text)}`)];
  }
  return [functionCall("refund", { order_id: "A-1", amount: 500 }, { callId: "refund-1" })];
}

const refund = tool({
  name: "refund",
  description: "Refunds an order (a person approves every refund).",
  parameters: z.object({ order_id: z.string(), amount: z.number() }),
  needsApproval: true,
  execute: async ({ order_id, amount }) => `refunded ${amount} EUR on order ${order_id}`,
});

const agent = new Agent({
  name: "refunds",
  model: new ScriptedModel(Array.from({ length: 4 }, () => modelResponder(scripted))),
  tools: [refund],
});

console.log("agent: refunding order A-1; a person approves it with");
console.log("         .venv/bin/inloop tasks list");
console.log("         .venv/bin/inloop tasks answer ID '{\"decision\": \"approve\"}'");
const result = await run(agent, "Customer says parcel A-1 arrived broken; refund 500 EUR.", {
  runId: "refund-order-A-1",
  timeout: "4h",
});
console.log(`agent: ${result === null ? "another process resumed this run" : String(result.finalOutput)}`);
process.exit(0);
