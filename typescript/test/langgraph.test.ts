// The LangGraph.js adapter with real graphs (MemorySaver), inloop on SQLite and PostgreSQL.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Annotation, END, MemorySaver, START, StateGraph, type Interrupt } from "@langchain/langgraph";
import { z } from "zod";
import { Cancelled, InvalidAnswer, type Client, type Task } from "../src/index.js";
import { Resumer, human, humanOutcome, invoke, taskKey } from "../src/langgraph.js";
import { scenario, sleep } from "./helpers.js";

const Decision = z.object({ approved: z.boolean(), note: z.string().optional() });

const State = Annotation.Root({
  orderId: Annotation<string>(),
  approved: Annotation<boolean>(),
  second: Annotation<boolean>(),
  status: Annotation<string>(),
  log: Annotation<string[]>({ reducer: (a, b) => [...a, ...b], default: () => [] }),
});
type S = typeof State.State;

const thread = (): string => `thread-${randomBytes(4).toString("hex")}`;

/** The first pending interrupt of the thread, once its checkpoint is written. */
async function interruptOf(
  graph: { getState(c: Record<string, unknown>): Promise<{ tasks: ReadonlyArray<{ interrupts: Interrupt[] }> }> },
  config: Record<string, unknown>,
): Promise<Interrupt> {
  const until = Date.now() + 10_000;
  for (;;) {
    const it = (await graph.getState(config)).tasks.flatMap((t) => t.interrupts)[0];
    if (it !== undefined) return it;
    assert.ok(Date.now() < until, "the interrupt was never checkpointed");
    await sleep(20);
  }
}

async function tasksOf(client: Client, n: number): Promise<Task[]> {
  const until = Date.now() + 20_000;
  for (;;) {
    const { items } = await client.list({ keyPrefix: "langgraph:" });
    if (items.length >= n || Date.now() > until) return items.reverse();
    await sleep(20);
  }
}

function single(calls: string[], timeout?: string) {
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
    .compile({ checkpointer: new MemorySaver() });
}

scenario("langgraph: single interrupt, in process; an invalid answer never reaches the graph", async (env) => {
  const client = env.client();
  const calls: string[] = [];
  const graph = single(calls);
  const tid = thread();
  const run = invoke(graph, { orderId: "A-1" }, { configurable: { thread_id: tid } }, { client });
  const [task] = await tasksOf(client, 1);
  assert.ok(task);
  assert.equal(task.title, "Approve this refund?");
  assert.deepEqual(task.payload, { orderId: "A-1" });
  // The task is created inside the node, before the interrupt's checkpoint is written.
  const it = await interruptOf(graph, { configurable: { thread_id: tid } });
  assert.equal(task.key, taskKey(tid, it.id!));
  assert.equal((it.value as { inloop: { task_id: string } }).inloop.task_id, task.id);

  await assert.rejects(client.answer(task.id, { approved: "yes" }, { by: "mallory" }), InvalidAnswer);
  await sleep(150);
  assert.deepEqual(calls, ["before"]);
  await client.answer(task.id, { approved: true }, { by: "alice" });
  const out = await run;
  assert.equal(out.value["approved"], true);
  assert.equal(out.interrupts.length, 0);
  assert.deepEqual(calls, ["before", "before", "after: true"]);
});

scenario("langgraph: two sequential interrupts in one node", async (env) => {
  const client = env.client();
  const calls: string[] = [];
  const graph = new StateGraph(State)
    .addNode("approve", async (s: S) => {
      calls.push("before");
      const a = await human("First approval", { payload: { orderId: s.orderId }, responseSchema: Decision });
      calls.push(`between: ${a.approved}`);
      const b = await human("Second approval", { payload: { first: a.approved }, responseSchema: Decision });
      return { approved: a.approved, second: b.approved };
    })
    .addEdge(START, "approve")
    .addEdge("approve", END)
    .compile({ checkpointer: new MemorySaver() });
  const run = invoke(graph, { orderId: "A-2" }, { configurable: { thread_id: thread() } }, { client });
  const [first] = await tasksOf(client, 1);
  await client.answer(first!.id, { approved: true }, { by: "alice" });
  const second = (await tasksOf(client, 2))[1]!;
  assert.equal(second.title, "Second approval");
  assert.deepEqual(second.payload, { first: true });
  await client.answer(second.id, { approved: false }, { by: "bob" });
  const out = await run;
  assert.equal(out.value["approved"], true);
  assert.equal(out.value["second"], false);
  assert.deepEqual(calls, ["before", "before", "between: true", "before", "between: true"]);
  assert.equal((await client.list({ keyPrefix: "langgraph:" })).items.length, 2);
});

scenario("langgraph: parallel interrupts get a task each; a Resumer resumes each answer once", async (env) => {
  const client = env.client();
  const calls: string[] = [];
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
  const graph = new StateGraph(State)
    .addNode("a", branch("a"))
    .addNode("b", branch("b"))
    .addEdge(START, "a")
    .addEdge(START, "b")
    .addEdge("a", END)
    .addEdge("b", END)
    .compile({ checkpointer: new MemorySaver() });
  const tid = thread();
  const cfg = { configurable: { thread_id: tid, inloop_client: client } };
  await graph.invoke({ orderId: "A-3" }, cfg);
  await graph.invoke(null, cfg); // a re-run of the interrupted nodes creates nothing new
  const tasks = await tasksOf(client, 2);
  assert.equal(tasks.length, 2);
  assert.deepEqual(new Set(tasks.map((t) => t.title)), new Set(["Approve a?", "Approve b?"]));
  const a = tasks.find((t) => t.title === "Approve a?")!;
  const b = tasks.find((t) => t.title === "Approve b?")!;
  await client.answer(a.id, { approved: true }, { by: "alice" });
  await client.cancel(b.id, { by: "ops" });
  // Three resumers at once (three clients): each answer resumes the thread exactly once.
  const resumers = [client, env.client(), env.client()].map((c) => new Resumer(graph, { client: c }));
  const reports = await Promise.all(resumers.map((r) => r.runOnce()));
  const resumed = reports.flatMap((r) => Object.values(r.resumed).flat()).sort();
  assert.deepEqual(reports.map((r) => r.failed), [{}, {}, {}]);
  assert.deepEqual(resumed, [a.id, b.id].sort());
  assert.equal(calls.filter((c) => c === "a after").length, 1);
  const state = await graph.getState({ configurable: { thread_id: tid } });
  assert.deepEqual(state.next, []);
  // b's node got Cancelled (human() rejects with it, the node catches it).
  assert.deepEqual([...(state.values as S).log].sort(), ["a: true", "b: cancelled"]);
  assert.equal((await client.list({ keyPrefix: "langgraph:" })).items.length, 2);
});

scenario("langgraph: a timeout reaches the node as an outcome", async (env) => {
  const client = env.client();
  const calls: string[] = [];
  const out = await invoke(single(calls, "300ms"), { orderId: "A-4" }, { configurable: { thread_id: thread() } }, { client });
  assert.equal(out.value["status"], "escalated (timed_out)");
  assert.equal(calls.at(-1), "not answered: timed_out");
  const { items } = await client.list({ keyPrefix: "langgraph:" });
  assert.equal(items[0]!.status, "timed_out");
});
