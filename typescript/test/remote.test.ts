// Remote mode: the SDK against a real `inloop serve` (docs/api.md), on SQLite and PostgreSQL.
//
// Each test starts the server from the `inloop` CLI (see serve.ts: `serve --bind
// 127.0.0.1:PORT`, database from INLOOP_DATABASE_URL, an API key from `inloop apikey create
// --allow-answer --json`).
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { createServer as createHttpServer } from "node:http";
import { z } from "zod";
import {
  Aborted,
  Client,
  ConfigError,
  InloopError,
  InvalidAnswer,
  InvalidArgument,
  TimedOut,
  awaitHuman,
  verifyWebhook,
  type Task,
} from "../src/index.js";
import { sleep } from "./helpers.js";
import { remote } from "./serve.js";

/** The id of the task `key` names, once another party has created it. */
async function pendingTask(client: Client, key: string, withinMs = 20_000): Promise<Task> {
  const until = Date.now() + withinMs;
  for (;;) {
    const page = await client.list({ keyPrefix: key });
    if (page.items[0] !== undefined) return page.items[0];
    if (Date.now() > until) throw new Error(`task ${key} never appeared`);
    await sleep(20);
  }
}

const Decision = z.object({ approved: z.boolean(), note: z.string().default("") });
const DECISION_SCHEMA = {
  type: "object",
  properties: { approved: { type: "boolean" } },
  required: ["approved"],
} as const;

remote("awaitHuman over HTTP, answered by a second remote client, is typed", async (r) => {
  const agent = r.client();
  const human = r.client();
  assert.equal(agent.remote, true);
  assert.equal(agent.databaseUrl, r.server.url);
  const key = `refund-${randomUUID()}`;
  const waiting = awaitHuman({
    title: "Approve this refund?",
    payload: { orderId: "A-1", amount: 500 },
    responseSchema: Decision,
    key,
    client: agent,
  });
  const task = await pendingTask(human, key);
  assert.equal(task.status, "pending");
  assert.deepEqual(task.payload, { orderId: "A-1", amount: 500 });
  const answered = await human.answer(task.id, { approved: true, note: "ok" }, { by: "alice" });
  assert.equal(answered.status, "completed");
  const decision: { approved: boolean; note: string } = await waiting;
  assert.deepEqual(decision, { approved: true, note: "ok" });
  assert.equal((await agent.get(task.id)).answeredBy, "alice");
  const check = await agent.verifyAudit(task.id);
  assert.ok(check.ok);
  const engine = await agent._engine();
  assert.equal(engine.backend, "remote");
  assert.equal(engine.url, r.server.url);
  assert.equal(engine.parked(), 0);
});

remote("the same key returns the same task", async (r) => {
  const agent = r.client();
  const key = `k-${randomUUID()}`;
  const req = { title: "Approve?", payload: { n: 1 }, responseSchema: DECISION_SCHEMA, key };
  const first = await agent.create(req);
  const again = await agent.create(req);
  assert.equal(first.created, true);
  assert.equal(again.created, false);
  assert.equal(again.id, first.id);
  assert.deepEqual(
    (await agent.list({ keyPrefix: key })).items.map((t) => t.id),
    [first.id],
  );
  assert.equal((await agent.getByKey(key)).id, first.id);
});

