// The LangGraph.js adapter with a durable checkpointer (PostgresSaver from
// @langchain/langgraph-checkpoint-postgres, on the test PostgreSQL), inloop on SQLite and
// PostgreSQL: the core scenarios, resumes from a fresh saver (the state comes from the
// database, not from memory), and a resume in another process after SIGKILL of the one that asked.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import type { Interrupt } from "@langchain/langgraph";
import { fileURLToPath } from "node:url";
import { InvalidAnswer, type Client, type Task } from "../src/index.js";
import { Resumer, invoke, taskKey } from "../src/langgraph.js";
import { scenario, sleep, type Env } from "./helpers.js";
import { parallel, postgresSaver, sequential, single, type S } from "./lg_graphs.js";

const PG_URL = process.env["INLOOP_TEST_PG_URL"] ?? "";
const REQUIRE_PG = process.env["INLOOP_REQUIRE_PG"] === "1";
const AGENT = fileURLToPath(new URL("./lg_agent.js", import.meta.url));

let ready: Promise<void> | undefined;
/** Creates the checkpointer's tables once (before any child process uses them). */
function setup(): Promise<void> {
  ready ??= (async () => {
    const saver = postgresSaver(PG_URL);
    try {
      await saver.setup();
    } finally {
      await saver.end();
    }
  })();
  return ready;
}

type Saver = ReturnType<typeof postgresSaver>;

/** A scenario with a durable checkpointer; `saver()` opens one more (all ended afterwards). */
function durable(name: string, fn: (env: Env, saver: () => Saver) => Promise<void>, timeoutMs = 30_000): void {
  if (PG_URL === "") {
    const why = "the durable checkpointer (PostgresSaver) needs INLOOP_TEST_PG_URL";
    if (REQUIRE_PG) test(name, () => assert.fail(`INLOOP_REQUIRE_PG=1: ${why}`));
    else test(name, { skip: why }, () => undefined);
    return;
  }
  scenario(
    `langgraph durable: ${name}`,
    async (env) => {
      await setup();
      const savers: Saver[] = [];
      try {
        await fn(env, () => {
          const s = postgresSaver(PG_URL);
          savers.push(s);
          return s;
        });
      } finally {
        for (const s of savers) await s.end();
      }
    },
    timeoutMs,
  );
}

const thread = (): string => `thread-${randomBytes(6).toString("hex")}`;

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

durable("single interrupt; an invalid answer never reaches the graph", async (env, saver) => {
  const client = env.client();
  const calls: string[] = [];
  const graph = single(saver(), calls);
  const tid = thread();
  const config = { configurable: { thread_id: tid } };
  const run = invoke(graph, { orderId: "A-1" }, config, { client });
  const [task] = await tasksOf(client, 1);
  assert.ok(task);
  assert.deepEqual(task.payload, { orderId: "A-1" });
  // The interrupt and the inloop task are in the database: a fresh saver sees them.
  const it = await interruptOf(single(saver(), []), config);
  assert.equal(task.key, taskKey(tid, it.id!));
  assert.equal((it.value as { inloop: { task_id: string } }).inloop.task_id, task.id);

  await assert.rejects(client.answer(task.id, { approved: "yes" }, { by: "mallory" }), InvalidAnswer);
  await sleep(150);
  assert.deepEqual(calls, ["before"]);
  assert.equal((await client.get(task.id)).status, "pending");
  await client.answer(task.id, { approved: true }, { by: "alice" });
  const out = await run;
  assert.equal(out.value["approved"], true);
  assert.equal(out.interrupts.length, 0);
  assert.deepEqual(calls, ["before", "before", "after: true"]);
  const after = await single(saver(), []).getState(config);
  assert.deepEqual(after.next, []);
  assert.equal((after.values as S).status, "decided");
});

