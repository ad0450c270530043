// A LangGraph.js agent that needs a person's approval before it refunds an order.
// Build with `cd typescript && npm run build`, run `node typescript/dist/examples/langgraph_refund.js`,
// then answer from a second terminal:
//   .venv/bin/inloop tasks list
//   .venv/bin/inloop tasks answer ID '{"approved": true, "note": "fine"}'
// (MemorySaver keeps this example dependency-free: use a durable checkpointer in production, and
// a Resumer worker resumes threads whose asking process is gone.)
import { Annotation, END, MemorySaver, START, StateGraph } from "@langchain/langgraph";
import { z } from "zod";
import { humanOutcome, invoke } from "inloop/langgraph";

const Decision = z.object({ approved: z.boolean(), note: z.string().optional() });
const State = Annotation.Root({
  orderId: Annotation<string>(),
  amount: Annotation<number>(),
  outcome: Annotation<string>(),
});

const graph = new StateGraph(State)
  .addNode("approve", async (s: typeof State.State) => {
    const o = await humanOutcome("Approve this refund?", {
      payload: { orderId: s.orderId, amount: s.amount },
      responseSchema: Decision,
      timeout: "4h",
    });
    if (o.status !== "completed") return { outcome: `escalated: the request ${o.status}` };
    return { outcome: `${o.answer.approved ? "refunded" : "refused"} (${o.answer.note ?? "no note"})` };
  })
  .addEdge(START, "approve")
  .addEdge("approve", END)
  .compile({ checkpointer: new MemorySaver() });

console.log("agent: asking a person to approve the refund of order A-1 (500 EUR)");
console.log("agent: answer it with  .venv/bin/inloop tasks list  and  tasks answer ID '{...}'");
const out = await invoke(graph, { orderId: "A-1", amount: 500 }, { configurable: { thread_id: "refund-A-1" } });
console.log(`agent: ${String(out.value["outcome"])}`);
process.exit(0);
