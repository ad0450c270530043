import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import {
  Conflict,
  DigestMismatch,
  EffectInDoubt,
  InvalidArgument,
  awaitDecision,
  once,
  taskDigest,
  verifyDigest,
} from "../src/index.js";
import { scenario, sleep, taskByKey } from "./helpers.js";

const AGENT = fileURLToPath(new URL("./effect_agent.js", import.meta.url));

scenario("once: runs once, replays the recorded JSON, from any client", async (env) => {
  const a = env.client();
  const b = env.client();
  let calls = 0;
  const charge = async (): Promise<{ charge: string; at: Date }> => {
    calls++;
    await sleep(1);
    return { charge: "ch_1", at: new Date(0) };
  };
  const first = await once("charge-A-1", charge, { client: a });
  const again = await once("charge-A-1", charge, { client: b });
  assert.equal(calls, 1);
  // the recorded JSON, on the first run as on every replay
  assert.deepEqual(first, { charge: "ch_1", at: "1970-01-01T00:00:00.000Z" });
  assert.deepEqual(again, first);
  const effect = await a.effect("charge-A-1");
  assert.equal(effect.state, "done");
  assert.equal(effect.attempt, 1);
  assert.match(effect.startedBy ?? "", /^node:/);
  // a function without a result records null
  assert.equal(await once("void", () => undefined, { client: a }), null);
  assert.equal(await once("void", () => 5, { client: a }), null);
});

scenario("once: a throw releases the effect; releaseOnError=false leaves it in doubt", async (env) => {
  const c = env.client();
  let n = 0;
  const flaky = (): string => {
    n++;
    if (n === 1) throw new Error("card network unreachable");
    return "ok";
  };
  await assert.rejects(once("pay", flaky, { client: c }), /card network unreachable/);
  const failed = await c.effect("pay");
  assert.equal(failed.state, "failed");
  assert.equal(failed.error, "Error: card network unreachable");
  assert.equal(await once("pay", flaky, { client: c }), "ok");
  assert.equal(n, 2);

  await assert.rejects(
    once("wire", () => Promise.reject(new Error("timeout after sending")), { client: c, releaseOnError: false }),
    /timeout after sending/,
  );
  const err = await once("wire", () => "never", { client: c }).catch((e: unknown) => e);
  assert.ok(err instanceof EffectInDoubt, String(err));
  assert.equal(err.code, "effect_in_doubt");
  assert.equal(err.key, "wire");
  assert.equal(err.namespace, env.namespace);
  assert.equal(err.attempt, 1);
  assert.ok(err.startedAt instanceof Date && !Number.isNaN(err.startedAt.getTime()));
  assert.match(err.startedBy ?? "", /^node:/);
});

scenario("once: a concurrent call is in doubt, never a second run; bad input is refused", async (env) => {
  const c = env.client();
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const first = once(
    "slow",
    async () => {
      runs++;
      await gate;
      return 7;
    },
    { client: c },
  );
  await sleep(200);
  await assert.rejects(once("slow", () => 8, { client: c }), EffectInDoubt);
  release();
  assert.equal(await first, 7);
  assert.equal(runs, 1);
  // a result that is not JSON: in doubt until a person marks it done
  await assert.rejects(once("odd", () => BigInt(1), { client: c }), InvalidArgument);
  const inDoubt = await c.effects({ state: "in_doubt" });
  assert.deepEqual(
    inDoubt.map((e) => e.key),
    ["odd"],
  );
  const done = await c.resolveEffect("odd", "mark_done", { by: "alice", result: [1, 2], attempt: 1, note: "checked" });
  assert.equal(done.resolvedBy, "alice");
  assert.deepEqual(await once("odd", () => "never", { client: c }), [1, 2]);
  await assert.rejects(c.resolveEffect("odd", "allow_retry", { by: "alice" }), Conflict);
  for (const key of ["", "x".repeat(600)]) {
    await assert.rejects(once(key, () => 1, { client: c }), InvalidArgument);
  }
  await assert.rejects(once(7 as unknown as string, () => 1, { client: c }), InvalidArgument);
});

