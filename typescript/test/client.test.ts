import assert from "node:assert/strict";
import { z } from "zod";
import { Client, InvalidArgument, NotFound, awaitHuman, type Task } from "../src/index.js";
import { scenario, sleep } from "./helpers.js";

const Ok = z.object({ ok: z.boolean() });

scenario("list filters and pagination", async (env) => {
  const c = env.client();
  const made: Task[] = [];
  for (let i = 0; i < 7; i++) {
    made.push(await c.create({ title: `t${i}`, payload: i, responseSchema: Ok, key: `${i < 4 ? "a" : "b"}-${i}` }));
    await sleep(3);
  }
  await c.answer(made[1]!.id, { ok: true }, { by: "x" });
  await c.cancel(made[5]!.id, { by: "y" });

  const all = await c.list();
  assert.equal(all.items.length, 7);
  assert.equal(all.nextCursor, null);
  assert.deepEqual(all.items.map((t) => t.key), made.map((t) => t.key).reverse(), "newest first");

  assert.deepEqual((await c.list({ status: "completed" })).items.map((t) => t.id), [made[1]!.id]);
  assert.deepEqual((await c.list({ status: "cancelled" })).items.map((t) => t.id), [made[5]!.id]);
  assert.equal((await c.list({ status: "pending" })).items.length, 5);
  assert.equal((await c.list({ keyPrefix: "a-" })).items.length, 4);
  const after = await c.list({ createdAfter: made[3]!.createdAt });
  assert.ok(after.items.every((t) => t.createdAt.getTime() >= made[3]!.createdAt.getTime()));
  assert.ok(after.items.length >= 3 && after.items.length <= 4);
  const before = await c.list({ createdBefore: made[2]!.createdAt });
  assert.ok(before.items.length >= 2 && before.items.length <= 3);

  const seen: string[] = [];
  let page = await c.list({ limit: 3 });
  let pages = 1;
  seen.push(...page.items.map((t) => t.id));
  while (page.nextCursor !== null) {
    page = await c.list({ limit: 3, cursor: page.nextCursor });
    pages++;
    seen.push(...page.items.map((t) => t.id));
  }
  assert.equal(pages, 3);
  assert.deepEqual(seen, all.items.map((t) => t.id));

  // Other namespaces are not listed unless asked.
  const other = new Client({ databaseUrl: env.url, namespace: env.namespace + "-o" });
  try {
    await other.create({ title: "o", payload: 0, responseSchema: Ok, key: "a-o" });
    assert.equal((await c.list({ keyPrefix: "a-" })).items.length, 4);
    const everywhere = await c.list({ allNamespaces: true, limit: 500 });
    assert.ok(everywhere.items.some((t) => t.namespace === env.namespace + "-o"));
  } finally {
    await other.close();
  }
});

scenario("audit chain", async (env) => {
  const c = env.client();
  const t = await c.create({ title: "a", payload: 1, responseSchema: Ok, key: "au" });
  await assert.rejects(c.answer(t.id, { ok: 1 }, { by: "x" }));
  await c.answer(t.id, { ok: true }, { by: "x", channel: "slack" });
  const rows = await c.audit(t.id);
  assert.deepEqual(rows.map((r) => r.kind), ["created", "answer_refused", "answer_accepted"]);
  assert.deepEqual(rows.map((r) => r.seq), [1, 2, 3]);
  assert.equal(rows[2]!.actor, "x");
  assert.equal(rows[2]!.channel, "slack");
  assert.ok(rows[0]!.at instanceof Date);
  assert.equal(rows[1]!.prevHash, rows[0]!.hash);
  const check = await c.verifyAudit(t.id);
  assert.deepEqual(check, { ok: true, rows: 3, brokenAtSeq: null, problem: null });
});

scenario("bad inputs", async (env) => {
  const c = env.client();
  const base = { title: "b", payload: 1, responseSchema: Ok };
  for (const timeout of ["4 hours", "abc", "", "-5s", "10", "0ms"]) {
    const err = await c.create({ ...base, timeout }).catch((e: unknown) => e);
    assert.ok(err instanceof InvalidArgument, `${timeout}: ${String(err)}`);
  }
  await assert.rejects(c.create({ ...base, timeout: -1 }), InvalidArgument);
  await assert.rejects(c.create({ ...base, timeout: Number.NaN }), InvalidArgument);
  await assert.rejects(c.create({ ...base, payload: { n: 10n } }), InvalidArgument);
  await assert.rejects(c.create({ ...base, payload: { n: Number.POSITIVE_INFINITY } }), InvalidArgument);
  await assert.rejects(c.create({ ...base, payload: undefined }), InvalidArgument);
  await assert.rejects(
    awaitHuman({ ...base, key: "bi", timeout: "soon", client: c }),
    InvalidArgument,
  );
  await assert.rejects(c.get("01a213ec-5dbe-7144-980e-922f60106af6"), NotFound);
  await assert.rejects(c.get("not-an-id"), InvalidArgument);
  await assert.rejects(c.getByKey("nope"), NotFound);
  await assert.rejects(c.answer("not-an-id", { ok: true }, { by: "x" }), InvalidArgument);
  assert.equal((await c.list()).items.length, 0);
  // Durations parse as documented.
  const t = await c.create({ ...base, key: "d", timeout: "2d" });
  const ms = t.deadline!.getTime() - t.createdAt.getTime();
  assert.ok(Math.abs(ms - 2 * 86_400_000) < 1000, String(ms));
  const t2 = await c.create({ ...base, key: "d2", timeout: "1h30m" });
  assert.ok(Math.abs(t2.deadline!.getTime() - t2.createdAt.getTime() - 5_400_000) < 1000);
});

scenario("concurrent first calls share one engine", async (env) => {
  const c = env.client();
  const engines = await Promise.all(Array.from({ length: 8 }, () => c._engine()));
  assert.ok(engines.every((e) => e === engines[0]));
  assert.equal(engines[0]!.backend, env.backend);
  await c.close();
  // Reopens on use.
  assert.equal((await c.list()).items.length, 0);
});

scenario("callbackUrl in direct mode: stored normalized, its form checked", async (env) => {
  const c = env.client();
  // Direct mode cannot know the server's allow-list: any well-formed http(s) URL is stored
  // (the server's dispatcher refuses to send what its list does not allow).
  const t = await c.create({
    title: "Approve?",
    payload: {},
    responseSchema: Ok,
    callbackUrl: "https://Engine.Internal:443/hooks/./done",
  });
  assert.equal(t.callbackUrl, "https://engine.internal/hooks/done");
  assert.equal((await c.get(t.id)).callbackUrl, "https://engine.internal/hooks/done");
  assert.equal((await c.create({ title: "No callback", payload: {}, responseSchema: Ok })).callbackUrl, null);
  for (const [url, why] of [
    ["ftp://engine.internal/x", /http or https/],
    ["/relative", /absolute URL/],
    ["https://user:pw@engine.internal/", /credentials/],
    [`https://engine.internal/${"a".repeat(2100)}`, /2048/],
  ] as const) {
    await assert.rejects(
      c.create({ title: "Approve?", payload: {}, responseSchema: Ok, callbackUrl: url }),
      (e: unknown) => e instanceof InvalidArgument && why.test(e.message),
      url,
    );
  }
  await assert.rejects(
    c.create({ title: "Approve?", payload: {}, responseSchema: Ok, callbackUrl: 42 as unknown as string }),
    InvalidArgument,
  );
});