remote("an invalid answer has field errors; the task stays pending", async (r) => {
  const agent = r.client();
  const human = r.client();
  const task = await agent.create({ title: "Approve?", payload: {}, responseSchema: DECISION_SCHEMA });
  const err = await human.answer(task.id, { approved: "yes" }, { by: "bob" }).then(
    () => assert.fail("the answer was accepted"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof InvalidAnswer, String(err));
  assert.equal(err.code, "invalid_answer");
  assert.deepEqual(
    err.errors.map((e) => e.path),
    ["/approved"],
  );
  assert.equal((await agent.get(task.id)).status, "pending");
});

remote("a timeout rejects with TimedOut", async (r) => {
  const agent = r.client();
  const started = Date.now();
  await assert.rejects(
    awaitHuman({ title: "Quick?", payload: {}, responseSchema: DECISION_SCHEMA, timeout: 300, client: agent }),
    (e: unknown) => e instanceof TimedOut && e.code === "timed_out",
  );
  assert.ok(Date.now() - started < 10_000);
  const task = await agent.wait(
    (await agent.create({ title: "Later?", payload: {}, responseSchema: DECISION_SCHEMA })).id,
    { timeout: 300 },
  );
  assert.equal(task.status, "pending");
});

remote("an AbortSignal stops the wait with Aborted; the task is unchanged", async (r) => {
  const agent = r.client();
  const key = `abort-${randomUUID()}`;
  const controller = new AbortController();
  const waiting = awaitHuman({
    title: "Approve?",
    payload: {},
    responseSchema: DECISION_SCHEMA,
    key,
    client: agent,
    signal: controller.signal,
  });
  const task = await pendingTask(agent, key);
  await sleep(200); // in a long poll now
  const reason = new Error("user went away");
  controller.abort(reason);
  await assert.rejects(waiting, (e: unknown) => e instanceof Aborted && e.cause === reason);
  assert.equal((await agent.get(task.id)).status, "pending");
  // Client.wait too
  const c2 = new AbortController();
  const w = agent.wait(task.id, { signal: c2.signal });
  await sleep(100);
  c2.abort();
  await assert.rejects(w, Aborted);
});

remote(
  "an agent survives a server restart (SIGKILL) and gets the answer given after it",
  async (r) => {
    const agent = r.client();
    const key = `restart-${randomUUID()}`;
    let settled = false;
    const waiting = awaitHuman({ title: "Approve?", payload: { x: 1 }, responseSchema: Decision, key, client: agent });
    void waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    const task = await pendingTask(agent, key);
    await sleep(300); // the agent is in a long poll now
    await r.server.kill();
    await sleep(1000); // the agent retries against a dead port meanwhile
    assert.equal(settled, false, "the agent's wait ended while the server was down");
    await r.server.start();
    const human = r.client();
    await human.answer(task.id, { approved: false, note: "after restart" }, { by: "carol" });
    assert.deepEqual(await waiting, { approved: false, note: "after restart" });
    assert.deepEqual(
      (await human.list({ keyPrefix: key })).items.map((t) => t.id),
      [task.id],
    );
  },
  90_000,
);

remote("a wrong API key is unauthorized; a missing one is a ConfigError", async (r) => {
  const wrong = new Client({ url: r.server.url, apiKey: "ilk_" + "A".repeat(43), namespace: r.namespace });
  try {
    await assert.rejects(
      wrong.get(randomUUID()),
      (e: unknown) => e instanceof InloopError && e.code === "unauthorized",
    );
  } finally {
    await wrong.close();
  }
  const saved = process.env["INLOOP_API_KEY"];
  delete process.env["INLOOP_API_KEY"];
  try {
    await assert.rejects(new Client({ url: r.server.url }).get(randomUUID()), ConfigError);
  } finally {
    if (saved !== undefined) process.env["INLOOP_API_KEY"] = saved;
  }
});

remote("INLOOP_URL + INLOOP_API_KEY select remote mode, also for awaitHuman's default client", async (r) => {
  const names = ["INLOOP_URL", "INLOOP_API_KEY", "INLOOP_DATABASE_URL"] as const;
  const saved = names.map((n) => process.env[n]);
  process.env["INLOOP_URL"] = r.server.url;
  process.env["INLOOP_API_KEY"] = r.apiKey;
  process.env["INLOOP_DATABASE_URL"] = "sqlite:/nonexistent/dir/never.db";
  try {
    const fromEnv = new Client({ namespace: r.namespace });
    assert.equal(fromEnv.remote, true);
    assert.equal(fromEnv.databaseUrl, r.server.url);
    const key = `env-${randomUUID()}`;
    const waiting = awaitHuman({
      title: "Approve?",
      payload: {},
      responseSchema: Decision,
      key,
      namespace: r.namespace,
    });
    const human = r.client();
    const task = await pendingTask(human, key);
    await human.answer(task.id, { approved: true }, { by: "dan" });
    assert.deepEqual(await waiting, { approved: true, note: "" });
    await fromEnv.close();
  } finally {
    names.forEach((n, i) => {
      const v = saved[i];
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    });
  }
});

/** An HTTP receiver on 127.0.0.1 recording every POST (headers and raw body). */
async function receiver(): Promise<{
  origin: string;
  hits: { headers: Record<string, string>; body: Buffer }[];
  close(): Promise<void>;
}> {
  const hits: { headers: Record<string, string>; body: Buffer }[] = [];
  const srv = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
      hits.push({ headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const addr = srv.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  return {
    origin: `http://127.0.0.1:${port}`,
    hits,
    close: () => new Promise<void>((resolve) => srv.close(() => resolve())),
  };
}

const CALLBACK_SECRET = `whsec_${randomBytes(32).toString("base64")}`;

remote(
  "callbackUrl: the end reaches the URL signed; a URL the server does not allow is refused",
  async (r) => {
    const rx = await receiver();
    try {
      const agent = r.client();
      await assert.rejects(
        awaitHuman({
          title: "Quick?",
          payload: { n: 1 },
          responseSchema: DECISION_SCHEMA,
          timeout: 300,
          client: agent,
          callbackUrl: `${rx.origin}/cb/timed-out`,
        }),
        TimedOut,
      );
      const task = await agent.create({
        title: "Approve?",
        payload: { n: 2 },
        responseSchema: DECISION_SCHEMA,
        callbackUrl: `${rx.origin}/cb/./x/../cancelled`,
      });
      assert.equal(task.callbackUrl, `${rx.origin}/cb/cancelled`);
      await agent.cancel(task.id, { by: "ops", reason: "not needed" });
      const until = Date.now() + 20_000;
      while (rx.hits.length < 2) {
        if (Date.now() > until) throw new Error(`${rx.hits.length} of 2 callbacks arrived`);
        await sleep(20);
      }
      await sleep(200);
      assert.equal(rx.hits.length, 2);
      const statuses = new Set<string>();
      for (const h of rx.hits) {
        verifyWebhook(CALLBACK_SECRET, h.headers, h.body);
        const event = JSON.parse(h.body.toString("utf8")) as { type: string; data: { task: { status: string } } };
        assert.equal(event.type, "task.ended");
        statuses.add(event.data.task.status);
      }
      assert.deepEqual([...statuses].sort(), ["cancelled", "timed_out"]);
      const first = rx.hits[0];
      assert.ok(first !== undefined);
      assert.throws(
        () => verifyWebhook(CALLBACK_SECRET, first.headers, Buffer.concat([first.body, Buffer.from(" ")])),
        (e: unknown) => e instanceof InloopError && e.code === "unauthorized",
      );
      for (const url of ["https://evil.example/cb/", `${rx.origin}/other`, "ftp://127.0.0.1/cb/"]) {
        await assert.rejects(
          agent.create({ title: "Approve?", payload: {}, responseSchema: DECISION_SCHEMA, callbackUrl: url }),
          (e: unknown) => e instanceof InvalidArgument && /callback_url/.test(e.message),
        );
      }
    } finally {
      await rx.close();
    }
  },
  60_000,
  {
    INLOOP_CALLBACK_ALLOW: "http://127.0.0.1:*/cb/",
    INLOOP_CALLBACK_SECRET: CALLBACK_SECRET,
    INLOOP_CHANNEL_POLL_MS: "50",
  },
);
