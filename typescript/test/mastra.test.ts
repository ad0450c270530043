// The Mastra adapter (inloop/mastra) on the real @mastra/core workflow engine with its LibSQL
// file storage, inloop on SQLite and PostgreSQL: the asking process exits (or is SIGKILLed
// while it waits) and other processes resume the run once the person answers; two resumers
// at once run the side effect once; a timeout cancels the run; a forged resume cannot skip
// the person.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client, InvalidAnswer, VerificationRejected, type Task } from "../src/index.js";
import { Resumer, parseTaskKey, runWorkflow, taskKey } from "../src/mastra.js";
import { scenario, taskByKey, type Env } from "./helpers.js";
import { cappedApp, parallelApp, refundApp } from "./mastra_flows.js";

const CHILD = fileURLToPath(new URL("./mastra_child.js", import.meta.url));
const KEY = taskKey({ workflowId: "refund-flow", runId: "run-1", stepId: "approve" });

interface Dirs {
  store: string;
  effects: string;
}

function mastraScenario(name: string, fn: (env: Env, dirs: Dirs) => Promise<void>): void {
  scenario(
    `mastra: ${name}`,
    async (env) => {
      const dir = mkdtempSync(join(tmpdir(), "inloop-mastra-"));
      try {
        await fn(env, { store: join(dir, "mastra.db"), effects: join(dir, "effects.log") });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
}

interface Child {
  pid: number;
  done: Promise<{ code: number | null; signal: string | null; out: string; err: string }>;
}

function child(mode: "start" | "wait" | "resume", env: Env, dirs: Dirs): Child {
  const p = spawn(process.execPath, [CHILD, mode, env.url, env.namespace, dirs.store, dirs.effects, "run-1"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  p.stdout.on("data", (d: Buffer) => (out += d.toString()));
  p.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ code: number | null; signal: string | null; out: string; err: string }>((resolve) =>
    p.on("close", (code, signal) => resolve({ code, signal, out, err })),
  );
  return { pid: p.pid!, done };
}

async function json(c: Child): Promise<Record<string, unknown>> {
  const r = await c.done;
  assert.equal(r.code, 0, `child failed (${r.code} ${r.signal}): ${r.err}`);
  return JSON.parse(r.out.trim().split("\n").pop()!) as Record<string, unknown>;
}

function effects(dirs: Dirs): string[] {
  return existsSync(dirs.effects) ? readFileSync(dirs.effects, "utf8").trim().split("\n").filter(Boolean) : [];
}

async function pendingTask(client: Client): Promise<Task> {
  const t = await taskByKey(client, KEY, 20_000);
  assert.equal(t.status, "pending");
  return t;
}

test("mastra: task keys round-trip, odd ids included", () => {
  const ref = { workflowId: "wf:1", runId: "r/2 ü", stepId: "s%3" };
  assert.deepEqual(parseTaskKey(taskKey(ref)), ref);
  assert.equal(parseTaskKey("langgraph:x:y"), null);
  assert.equal(parseTaskKey("mastra:a:b"), null);
  assert.throws(() => taskKey({ workflowId: "", runId: "r", stepId: "s" }), { name: "InvalidArgument" });
});

mastraScenario("the asking process exits, two resumers in other processes, one refund", async (env, dirs) => {
  const start = await json(child("start", env, dirs));
  assert.equal(start["status"], "suspended");
  const client = env.client();
  const task = await pendingTask(client);
  assert.equal(task.title, "Refund 42 EUR for A-7?");
  assert.deepEqual(task.payload, { orderId: "A-7", amount: 42 });
  assert.equal(task.requestedBy, "mastra:refund-flow");
  const schema = task.responseSchema as { properties: Record<string, unknown>; required: string[] };
  assert.deepEqual(Object.keys(schema.properties).sort(), ["approved", "note"]);
  assert.deepEqual(schema.required, ["approved"]);
  // The core refuses an answer that does not fit the step's resumeSchema.
  await assert.rejects(client.answer(task.id, { approved: "yes" }, { by: "alice" }), InvalidAnswer);
  await client.answer(task.id, { approved: true, note: "ok by alice" }, { by: "alice" });
  const [a, b] = await Promise.all([json(child("resume", env, dirs)), json(child("resume", env, dirs))]);
  const resumed = [a, b].map((p) => (p["resumed"] as Record<string, string>)["run-1"]).filter(Boolean);
  assert.deepEqual(resumed, ["success"], JSON.stringify([a, b]));
  assert.equal(effects(dirs).length, 1, effects(dirs).join("\n"));
  // A later pass has nothing left to do; the run's result carries the typed answer.
  const again = await json(child("resume", env, dirs));
  assert.deepEqual(again, { resumed: {}, cancelled: {}, failed: {} });
  assert.equal(effects(dirs).length, 1);
  const app = refundApp(env.client(), dirs.store, dirs.effects);
  const state = await app.mastra.getWorkflowById("refund-flow").getWorkflowRunById("run-1");
  assert.equal(state?.status, "success");
  assert.deepEqual(state?.result, { refunded: true, note: "ok by alice" });
});

mastraScenario("SIGKILL of the waiting process, the resumer finishes the run", async (env, dirs) => {
  const waiting = child("wait", env, dirs);
  const client = env.client();
  const task = await pendingTask(client);
  process.kill(waiting.pid, "SIGKILL");
  const killed = await waiting.done;
  assert.equal(killed.signal, "SIGKILL");
  await client.answer(task.id, { approved: true }, { by: "bob" });
  const pass = await json(child("resume", env, dirs));
  assert.deepEqual(pass["resumed"], { "run-1": "success" });
  assert.equal(effects(dirs).length, 1);
});

mastraScenario("runWorkflow waits in process; a rejection runs no refund", async (env, dirs) => {
  const client = env.client();
  const app = refundApp(client, dirs.store, dirs.effects);
  const running = runWorkflow(app.mastra, "refund-flow", { orderId: "A-7", amount: 42 }, { runId: "run-1", client });
  const task = await pendingTask(client);
  await client.answer(task.id, { approved: false, note: "no" }, { by: "carol" });
  const out = await running;
  assert.equal(out.status, "success");
  assert.deepEqual(out["result"], { refunded: false, note: "no" });
  assert.equal(effects(dirs).length, 0);
  assert.deepEqual(await new Resumer(app.mastra, { client }).runOnce(), { resumed: {}, cancelled: {}, failed: {} });
});

mastraScenario("a timed-out task cancels the run, no refund", async (env, dirs) => {
  const client = env.client();
  const app = refundApp(client, dirs.store, dirs.effects, "300ms");
  const run = await app.mastra.getWorkflowById("refund-flow").createRun({ runId: "run-1" });
  assert.equal((await run.start({ inputData: { orderId: "A-7", amount: 42 } })).status, "suspended");
  const task = await client.wait((await pendingTask(client)).id);
  assert.equal(task.status, "timed_out");
  const pass = await new Resumer(app.mastra, { client }).runOnce();
  assert.deepEqual(pass.cancelled, { "run-1": "timed_out" });
  const state = await app.mastra.getWorkflowById("refund-flow").getWorkflowRunById("run-1");
  assert.equal(state?.status, "canceled");
  assert.equal(effects(dirs).length, 0);
});

mastraScenario("a resume with made-up data while the task is pending suspends again", async (env, dirs) => {
  const client = env.client();
  const app = refundApp(client, dirs.store, dirs.effects);
  const wf = app.mastra.getWorkflowById("refund-flow");
  await (await wf.createRun({ runId: "run-1" })).start({ inputData: { orderId: "A-7", amount: 42 } });
  const task = await pendingTask(client);
  const forged = await (await wf.createRun({ runId: "run-1" })).resume({ step: "approve", resumeData: { approved: true } });
  assert.equal(forged.status, "suspended");
  assert.equal(effects(dirs).length, 0);
  assert.equal((await client.get(task.id)).status, "pending");
  await client.answer(task.id, { approved: true, note: "real" }, { by: "dana" });
  assert.deepEqual((await new Resumer(app.mastra, { client }).runOnce()).resumed, { "run-1": "success" });
  assert.equal(effects(dirs).length, 1);
});

test("mastra: humanStep refuses a config it cannot honour", async () => {
  const { z } = await import("zod");
  const { humanStep } = await import("../src/mastra.js");
  const I = z.object({ a: z.string() });
  assert.throws(() => humanStep({ id: "", title: "t", inputSchema: I, resumeSchema: I }), { name: "InvalidArgument" });
  const notZod = { type: "object" } as unknown as typeof I;
  assert.throws(() => humanStep({ id: "s", title: "t", inputSchema: I, resumeSchema: notZod }), /resumeSchema must be a Zod schema/);
  assert.throws(() => humanStep({ id: "s", title: "t", inputSchema: I, resumeSchema: undefined as unknown as typeof I }), /needs a resumeSchema/);
  assert.throws(() => humanStep({ id: "s", title: "t", inputSchema: I, resumeSchema: I, payload: (i) => i }), /suspendSchema/);
  assert.throws(
    () => humanStep({ id: "s", title: "t", inputSchema: I, resumeSchema: I, outputSchema: z.object({ b: z.number() }) }),
    /output function/,
  );
});

mastraScenario("the core's verification rule sends a bad answer back before the run sees it", async (env, dirs) => {
  const client = env.client();
  const app = cappedApp(client, dirs.store);
  const run = await app.mastra.getWorkflowById("capped").createRun({ runId: "run-1" });
  assert.equal((await run.start({ inputData: { orderId: "A-7", amount: 42 } })).status, "suspended");
  const task = await taskByKey(client, taskKey({ workflowId: "capped", runId: "run-1", stepId: "approve" }));
  await assert.rejects(client.answer(task.id, { approved: true, amount: 600 }, { by: "erin" }), VerificationRejected);
  assert.deepEqual((await new Resumer(app.mastra, { client }).runOnce()).resumed, {});
  await client.answer(task.id, { approved: true, amount: 40 }, { by: "erin" });
  assert.deepEqual((await new Resumer(app.mastra, { client }).runOnce()).resumed, { "run-1": "success" });
  const state = await app.mastra.getWorkflowById("capped").getWorkflowRunById("run-1");
  assert.deepEqual(state?.result, { approved: true, amount: 40 });
});

mastraScenario("a step run again after its task was answered returns the answer without suspending", async (env, dirs) => {
  // The first execution created the task, but its suspension never reached Mastra's storage
  // (a second store stands for the lost one): the re-executed step finds the answered task.
  const client = env.client();
  const first = refundApp(client, dirs.store, dirs.effects);
  await (await first.mastra.getWorkflowById("refund-flow").createRun({ runId: "run-1" })).start({ inputData: { orderId: "A-7", amount: 42 } });
  await client.answer((await pendingTask(client)).id, { approved: true, note: "early" }, { by: "fay" });
  const again = refundApp(client, `${dirs.store}.fresh`, dirs.effects);
  const run = await again.mastra.getWorkflowById("refund-flow").createRun({ runId: "run-1" });
  const out = await run.start({ inputData: { orderId: "A-7", amount: 42 } });
  assert.equal(out.status, "success");
  assert.deepEqual((out as { result?: unknown }).result, { refunded: true, note: "early" });
  assert.equal(effects(dirs).length, 1);
  assert.equal((await client.list({ keyPrefix: "mastra:" })).items.length, 1);
});

mastraScenario("two human steps in parallel: each answer resumes its own step, the refund runs once", async (env, dirs) => {
  const client = env.client();
  const app = parallelApp(client, dirs.store, dirs.effects);
  const wf = app.mastra.getWorkflowById("two-sign-offs");
  assert.equal((await (await wf.createRun({ runId: "run-1" })).start({ inputData: { orderId: "A-7", amount: 42 } })).status, "suspended");
  const key = (stepId: string): string => taskKey({ workflowId: "two-sign-offs", runId: "run-1", stepId });
  const legal = await taskByKey(client, key("legal"));
  const finance = await taskByKey(client, key("finance"));
  await client.answer(legal.id, { approved: true }, { by: "lena" });
  assert.deepEqual((await new Resumer(app.mastra, { client }).runOnce()).resumed, { "run-1": "suspended" });
  assert.equal(effects(dirs).length, 0);
  await client.answer(finance.id, { approved: true, note: "ok" }, { by: "finn" });
  assert.deepEqual((await new Resumer(app.mastra, { client }).runOnce()).resumed, { "run-1": "success" });
  assert.equal(effects(dirs).length, 1);
  assert.deepEqual((await wf.getWorkflowRunById("run-1"))?.result, { refunded: true });
});

mastraScenario("onTimeout's default is recorded by the core and resumes the run with it", async (env, dirs) => {
  const client = env.client();
  const app = refundApp(client, dirs.store, dirs.effects, "300ms", { default: { approved: false, note: "nobody answered" } });
  const run = await app.mastra.getWorkflowById("refund-flow").createRun({ runId: "run-1" });
  assert.equal((await run.start({ inputData: { orderId: "A-7", amount: 42 } })).status, "suspended");
  const task = await client.wait((await pendingTask(client)).id);
  assert.equal(task.status, "timed_out");
  assert.equal(task.defaulted, true);
  assert.deepEqual((await new Resumer(app.mastra, { client }).runOnce()).resumed, { "run-1": "success" });
  const state = await app.mastra.getWorkflowById("refund-flow").getWorkflowRunById("run-1");
  assert.deepEqual(state?.result, { refunded: false, note: "nobody answered" });
  assert.equal(effects(dirs).length, 0);
});
