// The OpenAI Agents SDK adapter (`inloop/openai-agents`) with the SDK's own ScriptedModel (no
// network), on SQLite and PostgreSQL: approvals approved and rejected with reasons, two stops
// in one run, a resume in another process after the asking one was SIGKILLed and after it
// exited (the refund happens exactly once, counted in a file), the core's verification and an
// SDK verifier sending answers back, timeouts, and bad input.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { RunState, run as sdkRun } from "@openai/agents";
import {
  Conflict,
  InvalidAnswer,
  InvalidArgument,
  NotFound,
  VerificationRejected,
  verifiers,
  type Client,
  type Task,
} from "../src/index.js";
import {
  ArgumentsChanged,
  PendingRun,
  argsDigest,
  callKey,
  decide,
  recordKey,
  requestApprovals,
  run,
} from "../src/openai-agents.js";
import { scenario, sleep } from "./helpers.js";
import { EXECUTED, makeAgent, prompt, type Call } from "./oa_agents.js";

const CHILD = fileURLToPath(new URL("./oa_child.js", import.meta.url));
const BIG: Call = ["refund", { order_id: "A-1", amount: 500 }, "call_big"];
const SMALL: Call = ["refund", { order_id: "A-2", amount: 5 }, "call_small"];
const SECOND: Call = ["refund", { order_id: "A-3", amount: 700 }, "call_second"];

async function pendingTasks(client: Client, n = 1, withinMs = 20_000): Promise<Task[]> {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    const page = await client.list({ keyPrefix: "openai-agents:", status: "pending" });
    if (page.items.length >= n) return page.items;
    await sleep(20);
  }
  throw new Error(`fewer than ${n} pending tasks were created`);
}

function settled<T>(p: Promise<T>): { done: () => boolean; value: Promise<T> } {
  let done = false;
  const value = p.finally(() => {
    done = true;
  });
  return { done: () => done, value };
}

function clear(): void {
  EXECUTED.length = 0;
}

scenario("openai-agents: an approved call runs once, calls that need no approval run at once", async (env) => {
  clear();
  const client = env.client();
  const job = settled(run(makeAgent(), prompt([BIG, SMALL]), { runId: "run-ok", client, notify: ["slack:#ops"] }));
  const [task] = (await pendingTasks(client)) as [Task];
  assert.equal(task.key, "openai-agents:run-ok:call_big");
  assert.equal(task.key, callKey("run-ok", "call_big"));
  assert.equal(task.title, "Approve refund?");
  assert.deepEqual(task.notify, ["slack:#ops"]);
  const payload = task.payload as Record<string, unknown>;
  assert.deepEqual(payload["args"], { order_id: "A-1", amount: 500 });
  assert.equal(payload["args_digest"], argsDigest({ amount: 500, order_id: "A-1" }));
  assert.equal(payload["agent"], "refunds");
  await sleep(100);
  // The SDK runs the calls that need no approval at once; the big one waits.
  assert.equal(job.done(), false);
  assert.deepEqual(EXECUTED, [{ order_id: "A-2", amount: 5 }]);
  await assert.rejects(client.answer(task.id, { decision: "maybe" }, { by: "alice" }), InvalidAnswer);
  await client.answer(task.id, { decision: "approve", reason: "ok" }, { by: "alice" });
  const result = await job.value;
  assert.ok(result !== null);
  const out = String(result.finalOutput);
  assert.match(out, /refunded 500 on A-1/);
  assert.match(out, /refunded 5 on A-2/);
  assert.deepEqual(EXECUTED.map((e) => e.order_id).sort(), ["A-1", "A-2"]);
  // The stop was claimed: starting the same run id again is refused, nothing runs twice.
  await assert.rejects(run(makeAgent(), prompt([BIG]), { runId: "run-ok", client }), Conflict);
  await assert.rejects(PendingRun.load("run-ok", { client }), NotFound);
  assert.equal(EXECUTED.length, 2);
});

scenario("openai-agents: rejected with a reason the model reads", async (env) => {
  clear();
  const client = env.client();
  const job = run(makeAgent(), prompt([BIG]), { runId: "run-no", client });
  const [task] = (await pendingTasks(client)) as [Task];
  await client.answer(task.id, { decision: "reject", reason: "over the limit" }, { by: "bob" });
  const result = await job;
  assert.equal(result?.finalOutput, "over the limit");
  assert.deepEqual(EXECUTED, []);
});