scenario("awaitDecision: the answer with what it approved; verify refuses an edited payload", async (env) => {
  const agent = env.client();
  const human = env.client();
  const Call = z.object({ tool: z.string(), args: z.record(z.string(), z.number()) });
  const Approval = z.object({ approved: z.boolean(), note: z.string().default("") });
  const call = { tool: "refund", args: { amount: 12.5, order: 1 } };
  const pending = awaitDecision({
    title: "Run this tool?",
    payload: call,
    payloadSchema: Call,
    responseSchema: Approval,
    key: "tool-1",
    client: agent,
  });
  const task = await taskByKey(human, "tool-1");
  await human.answer(task.id, { approved: true }, { by: "alice" });
  const d = await pending;
  assert.deepEqual(d.answer, { approved: true, note: "" });
  assert.equal(d.answeredBy, "alice");
  assert.equal(d.answeredVia, "typescript");
  assert.equal(d.digest, task.digest);
  assert.equal(d.task.id, task.id);
  assert.deepEqual(d.votes, []);
  assert.equal(d.defaulted, false);
  d.verify({ args: { order: 1, amount: 12.5 }, tool: "refund" });
  verifyDigest(task, call);
  assert.equal(taskDigest(task, call), task.digest);
  const edited = { tool: "refund", args: { amount: 1250, order: 1 } };
  const err = (() => {
    try {
      d.verify(edited);
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof DigestMismatch, String(err));
  assert.equal(err.expected, task.digest);
  assert.equal(err.actual, taskDigest(task, edited));
  assert.notEqual(err.actual, err.expected);
  assert.throws(() => verifyDigest(task, edited), DigestMismatch);
  assert.throws(() => verifyDigest(task, { bad: 1n }), InvalidArgument);
});

// ------------------------------------------------------------------------------------------
// Real processes, SIGKILL

function lines(log: string): number {
  return existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((l) => l !== "").length : 0;
}

function runAgent(mode: string, log: string, url: string, ns: string, key: string): { status: number | null; signal: string | null; events: Record<string, unknown>[] } {
  const out = spawnSync(process.execPath, [AGENT, mode, log, url, ns, key], { encoding: "utf8", timeout: 60_000 });
  const events = out.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: out.status, signal: out.signal, events };
}

async function killInside(log: string, url: string, ns: string, key: string): Promise<void> {
  const child = spawn(process.execPath, [AGENT, "hang", log, url, ns, key], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes('"inside"')) resolve();
    });
    child.on("close", () => reject(new Error(`the agent ended before the effect: ${out}`)));
  });
  const closed = new Promise<string | null>((r) => child.on("close", (_code, signal) => r(signal)));
  child.kill("SIGKILL");
  assert.equal(await closed, "SIGKILL");
}

scenario(
  "once across processes: SIGKILL inside the effect is in doubt until resolved; after recording, replayed",
  async (env) => {
    const c = env.client();
    const dir = mkdtempSync(join(tmpdir(), "inloop-effects-"));
    // (a) killed inside fn, after the side effect
    const log = join(dir, "charge.log");
    await killInside(log, env.url, env.namespace, "charge-1");
    assert.equal(lines(log), 1);
    const second = runAgent("run", log, env.url, env.namespace, "charge-1");
    assert.deepEqual(second.events.at(-1)?.["code"], "effect_in_doubt");
    assert.equal(lines(log), 1, "nothing ran again");
    assert.deepEqual(
      (await c.effects({ state: "in_doubt" })).map((e) => [e.key, e.attempt]),
      [["charge-1", 1]],
    );
    await c.resolveEffect("charge-1", "allow_retry", { by: "alice", attempt: 1 });
    assert.deepEqual(runAgent("run", log, env.url, env.namespace, "charge-1").events.at(-1), {
      event: "result",
      result: { lines: 2 },
    });
    assert.equal(lines(log), 2);
    // mark done: the given result, fn not run
    const log2 = join(dir, "ship.log");
    await killInside(log2, env.url, env.namespace, "ship-1");
    await c.resolveEffect("ship-1", "mark_done", { by: "bob", result: { byHand: true } });
    assert.deepEqual(runAgent("run", log2, env.url, env.namespace, "ship-1").events.at(-1), {
      event: "result",
      result: { byHand: true },
    });
    assert.equal(lines(log2), 1);
    // (b) killed between recording the result and returning: replayed, fn not run again
    const log3 = join(dir, "refund.log");
    const killed = runAgent("kill-after-record", log3, env.url, env.namespace, "refund-1");
    assert.equal(killed.signal, "SIGKILL");
    assert.deepEqual(
      killed.events.map((e) => e["event"]),
      ["recorded"],
    );
    assert.equal(lines(log3), 1);
    assert.deepEqual(runAgent("run", log3, env.url, env.namespace, "refund-1").events.at(-1), {
      event: "result",
      result: { lines: 1 },
    });
    assert.equal(lines(log3), 1);
  },
  120_000,
);
