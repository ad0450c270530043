import assert from "node:assert/strict";
import { z } from "zod";
import {
  InvalidArgument,
  VerificationExhausted,
  VerificationRejected,
  awaitHuman,
  verifiers,
  type Client,
} from "../src/index.js";
import { scenario, sleep } from "./helpers.js";

const Decision = z.object({ approved: z.boolean(), amount: z.number().default(0), reason: z.string().optional() });

/** The first pending task of the namespace once it has `attempts` rejected answers. */
async function pendingWith(c: Client, attempts: number): Promise<string> {
  for (let i = 0; i < 1000; i++) {
    const page = await c.list({ status: "pending" });
    const t = page.items[0];
    if (t !== undefined && t.attempts === attempts) return t.id;
    await sleep(10);
  }
  throw new Error(`no pending task with ${attempts} attempts appeared`);
}

scenario("SDK verifier: reject, then pass", async (env) => {
  const agent = env.client();
  const human = env.client();
  const seen: number[] = [];
  const withinOrder = (p: { amount: number }, d: z.infer<typeof Decision>): verifiers.Verdict => {
    seen.push(d.amount);
    return d.amount > p.amount ? verifiers.rejected(`at most ${p.amount} can be refunded`) : verifiers.passed();
  };
  const pending = awaitHuman({
    title: "Refund?",
    payload: { orderId: "A-1", amount: 500 },
    responseSchema: Decision,
    key: "r-1",
    client: agent,
    verifier: withinOrder,
  });
  let id = await pendingWith(human, 0);
  await human.answer(id, { approved: true, amount: 900 }, { by: "alice" });
  id = await pendingWith(human, 1);
  const reopened = await human.get(id);
  assert.equal(reopened.rejections[0]?.reason, "at most 500 can be refunded");
  assert.equal(reopened.rejections[0]?.verifier, "sdk:withinOrder");
  await human.answer(id, { approved: true, amount: 400 }, { by: "alice" });
  const out = await pending;
  assert.deepEqual(out, { approved: true, amount: 400 });
  assert.deepEqual(seen, [900, 400]);
  const kinds = (await agent.audit(id)).map((e) => e.kind);
  assert.deepEqual(kinds, [
    "created",
    "answer_accepted",
    "verification_rejected",
    "answer_reopened",
    "answer_accepted",
    "verification_passed",
  ]);
});

scenario("SDK verifier: a throw is inconclusive (fail-closed), not a crash", async (env) => {
  const agent = env.client();
  const human = env.client();
  let calls = 0;
  const flaky = async (): Promise<verifiers.Verdict> => {
    calls += 1;
    if (calls === 1) throw new TypeError("fraud service down");
    return verifiers.passed();
  };
  const pending = awaitHuman({ title: "Refund?", payload: {}, responseSchema: Decision, client: agent, verifier: flaky });
  const id = await pendingWith(human, 0);
  await human.answer(id, { approved: false, reason: "dup" }, { by: "bob" });
  for (let i = 0; i < 1000; i++) {
    const t = await human.get(id);
    if (t.status === "pending" && t.answeredBy === null && calls >= 1) break;
    await sleep(10);
  }
  await human.answer(id, { approved: false, reason: "dup" }, { by: "bob" });
  const out = await pending;
  assert.equal(out.reason, "dup");
  assert.equal(calls, 2);
  const row = (await agent.audit(id)).find((e) => e.kind === "verification_inconclusive");
  assert.ok(String(row?.data["reason"]).includes("TypeError: fraud service down"));
  assert.equal((await agent.get(id)).attempts, 0);
});

scenario("core rules: the person sees the reason, the agent gets VerificationExhausted", async (env) => {
  const agent = env.client();
  const human = env.client();
  const spec = verifiers.rules(
    [{ name: "cap", check: { "<=": [{ var: "/answer/amount" }, { var: "/payload/amount" }] }, message: "at most the order amount" }],
    { maxAttempts: 2 },
  );
  const pending = awaitHuman({ title: "Refund?", payload: { amount: 500 }, responseSchema: Decision, client: agent, verification: spec });
  const outcome = pending.then(
    () => assert.fail("expected VerificationExhausted"),
    (e: unknown) => e,
  );
  const id = await pendingWith(human, 0);
  await assert.rejects(human.answer(id, { approved: true, amount: 600 }, { by: "carol" }), (e: unknown) => {
    assert.ok(e instanceof VerificationRejected);
    assert.equal(e.reason, "at most the order amount");
    assert.equal(e.details["attempts_left"], 1);
    return true;
  });
  await assert.rejects(human.answer(id, { approved: true, amount: 700 }, { by: "carol" }), VerificationExhausted);
  const e = await outcome;
  assert.ok(e instanceof VerificationExhausted);
  assert.deepEqual(e.reasons, ["at most the order amount", "at most the order amount"]);
  assert.equal((await agent.get(id)).status, "verification_exhausted");
});

scenario("LLM helpers build the core's spec; the core checks it", async (env) => {
  const c = env.client();
  const spec = verifiers.azureOpenai("verifier-deploy", { apiVersion: "2024-10-21", instructions: "Check it.", timeoutMs: 5000 });
  assert.deepEqual(spec, {
    rules: [],
    max_attempts: 3,
    on_inconclusive: "fail_closed",
    llm: { provider: "azure_openai", model: "verifier-deploy", timeout_ms: 5000, api_version: "2024-10-21", instructions: "Check it.", api: "chat" },
  });
  for (const s of [
    verifiers.claude("claude-sonnet-4-6", { api: "tool" }),
    verifiers.openai("gpt-4.1-mini", { api: "responses" }),
    verifiers.gemini("gemini-2.5-flash", { onInconclusive: "fail_open" }),
  ]) {
    const t = await c.create({ title: "Refund?", payload: {}, responseSchema: Decision, verification: s });
    assert.equal((t.verification?.["llm"] as { provider: string }).provider, s.llm?.["provider"]);
  }
  await assert.rejects(
    c.create({ title: "Refund?", payload: {}, responseSchema: Decision, verification: verifiers.gemini("g", { maxAttempts: 0 }) }),
    (e: unknown) => e instanceof InvalidArgument && e.message.includes("verification.max_attempts must be 1..=20"),
  );
  assert.throws(() => verifiers.rejected(""), InvalidArgument);
});