scenario("openai-agents: two stops in one run are two rounds", async (env) => {
  clear();
  const client = env.client();
  const job = run(makeAgent(), prompt([BIG], [SECOND]), { runId: "run-2", client });
  const [first] = (await pendingTasks(client)) as [Task];
  await client.answer(first.id, { decision: "approve" }, { by: "carol" });
  let second: Task | undefined;
  while (second === undefined) {
    second = (await pendingTasks(client)).find((t) => t.key === "openai-agents:run-2:call_second");
    if (second === undefined) await sleep(20);
  }
  await client.answer(second.id, { decision: "reject" }, { by: "carol" });
  const result = await job;
  assert.ok(result !== null);
  assert.match(String(result.finalOutput), /refunded 500 on A-1/);
  assert.match(String(result.finalOutput), /A person rejected this tool call\./);
  assert.deepEqual(EXECUTED, [{ order_id: "A-1", amount: 500 }]);
  for (const n of [1, 2]) {
    const rec = await client.getByKey(recordKey("run-2", n), `${env.namespace}.runs`);
    assert.equal(rec.status, "completed");
    assert.equal((rec.payload as { round: number }).round, n);
  }
});

interface ChildOut {
  output?: unknown;
  error?: string;
  executed: unknown[];
}

function childRun(env: { url: string; namespace: string }, runId: string, arg: string, effects: string): ChildOut {
  const out = spawnSync(process.execPath, [CHILD, env.url, env.namespace, runId, arg], {
    env: { ...process.env, INLOOP_TEST_EFFECTS: effects },
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(out.status, 0, out.stderr);
  const lines = out.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1] as string) as ChildOut;
}

async function waitForRecord(client: Client, runId: string): Promise<void> {
  // The record (the serialized RunState) is written right after the tasks.
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      await PendingRun.load(runId, { client });
      return;
    } catch (e) {
      if (!(e instanceof NotFound) || Date.now() > until) throw e;
      await sleep(20);
    }
  }
}

function exited(child: ChildProcess): Promise<[number | null, NodeJS.Signals | null]> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve([child.exitCode, child.signalCode]);
    else child.once("exit", (code, signal) => resolve([code, signal]));
  });
}

