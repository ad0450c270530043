// Small LangGraph.js graphs for the adapter tests, over any checkpointer (imported by the tests
// and by the child process of the cross-process test), and the durable checkpointer they use.
import { Annotation, END, START, StateGraph, type BaseCheckpointSaver } from "@langchain/langgraph";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import { z } from "zod";
import { Cancelled } from "../src/index.js";
import { human, humanOutcome } from "../src/langgraph.js";

export const Decision = z.object({ approved: z.boolean(), note: z.string().optional() });

export const State = Annotation.Root({
  orderId: Annotation<string>(),
  approved: Annotation<boolean>(),
  second: Annotation<boolean>(),
  status: Annotation<string>(),
  log: Annotation<string[]>({ reducer: (a, b) => [...a, ...b], default: () => [] }),
});
export type S = typeof State.State;

/** The PostgreSQL schema the JS checkpointer's tables live in (apart from Python's). */
export const CHECKPOINT_SCHEMA = "inloop_langgraphjs";

/** A `PostgresSaver` on `url` (its tables in {@link CHECKPOINT_SCHEMA}); `end()` it after use. */
export function postgresSaver(url: string): PostgresSaver {
  return PostgresSaver.fromConnString(url, { schema: CHECKPOINT_SCHEMA });
}

/** One node, one question; `calls` records every (re-)run of the node and each decision. */
export function single(saver: BaseCheckpointSaver, calls: string[], timeout?: string) {
  return new StateGraph(State)
    .addNode("approve", async (s: S) => {
      calls.push("before");
      const o = await humanOutcome("Approve this refund?", {
        payload: { orderId: s.orderId },
        responseSchema: Decision,
        ...(timeout ? { timeout } : {}),
      });
      if (o.status !== "completed") {
        calls.push(`not answered: ${o.status}`);
        return { status: `escalated (${o.status})` };
      }
      calls.push(`after: ${o.answer.approved}`);
      return { approved: o.answer.approved, status: "decided" };
    })
    .addEdge(START, "approve")
    .addEdge("approve", END)
    .compile({ checkpointer: saver });
}

/** One node asking twice in a row; the second question depends on the first answer. */
export function sequential(saver: BaseCheckpointSaver, calls: string[]) {
  return new StateGraph(State)
    .addNode("approve", async (s: S) => {
      calls.push("before");
      const a = await human("First approval", { payload: { orderId: s.orderId }, responseSchema: Decision });
      calls.push(`between: ${a.approved}`);
      const b = await human("Second approval", { payload: { first: a.approved }, responseSchema: Decision });
      return { approved: a.approved, second: b.approved };
    })
    .addEdge(START, "approve")
    .addEdge("approve", END)
    .compile({ checkpointer: saver });
}

/** Two nodes in one super-step, each asking its own question. */
export function parallel(saver: BaseCheckpointSaver, calls: string[]) {
  const branch = (name: string) => async () => {
    calls.push(`${name} before`);
    try {
      const d = await human(`Approve ${name}?`, { payload: { branch: name }, responseSchema: Decision });
      calls.push(`${name} after`);
      return { log: [`${name}: ${d.approved}`] };
    } catch (e) {
      if (e instanceof Cancelled) return { log: [`${name}: cancelled`] };
      throw e;
    }
  };
  return new StateGraph(State)
    .addNode("a", branch("a"))
    .addNode("b", branch("b"))
    .addEdge(START, "a")
    .addEdge(START, "b")
    .addEdge("a", END)
    .addEdge("b", END)
    .compile({ checkpointer: saver });
}