durable("two sequential interrupts in one node", async (env, saver) => {
  const client = env.client();
  const calls: string[] = [];
  const run = invoke(sequential(saver(), calls), { orderId: "A-2" }, { configurable: { thread_id: thread() } }, { client });
  const [first] = await tasksOf(client, 1);
  assert.equal(first!.title, "First approval");
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

durable("parallel interrupts: a task each, none duplicated by re-runs, resumed once from a fresh saver", async (env, saver) => {
  const client = env.client();
  const calls: string[] = [];
  const tid = thread();
  const cfg = { configurable: { thread_id: tid, inloop_client: client } };
  await parallel(saver(), calls).invoke({ orderId: "A-3" }, cfg);
  // Re-runs of the interrupted nodes (from other saver instances) create nothing new.
  await parallel(saver(), calls).invoke(null, cfg);
  await parallel(saver(), calls).invoke(null, cfg);
  assert.deepEqual([...calls].sort(), ["a before", "a before", "a before", "b before", "b before", "b before"]);
  const tasks = await tasksOf(client, 2);
  assert.equal(tasks.length, 2);
  const a = tasks.find((t) => t.title === "Approve a?")!;
  const b = tasks.find((t) => t.title === "Approve b?")!;
  assert.ok(a && b);
  await client.answer(a.id, { approved: true }, { by: "alice" });
  await client.cancel(b.id, { by: "ops" });
  // Three resumers at once, each with its own saver and client: each answer resumes once.
  calls.length = 0;
  const resumers = [client, env.client(), env.client()].map((c) => new Resumer(parallel(saver(), calls), { client: c }));
  const reports = await Promise.all(resumers.map((r) => r.runOnce()));
  assert.deepEqual(reports.map((r) => r.failed), [{}, {}, {}]);
  assert.deepEqual(reports.flatMap((r) => Object.values(r.resumed).flat()).sort(), [a.id, b.id].sort());
  assert.equal(calls.filter((c) => c === "a after").length, 1);
  const state = await parallel(saver(), []).getState({ configurable: { thread_id: tid } });
  assert.deepEqual(state.next, []);
  assert.deepEqual([...(state.values as S).log].sort(), ["a: true", "b: cancelled"]);
  assert.equal((await client.list({ keyPrefix: "langgraph:" })).items.length, 2);
  const again = await new Resumer(parallel(saver(), calls), { client }).runOnce();
  assert.deepEqual(again.resumed, {});
});

durable(
  "cross-process: SIGKILL the asking process, answer, a Resumer here resumes from the checkpointer",
  async (env, saver) => {
    const client = env.client();
    const tid = thread();
    const child = spawn(process.execPath, [AGENT, env.url, env.namespace, PG_URL, tid], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on("close", (code, signal) => resolve({ code, signal })),
    );
    try {
      const [task] = await tasksOf(client, 1);
      assert.ok(task, `the child created no task: ${err}`);
      // Wait until the interrupt's checkpoint is committed, then kill the waiting process.
      const config = { configurable: { thread_id: tid } };
      const reader = single(saver(), []);
      const until = Date.now() + 10_000;
      while ((await reader.getState(config)).tasks.every((t) => t.interrupts.length === 0)) {
        assert.ok(Date.now() < until, "the interrupt was never checkpointed");
        await sleep(20);
      }
      child.kill("SIGKILL");
      const r = await done;
      assert.equal(r.signal, "SIGKILL", err);
      assert.equal(out, "");

      await client.answer(task.id, { approved: true, note: "while down" }, { by: "alice" });
      const calls: string[] = [];
      const report = await new Resumer(single(saver(), calls), { client }).runOnce();
      assert.deepEqual(report, { resumed: { [tid]: [task.id] }, failed: {} });
      assert.deepEqual(calls, ["before", "after: true"]);
      const state = await reader.getState(config);
      assert.deepEqual(state.next, []);
      assert.equal((state.values as S).approved, true);
      const again = await new Resumer(single(saver(), calls), { client }).runOnce();
      assert.deepEqual(again.resumed, {});
      assert.equal((await client.list({ keyPrefix: "langgraph:" })).items.length, 1);
    } finally {
      child.kill("SIGKILL");
    }
  },
  40_000,
);