scenario(
  "openai-agents: SIGKILL of the asking process, another process resumes, the refund runs once",
  async (env) => {
    const dir = mkdtempSync(join(tmpdir(), "inloop-oa-"));
    try {
      const effects = join(dir, "effects.jsonl");
      const client = env.client();
      const asker = spawn(process.execPath, [CHILD, env.url, env.namespace, "run-x", prompt([BIG])], {
        env: { ...process.env, INLOOP_TEST_EFFECTS: effects },
        stdio: ["ignore", "pipe", "pipe"],
      });
      try {
        const [task] = (await pendingTasks(client)) as [Task];
        await waitForRecord(client, "run-x");
        asker.kill("SIGKILL");
        assert.deepEqual(await exited(asker), [null, "SIGKILL"]);
        assert.equal(existsSync(effects), false);
        await client.answer(task.id, { decision: "approve" }, { by: "alice" });
      } finally {
        asker.kill("SIGKILL");
      }
      const first = childRun(env, "run-x", "-", effects);
      assert.equal(first.output, "refunded 500 on A-1", JSON.stringify(first));
      const again = childRun(env, "run-x", "-", effects); // a second resumer: nothing left to do
      assert.equal(again.error, "Conflict");
      assert.deepEqual(again.executed, []);
      const lines = readFileSync(effects, "utf8").trim().split("\n");
      assert.deepEqual(
        lines.map((l) => JSON.parse(l) as unknown),
        [{ order_id: "A-1", amount: 500 }],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  90_000,
);

scenario(
  "openai-agents: the asking process exits without waiting, another one resumes",
  async (env) => {
    clear();
    const dir = mkdtempSync(join(tmpdir(), "inloop-oa-"));
    try {
      const effects = join(dir, "effects.jsonl");
      const client = env.client();
      // This process asks and returns at once: the SDK stopped, the tasks and the record stay.
      const stopped = await sdkRun(makeAgent(), prompt([BIG, SECOND]));
      const pending = await requestApprovals(stopped, { runId: "run-exit", client });
      assert.deepEqual(Object.keys(pending.taskIds).sort(), ["call_big", "call_second"]);
      assert.equal(await pending.resume(makeAgent(), { wait: false }), null); // nobody answered yet
      await client.answer(pending.taskIds["call_big"] as string, { decision: "approve" }, { by: "gus" });
      await client.answer(pending.taskIds["call_second"] as string, { decision: "reject", reason: "too much" }, { by: "gus" });
      const out = childRun(env, "run-exit", "-", effects);
      assert.equal(out.output, "refunded 500 on A-1; too much");
      assert.deepEqual(
        readFileSync(effects, "utf8")
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as unknown),
        [{ order_id: "A-1", amount: 500 }],
      );
      assert.deepEqual(EXECUTED, []); // it ran in the child
      // The claimed stop cannot be resumed again here either.
      assert.equal(await pending.resume(makeAgent(), { wait: false }), null);
      assert.deepEqual(EXECUTED, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  90_000,
);

scenario("openai-agents: the core's verification sends an answer back", async (env) => {
  clear();
  const client = env.client();
  const needsReason = verifiers.rules([
    {
      name: "a rejection needs a reason",
      when: { "==": [{ var: "/answer/decision" }, "reject"] },
      check: { nonempty: { var: "/answer/reason" } },
      message: "say why you reject it",
    },
  ]);
  const job = settled(run(makeAgent(), prompt([BIG]), { runId: "run-v", client, verification: needsReason }));
  const [task] = (await pendingTasks(client)) as [Task];
  assert.ok(task.verification !== null);
  await assert.rejects(client.answer(task.id, { decision: "reject" }, { by: "dora" }), VerificationRejected);
  await sleep(200);
  assert.equal(job.done(), false);
  assert.equal((await client.get(task.id)).status, "pending");
  await client.answer(task.id, { decision: "reject", reason: "duplicate" }, { by: "dora" });
  assert.equal((await job.value)?.finalOutput, "duplicate");
});

scenario("openai-agents: an SDK verifier rejects, then accepts", async (env) => {
  clear();
  const client = env.client();
  const bigNeedsReason = (payload: unknown, answer: unknown): verifiers.Verdict => {
    const p = payload as { args: { amount: number } };
    const a = answer as { reason?: string };
    return p.args.amount > 400 && !a.reason ? verifiers.rejected("refunds over 400 need a reason") : verifiers.passed();
  };
  const job = settled(run(makeAgent(), prompt([BIG]), { runId: "run-sv", client, verifier: bigNeedsReason }));
  const [task] = (await pendingTasks(client)) as [Task];
  await client.answer(task.id, { decision: "approve" }, { by: "erin" });
  const until = Date.now() + 20_000;
  while ((await client.get(task.id)).rejections.length === 0) {
    assert.ok(Date.now() < until, "the verifier did not send the answer back");
    await sleep(20);
  }
  const again = await client.get(task.id);
  assert.equal(again.status, "pending");
  assert.equal(again.rejections[0]?.verifier, "sdk:bigNeedsReason");
  assert.equal(job.done(), false);
  assert.deepEqual(EXECUTED, []);
  await client.answer(task.id, { decision: "approve", reason: "VIP" }, { by: "erin" });
  assert.equal((await job.value)?.finalOutput, "refunded 500 on A-1");
  assert.equal(EXECUTED.length, 1);
});

scenario("openai-agents: a timeout is a rejection, never an approval", async (env) => {
  clear();
  const client = env.client();
  const result = await run(makeAgent(), prompt([BIG]), { runId: "run-t", client, timeout: 300 });
  assert.match(String(result?.finalOutput), /timed out/);
  assert.deepEqual(EXECUTED, []);
  const page = await client.list({ keyPrefix: "openai-agents:" });
  assert.equal(page.items.length, 1);
  assert.equal(page.items[0]?.status, "timed_out");
});

scenario("openai-agents: bad input and changed arguments", async (env) => {
  clear();
  const client = env.client();
  await assert.rejects(run(makeAgent(), "x", { runId: "", client }), InvalidArgument);
  await assert.rejects(run(makeAgent(), null, { runId: "never-started", client }), NotFound);
  await assert.rejects(PendingRun.load("x".repeat(201), { client }), InvalidArgument);
  const agent = makeAgent();
  const done = await sdkRun(agent, prompt([SMALL]));
  // It did not stop on interruptions.
  await assert.rejects(requestApprovals(done, { runId: "run-bad", client }), InvalidArgument);
  const stopped = await sdkRun(agent, prompt([BIG]));
  const pending = await requestApprovals(stopped, { runId: "run-bad", client });
  const again = await requestApprovals(stopped, { runId: "run-bad", client });
  assert.equal(again.recordId, pending.recordId); // idempotent
  assert.equal(again.round, 1);
  const id = pending.taskIds["call_big"] as string;
  await client.answer(id, { decision: "approve" }, { by: "fred" });
  // The stored state now carries other arguments for the same call: the approval does not
  // apply to them.
  const forged = JSON.stringify(pending.state).replaceAll('\\"amount\\":500', '\\"amount\\":5000');
  assert.notEqual(forged, JSON.stringify(pending.state));
  const state = await RunState.fromString(agent, forged);
  const task = await client.get(id);
  assert.throws(() => decide(state, { call_big: task }), ArgumentsChanged);
  assert.throws(() => decide(state, {}), NotFound);
  assert.deepEqual(EXECUTED, [{ order_id: "A-2", amount: 5 }]); // only the run that needed none
});
