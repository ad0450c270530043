import assert from "node:assert/strict";
import { z } from "zod";
import { z as z3 } from "zod/v3";
import { zodToJsonSchema } from "zod-to-json-schema";
import {
  Aborted,
  Cancelled,
  Conflict,
  InloopError,
  InvalidAnswer,
  InvalidPayload,
  InvalidSchema,
  KeyReused,
  TimedOut,
  awaitHuman,
} from "../src/index.js";
import { scenario, sleep, taskByKey } from "./helpers.js";

const Refund = z.object({ orderId: z.string().min(1), amount: z.number().min(0) });
const Decision = z.object({
  approved: z.boolean(),
  note: z.string().default("none"),
  priority: z.enum(["low", "normal", "high"]).default("normal"),
  count: z.number().int().positive().optional(),
});

scenario("typed roundtrip with Zod 4, answered from a second client", async (env) => {
  const agent = env.client();
  const human = env.client();
  const pending = awaitHuman({
    title: "Approve this refund?",
    payload: { orderId: "A-1", amount: 500 },
    payloadSchema: Refund,
    responseSchema: Decision,
    key: "refund-A-1",
    timeout: "1h",
    client: agent,
  });
  const task = await taskByKey(human, "refund-A-1");
  assert.equal(task.status, "pending");
  assert.deepEqual(task.payload, { orderId: "A-1", amount: 500 });
  // The form schema uses input semantics: fields with defaults are not required.
  assert.deepEqual(task.responseSchema["required"], ["approved"]);
  assert.ok(task.payloadSchema !== null);
  assert.ok(task.deadline instanceof Date && task.deadline.getTime() > Date.now() + 3_500_000);
  const answered = await human.answer(task.id, { approved: true }, { by: "alice" });
  assert.equal(answered.status, "completed");
  assert.equal(answered.answeredBy, "alice");
  assert.equal(answered.answeredVia, "typescript");
  const decision = await pending;
  // Typed as z.output<typeof Decision>; defaults filled by parse.
  const typed: { approved: boolean; note: string; priority: "low" | "normal" | "high"; count?: number | undefined } =
    decision;
  assert.deepEqual(typed, { approved: true, note: "none", priority: "normal" });
  // The same key again returns the stored answer at once.
  const again = await awaitHuman({
    title: "Approve this refund?",
    payload: { orderId: "A-1", amount: 500 },
    payloadSchema: Refund,
    responseSchema: Decision,
    key: "refund-A-1",
    timeout: "1h",
    client: agent,
  });
  assert.deepEqual(again, decision);
});

const Decision3 = z3.object({ approved: z3.boolean(), note: z3.string().default("n/a") });

scenario("Zod 3 schema (zod/v3) end to end", async (env) => {
  const schema = zodToJsonSchema(Decision3) as { properties?: Record<string, unknown> };
  assert.ok(schema.properties && Object.keys(schema.properties).length === 2, "non-empty JSON Schema");
  const agent = env.client();
  const pending = awaitHuman({ title: "z3?", payload: { n: 1 }, responseSchema: Decision3, key: "z3", client: agent });
  const task = await taskByKey(env.client(), "z3");
  assert.deepEqual(Object.keys(task.responseSchema["properties"] as object).sort(), ["approved", "note"]);
  await assert.rejects(env.client().answer(task.id, { note: "x" }, { by: "bob" }), InvalidAnswer);
  await env.client().answer(task.id, { approved: false }, { by: "bob" });
  const d: { approved: boolean; note: string } = await pending;
  assert.deepEqual(d, { approved: false, note: "n/a" });
});

scenario("plain JSON Schema: the answer comes back as is", async (env) => {
  const c = env.client();
  const schema = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    properties: { ok: { type: "boolean" } },
    required: ["ok"],
  };
  const pending = awaitHuman({ title: "json?", payload: [1, 2], responseSchema: schema, key: "j", client: c });
  const task = await taskByKey(c, "j");
  await c.answer(task.id, { ok: true, extra: 1 }, { by: "carol", channel: "test" });
  const out: unknown = await pending;
  assert.deepEqual(out, { ok: true, extra: 1 });
});

scenario("same key, same task; a different request under it is KeyReused", async (env) => {
  const c = env.client();
  const req = { title: "T", payload: { a: 1 }, responseSchema: Decision, key: "k1" };
  const a = await c.create(req);
  const b = await c.create(req);
  assert.equal(a.created, true);
  assert.equal(b.created, false);
  assert.equal(a.id, b.id);
  const err = await c.create({ ...req, payload: { a: 2 } }).catch((e: unknown) => e);
  assert.ok(err instanceof KeyReused, String(err));
  assert.ok(err instanceof InloopError);
  assert.equal(err.code, "key_reused");
  const page = await c.list();
  assert.equal(page.items.length, 1);
});

scenario("InvalidAnswer with field errors leaves the task pending", async (env) => {
  const c = env.client();
  const t = await c.create({ title: "T", payload: null, responseSchema: Decision, key: "bad-answer" });
  const err = await c.answer(t.id, { approved: "yes", priority: "urgent" }, { by: "x" }).catch((e: unknown) => e);
  assert.ok(err instanceof InvalidAnswer, String(err));
  const paths = err.errors.map((e) => e.path).sort();
  assert.deepEqual(paths, ["/approved", "/priority"]);
  assert.ok(err.errors.every((e) => e.message.length > 0));
  assert.ok(err.cause instanceof Error);
  assert.equal((await c.get(t.id)).status, "pending");
});

