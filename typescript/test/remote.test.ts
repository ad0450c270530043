// Remote mode: the SDK against a real `inloop serve` (docs/api.md), on SQLite and PostgreSQL.
//
// Each test starts the server from the `inloop` CLI (`serve --bind 127.0.0.1:PORT`, database
// from INLOOP_DATABASE_URL) and creates an API key with
// `inloop apikey create --name agent --namespace NS --allow-answer --json` (field "secret").
// The CLI is `$INLOOP_CLI`, else `$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/debug/inloop`,
// else the venv's console script `../.venv/bin/inloop` (scripts/test.sh builds both first).
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
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

const run = promisify(execFile);

/** The `inloop` CLI binary, or a clear error saying how to build it. */
function inloopCli(): string {
  const tried: string[] = [];
  const explicit = process.env["INLOOP_CLI"];
  if (explicit) {
    if (existsSync(explicit)) return explicit;
    tried.push(explicit);
  }
  const target = process.env["CARGO_TARGET_DIR"];
  if (target) {
    const p = join(target, "x86_64-unknown-linux-gnu", "debug", "inloop");
    if (existsSync(p)) return p;
    tried.push(p);
  }
  // Compiled, this file is typescript/dist/test/remote.test.js.
  const venv = fileURLToPath(new URL("../../../.venv/bin/inloop", import.meta.url));
  if (existsSync(venv)) return venv;
  tried.push(venv);
  throw new Error(
    `the inloop CLI was not found (tried ${tried.join(", ")}); build it with \`cargo build\` ` +
      "(CARGO_TARGET_DIR set) or `scripts/env.sh build_python` (the venv's console script), or set INLOOP_CLI",
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

const servers = new Set<Server>();

/** One `inloop serve` process on a fixed port; can be killed and started again. */
class Server {
  readonly url: string;
  readonly #log: string;
  #proc: ChildProcess | undefined;

  constructor(
    readonly cli: string,
    readonly databaseUrl: string,
    readonly port: number,
    dir: string,
    readonly extraEnv: Record<string, string> = {},
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.#log = join(dir, "serve.log");
  }

  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.extraEnv, INLOOP_DATABASE_URL: this.databaseUrl };
    delete env["INLOOP_URL"];
    delete env["INLOOP_API_KEY"];
    return env;
  }

  log(): string {
    return existsSync(this.#log) ? readFileSync(this.#log, "utf8") : "";
  }

  async start(): Promise<void> {
    const fd = openSync(this.#log, "a");
    let exited: string | undefined;
    try {
      const proc = spawn(this.cli, ["serve", "--bind", `127.0.0.1:${this.port}`], {
        env: this.env(),
        stdio: ["ignore", fd, fd],
      });
      proc.once("exit", (code, sig) => {
        exited = `code ${code} signal ${sig}`;
      });
      proc.once("error", (e) => {
        exited = String(e);
      });
      this.#proc = proc;
      servers.add(this);
    } finally {
      closeSync(fd);
    }
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (exited !== undefined) throw new Error(`\`inloop serve\` exited (${exited}):\n${this.log()}`);
      try {
        const r = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`\`inloop serve\` did not answer /healthz within 30 s:\n${this.log()}`);
  }

  async kill(): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    servers.delete(this);
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGKILL");
    await gone;
  }

  async apikey(namespace: string): Promise<string> {
    const args = ["apikey", "create", "--name", "agent", "--namespace", namespace, "--allow-answer", "--json"];
    const { stdout } = await run(this.cli, args, { env: this.env(), timeout: 60_000 });
    const out = JSON.parse(stdout) as { secret?: unknown };
    assert.equal(typeof out.secret, "string", `no "secret" in the JSON of \`inloop apikey create\`: ${stdout}`);
    return out.secret as string;
  }
}

after(async () => {
  for (const s of [...servers]) await s.kill();
});

interface Remote {
  server: Server;
  namespace: string;
  apiKey: string;
  /** A new remote client on this test's server, key and namespace (closed after the test). */
  client(): Client;
}

const PG_URL = process.env["INLOOP_TEST_PG_URL"];

/** Registers `name` on SQLite (a temp file) and, with INLOOP_TEST_PG_URL, on PostgreSQL; the
 * server gets `extraEnv` too. */
function remote(
  name: string,
  fn: (r: Remote) => Promise<void>,
  timeoutMs = 60_000,
  extraEnv: Record<string, string> = {},
): void {
  test(`${name} [remote sqlite]`, { timeout: timeoutMs }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "inloop-ts-remote-"));
    try {
      await withServer(`sqlite://${dir}/x.db`, dir, fn, extraEnv);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  if (PG_URL === undefined || PG_URL === "") {
    test(`${name} [remote postgres]`, { skip: "INLOOP_TEST_PG_URL is not set" }, () => undefined);
  } else {
    test(`${name} [remote postgres]`, { timeout: timeoutMs }, async () => {
      const dir = mkdtempSync(join(tmpdir(), "inloop-ts-remote-"));
      try {
        await withServer(PG_URL, dir, fn, extraEnv);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}

async function withServer(
  databaseUrl: string,
  dir: string,
  fn: (r: Remote) => Promise<void>,
  extraEnv: Record<string, string> = {},
): Promise<void> {
  const server = new Server(inloopCli(), databaseUrl, await freePort(), dir, extraEnv);
  const clients: Client[] = [];
  try {
    await server.start();
    const namespace = `r-${randomBytes(6).toString("hex")}`;
    const apiKey = await server.apikey(namespace);
    await fn({
      server,
      namespace,
      apiKey,
      client() {
        const c = new Client({ url: server.url, apiKey, namespace });
        clients.push(c);
        return c;
      },
    });
  } catch (e) {
    if (e instanceof Error) e.message += `\n--- serve.log ---\n${server.log()}`;
    throw e;
  } finally {
    for (const c of clients) await c.close();
    await server.kill();
  }
}

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