scenario("InvalidPayload from a Zod payload schema, nothing created", async (env) => {
  const c = env.client();
  const err = await c
    .create({ title: "T", payload: { orderId: "", amount: -1 }, payloadSchema: Refund, responseSchema: Decision, key: "p" })
    .catch((e: unknown) => e);
  assert.ok(err instanceof InvalidPayload, String(err));
  assert.deepEqual(err.errors.map((e) => e.path).sort(), ["/amount", "/orderId"]);
  assert.equal((await c.list()).items.length, 0);
  // A JSON Schema payload schema is checked by the core.
  const err2 = await c
    .create({
      title: "T",
      payload: { n: "x" },
      payloadSchema: { type: "object", properties: { n: { type: "number" } } },
      responseSchema: Decision,
    })
    .catch((e: unknown) => e);
  assert.ok(err2 instanceof InvalidPayload, String(err2));
  assert.deepEqual(err2.errors.map((e) => e.path), ["/n"]);
});

scenario("a second answer is a Conflict naming the first responder", async (env) => {
  const c = env.client();
  const t = await c.create({ title: "T", payload: 1, responseSchema: Decision, key: "c" });
  await c.answer(t.id, { approved: true }, { by: "first" });
  const err = await env.client().answer(t.id, { approved: false }, { by: "second" }).catch((e: unknown) => e);
  assert.ok(err instanceof Conflict, String(err));
  assert.equal(err.details["by"], "first");
  assert.match(err.message, /first/);
  assert.deepEqual((await c.get(t.id)).response, { approved: true });
});

scenario("timeout: TimedOut, then a late answer is a Conflict", async (env) => {
  const c = env.client();
  const started = Date.now();
  const err = await awaitHuman({
    title: "T",
    payload: 1,
    responseSchema: Decision,
    key: "late",
    timeout: "300ms",
    client: c,
  }).catch((e: unknown) => e);
  assert.ok(err instanceof TimedOut, String(err));
  assert.ok(Date.now() - started >= 250);
  const t = await c.getByKey("late");
  assert.equal(t.status, "timed_out");
  await assert.rejects(c.answer(t.id, { approved: true }, { by: "slow" }), Conflict);
  // Asking again under the key reports the same outcome.
  await assert.rejects(
    awaitHuman({ title: "T", payload: 1, responseSchema: Decision, key: "late", timeout: "300ms", client: c }),
    TimedOut,
  );
});

scenario("cancel: the waiter rejects with Cancelled", async (env) => {
  const c = env.client();
  // Handle the rejection at once: it may come before the cancel call below returns.
  const outcome = awaitHuman({ title: "T", payload: 1, responseSchema: Decision, key: "cx", client: c }).then(
    () => null,
    (e: unknown) => e,
  );
  const t = await taskByKey(env.client(), "cx");
  const cancelled = await env.client().cancel(t.id, { by: "ops", reason: "not needed" });
  assert.equal(cancelled.status, "cancelled");
  assert.equal(cancelled.cancelReason, "not needed");
  const err = await outcome;
  assert.ok(err instanceof Cancelled, String(err));
  assert.equal(err.details["by"], "ops");
});

scenario("AbortSignal: Aborted, task still pending, re-await gets the answer", async (env) => {
  const c = env.client();
  const req = { title: "T", payload: 1, responseSchema: Decision, key: "ab", client: c };
  // Already aborted: nothing is created.
  await assert.rejects(awaitHuman({ ...req, signal: AbortSignal.abort() }), Aborted);
  assert.equal((await c.list()).items.length, 0);

  const ac = new AbortController();
  const pending = awaitHuman({ ...req, signal: ac.signal });
  const t = await taskByKey(c, "ab");
  await sleep(50);
  ac.abort();
  const err = await pending.catch((e: unknown) => e);
  assert.ok(err instanceof Aborted, String(err));
  assert.equal((await c.get(t.id)).status, "pending");
  // An abort right after the call (before the native wait registered) also works.
  const ac2 = new AbortController();
  const p2 = awaitHuman({ ...req, signal: ac2.signal });
  ac2.abort();
  await assert.rejects(p2, Aborted);

  await env.client().answer(t.id, { approved: true, note: "ok" }, { by: "dave" });
  assert.deepEqual(await awaitHuman(req), { approved: true, note: "ok", priority: "normal" });

  // Client.wait with a signal.
  const t2 = await c.create({ title: "W", payload: 2, responseSchema: Decision, key: "ab2" });
  const ac3 = new AbortController();
  const w = c.wait(t2.id, { signal: ac3.signal });
  setTimeout(() => ac3.abort(), 50);
  await assert.rejects(w, Aborted);
  assert.equal((await c.wait(t2.id, { timeout: "100ms" })).status, "pending");
});

scenario("Zod 4 formats, ints and nullables are checked by the core; bad schemas are InvalidSchema", async (env) => {
  const c = env.client();
  const Form = z.object({
    contact: z.email(),
    when: z.iso.datetime().optional(),
    n: z.number().int(),
    label: z.string().nullable(),
  });
  const t = await c.create({ title: "f", payload: null, responseSchema: Form, key: "f" });
  const err = await c.answer(t.id, { contact: "nope", n: 1.5, label: null }, { by: "x" }).catch((e: unknown) => e);
  assert.ok(err instanceof InvalidAnswer, String(err));
  assert.deepEqual(err.errors.map((e) => e.path).sort(), ["/contact", "/n"]);
  const ok = await c.answer(t.id, { contact: "a@b.co", when: "2026-01-01T00:00:00Z", n: 3, label: null }, { by: "x" });
  assert.equal(ok.status, "completed");
  await assert.rejects(c.create({ title: "d", payload: null, responseSchema: z.object({ d: z.date() }) }), InvalidSchema);
  await assert.rejects(c.create({ title: "d", payload: null, responseSchema: { type: "nonsense" } }), InvalidSchema);
});
