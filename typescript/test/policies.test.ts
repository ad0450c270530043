// Approval policies through the TypeScript SDK (the core's rules: core/tests/policies.rs): an
// M-of-N quorum, an excluded requester, onTimeout defaults, durable reminders and escalation,
// and bad policies. Every scenario runs on SQLite and PostgreSQL, directly on the database and
// through an `inloop serve` started by the test (remote mode, see serve.ts).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { z } from "zod";
import {
  Client,
  Conflict,
  DigestMismatch,
  Forbidden,
  InloopError,
  InvalidArgument,
  KeyReused,
  TimedOut,
  awaitDecision,
  awaitHuman,
  verifiers,
  type Approvers,
  type Escalation,
  type Task,
  type Timer,
  type Vote,
} from "../src/index.js";
import { scenario, sleep, taskByKey } from "./helpers.js";
import { remote } from "./serve.js";

const Approval = z.object({ approved: z.boolean(), comment: z.string().default("") });
const APPROVAL_SCHEMA = {
  type: "object",
  properties: { approved: { type: "boolean" } },
  required: ["approved"],
} as const;
const WIRE = { amount: 25_000, currency: "EUR", to: "ACME" };

interface Pair {
  mode: "direct" | "remote";
  agent: Client;
  human: Client;
}

/** Registers `name` directly on the database and through a server, each on both backends. */
function both(name: string, fn: (p: Pair) => Promise<void>): void {
  scenario(name, (env) => fn({ mode: "direct", agent: env.client(), human: env.client() }), 60_000);
  remote(name, (r) => fn({ mode: "remote", agent: r.client(), human: r.client() }));
}

async function rejectsWith<E extends InloopError>(
  p: Promise<unknown>,
  cls: new (...args: never[]) => E,
  includes: string,
): Promise<E> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.ok(e.message.includes(includes), `${JSON.stringify(includes)} not in: ${e.message}`);
    return e;
  }
  assert.fail(`expected ${cls.name} (${includes}), but it resolved`);
}

both("2 of 3 approvers: the agent resumes on the second approval, with both votes", async ({ mode, agent, human }) => {
  const key = `wire-${randomUUID()}`;
  let resumed = false;
  const waiting = awaitDecision({
    title: "Wire 25,000 EUR to ACME?",
    payload: WIRE,
    responseSchema: Approval,
    key,
    client: agent,
    approvers: { anyOf: ["alice@acme.com", "bob@acme.com", "carol@acme.com"], required: 2 },
  }).finally(() => {
    resumed = true;
  });
  const task = await taskByKey(human, key, 20_000);
  assert.deepEqual(task.policy?.approvers, {
    anyOf: ["alice@acme.com", "bob@acme.com", "carol@acme.com"],
    required: 2,
    excludeRequester: false,
    rejectOn: "any",
  });
  assert.deepEqual(task.votes, []);

  const first = await human.answer(task.id, { approved: true, comment: "looks right" }, { by: "alice@acme.com" });
  assert.equal(first.status, "pending");
  assert.deepEqual(
    first.votes.map((v) => [v.by, v.approve]),
    [["alice@acme.com", true]],
  );
  // The same vote again counts once.
  const again = await human.answer(task.id, { approved: true, comment: "looks right" }, { by: "alice@acme.com" });
  assert.equal(again.votes.length, 1);
  // A changed vote and an outsider are refused.
  const changed = await rejectsWith(
    human.answer(task.id, { approved: false }, { by: "alice@acme.com" }),
    Forbidden,
    "a vote cannot be changed",
  );
  assert.equal(changed.code, "forbidden");
  await rejectsWith(
    human.answer(task.id, { approved: true }, { by: "mallory@evil.example" }),
    Forbidden,
    "not one of the approvers",
  );
  // One approval of two: still waiting.
  await sleep(300);
  assert.equal(resumed, false);
  assert.equal((await agent.get(task.id)).status, "pending");

  const done = await human.answer(task.id, { approved: true, comment: "ok" }, { by: "bob@acme.com" });
  assert.equal(done.status, "completed");
  const decision = await waiting;
  assert.deepEqual(decision.answer, { approved: true, comment: "ok" });
  assert.deepEqual(
    decision.votes.map((v) => v.by),
    ["alice@acme.com", "bob@acme.com"],
  );
  assert.equal(decision.defaulted, false);
  // The approved digest covers the policy; the agent checks what it is about to do.
  decision.verify(WIRE);
  assert.throws(() => decision.verify({ ...WIRE, amount: 25_001 }), DigestMismatch);

  const got = await agent.get(task.id);
  assert.equal(got.answeredBy, "bob@acme.com");
  assert.equal(got.defaulted, false);
  const votes: Vote[] = got.votes;
  assert.deepEqual(
    votes.map((v) => [v.by, v.approve, v.response]),
    [
      ["alice@acme.com", true, { approved: true, comment: "looks right" }],
      ["bob@acme.com", true, { approved: true, comment: "ok" }],
    ],
  );
  assert.ok(votes.every((v) => v.at instanceof Date));
  assert.deepEqual(
    votes.map((v) => v.email),
    ["alice@acme.com", "bob@acme.com"],
  );
  assert.ok(votes[0]!.at.getTime() <= votes[1]!.at.getTime());
  if (mode === "direct") assert.deepEqual(votes.map((v) => v.channel), ["typescript", "typescript"]);
  await rejectsWith(human.answer(task.id, { approved: true }, { by: "carol@acme.com" }), Conflict, "bob@acme.com");
  const kinds = (await agent.audit(task.id)).map((e) => e.kind);
  assert.equal(kinds.filter((k) => k === "vote_recorded").length, 2, kinds.join());
  assert.ok((await agent.verifyAudit(task.id)).ok);
});

both("one rejection ends a quorum as rejected", async ({ agent, human }) => {
  const key = `wire-${randomUUID()}`;
  const waiting = awaitHuman({
    title: "Wire?",
    payload: WIRE,
    responseSchema: Approval,
    key,
    client: agent,
    approvers: { anyOf: ["alice", "bob", "carol"], required: 2 },
  });
  const task = await taskByKey(human, key, 20_000);
  await human.answer(task.id, { approved: true }, { by: "alice" });
  await human.answer(task.id, { approved: false, comment: "wrong IBAN" }, { by: "bob" });
  assert.deepEqual(await waiting, { approved: false, comment: "wrong IBAN" });
});

both("the requester may not approve their own request", async ({ agent, human }) => {
  const key = `self-${randomUUID()}`;
  const waiting = awaitHuman({
    title: "Wire?",
    payload: WIRE,
    responseSchema: Approval,
    key,
    client: agent,
    requestedBy: "alice@acme.com",
    approvers: { anyOf: ["alice@acme.com", "bob@acme.com"], excludeRequester: true },
  });
  const task = await taskByKey(human, key, 20_000);
  assert.equal(task.requestedBy, "alice@acme.com");
  assert.equal(task.policy?.approvers?.excludeRequester, true);
  await rejectsWith(human.answer(task.id, { approved: true }, { by: "alice@acme.com" }), Forbidden, "may not approve it");
  assert.equal((await agent.get(task.id)).status, "pending");
  await human.answer(task.id, { approved: true }, { by: "bob@acme.com" });
  assert.deepEqual(await waiting, { approved: true, comment: "" });

  // Excluding the requester without naming one is refused by the core, not ignored.
  await rejectsWith(
    agent.create({
      title: "Wire?",
      payload: WIRE,
      responseSchema: Approval,
      approvers: { anyOf: ["bob@acme.com"], excludeRequester: true },
    }),
    InvalidArgument,
    "requested_by",
  );
});

both("onTimeout: a default answer is returned and marked; raise rejects with TimedOut", async ({ agent, human }) => {
  const key = `default-${randomUUID()}`;
  const request = {
    title: "Quick?",
    payload: WIRE,
    responseSchema: Approval,
    key,
    client: agent,
    timeout: 300,
    // The input type: `comment` has a default, so it may be left out.
    onTimeout: { default: { approved: false } },
  };
  const got = await awaitHuman(request);
  const typed: { approved: boolean; comment: string } = got;
  assert.deepEqual(typed, { approved: false, comment: "" });
  const task = await agent.getByKey(key);
  assert.equal(task.status, "timed_out");
  assert.equal(task.defaulted, true);
  assert.equal(task.answeredVia, "timeout");
  assert.equal(task.answeredBy, null);
  assert.deepEqual(task.response, { approved: false });
  assert.deepEqual(task.policy?.onTimeout, { default: { approved: false } });
  // The key again: the recorded default at once.
  assert.deepEqual(await awaitHuman(request), { approved: false, comment: "" });
  await rejectsWith(human.answer(task.id, { approved: true }, { by: "alice" }), Conflict, "timed out");
  assert.ok((await agent.audit(task.id)).some((e) => e.kind === "timed_out"));

  // A JSON Schema response; the agent's own verifier does not judge the default.
  let judged = 0;
  const plain = await awaitHuman({
    title: "Quick?",
    payload: {},
    responseSchema: APPROVAL_SCHEMA,
    client: agent,
    timeout: "300ms",
    onTimeout: { default: { approved: false } },
    verifier: () => {
      judged++;
      return verifiers.rejected("never");
    },
  });
  assert.deepEqual(plain, { approved: false });
  assert.equal(judged, 0);

  const raiseKey = `raise-${randomUUID()}`;
  await assert.rejects(
    awaitHuman({
      title: "Quick?",
      payload: WIRE,
      responseSchema: Approval,
      key: raiseKey,
      client: agent,
      timeout: 300,
      onTimeout: "raise",
    }),
    TimedOut,
  );
  const raised = await agent.getByKey(raiseKey);
  assert.equal(raised.status, "timed_out");
  assert.equal(raised.defaulted, false);
  assert.equal(raised.response, null);
  assert.deepEqual(raised.policy, null, "raise alone is no policy");
});

both("reminders and escalation: listed in due order, and they fire", async ({ agent, human }) => {
  const escalate: Escalation[] = [{ after: "4h", notify: ["slack:@cfo"], addApprovers: ["carol@acme.com"] }];
  const task = await agent.create({
    title: "Wire?",
    payload: WIRE,
    responseSchema: Approval,
    key: `timers-${randomUUID()}`,
    timeout: "8h",
    approvers: { anyOf: ["alice@acme.com"] },
    reminders: ["2h", 1_800_000],
    escalate,
  });
  const timers: Timer[] = task.timers;
  assert.deepEqual(
    timers.map((t) => [t.kind, t.index, t.dueAt.getTime() - task.createdAt.getTime()]),
    [
      ["reminder", 2, 1_800_000],
      ["reminder", 1, 7_200_000],
      ["escalation", 1, 14_400_000],
    ],
  );
  assert.ok(timers.every((t) => t.firedAt === null));
  assert.deepEqual(task.policy?.remindersMs, [7_200_000, 1_800_000]);
  assert.deepEqual(task.policy?.escalate, [{ afterMs: 14_400_000, notify: ["slack:@cfo"], addApprovers: ["carol@acme.com"] }]);
  assert.deepEqual((await human.get(task.id)).timers, timers);
  // carol is no approver until the escalation fires.
  await rejectsWith(human.answer(task.id, { approved: true }, { by: "carol@acme.com" }), Forbidden, "not one of the approvers");

  // Short timers fire once each (swept by the waiting agent's engine, or the server); the
  // escalation makes carol an approver.
  const key = `escalate-${randomUUID()}`;
  const waiting = awaitHuman({
    title: "Wire?",
    payload: WIRE,
    responseSchema: Approval,
    key,
    client: agent,
    timeout: "60s",
    approvers: { anyOf: ["alice@acme.com"] },
    reminders: ["200ms"],
    escalate: [{ after: 400, addApprovers: ["carol@acme.com"] }],
  });
  let short: Task = await taskByKey(human, key, 20_000);
  const until = Date.now() + 20_000;
  while (short.timers.some((t) => t.firedAt === null)) {
    assert.ok(Date.now() < until, JSON.stringify(short.timers));
    await sleep(50);
    short = await human.get(short.id);
  }
  assert.deepEqual(
    short.timers.map((t) => t.kind),
    ["reminder", "escalation"],
  );
  assert.ok(short.timers.every((t) => t.firedAt !== null && t.firedAt.getTime() >= t.dueAt.getTime()));
  await human.answer(short.id, { approved: true }, { by: "carol@acme.com" });
  assert.deepEqual(await waiting, { approved: true, comment: "" });
  const kinds = (await agent.audit(short.id)).map((e) => e.kind);
  assert.equal(kinds.filter((k) => k === "reminder_sent").length, 1, kinds.join());
  assert.equal(kinds.filter((k) => k === "escalated").length, 1, kinds.join());
});

both("the core refuses policies that cannot work, with its reason", async ({ agent }) => {
  const prefix = `bad-${randomUUID()}`;
  const e = await rejectsWith(
    agent.create({
      title: "Wire?",
      payload: WIRE,
      responseSchema: { type: "object", properties: { note: { type: "string" } } },
      key: `${prefix}-1`,
      approvers: { anyOf: ["alice", "bob"], required: 2 },
    }),
    InvalidArgument,
    "approval response schema",
  );
  assert.equal(e.code, "invalid_argument");
  await rejectsWith(
    agent.create({
      title: "Wire?",
      payload: WIRE,
      responseSchema: Approval,
      key: `${prefix}-2`,
      timeout: "1h",
      reminders: ["2h"],
    }),
    InvalidArgument,
    "reminder 1 is due after the task's timeout",
  );
  await rejectsWith(
    awaitHuman({
      title: "Wire?",
      payload: WIRE,
      responseSchema: APPROVAL_SCHEMA,
      key: `${prefix}-3`,
      client: agent,
      timeout: "1m",
      onTimeout: { default: { approved: "maybe" } },
    }),
    InvalidArgument,
    "on_timeout",
  );
  await assert.rejects(
    agent.create({ title: "Wire?", payload: WIRE, responseSchema: Approval, key: `${prefix}-4`, escalate: [{ after: "1m" }] }),
    InvalidArgument,
  );
  assert.deepEqual((await agent.list({ keyPrefix: prefix })).items, []);

  // The policy is part of the request: the same key with another policy is another request.
  const approvers: Approvers = { anyOf: ["alice", "bob"], required: 2 };
  const req = { title: "Wire?", payload: WIRE, responseSchema: Approval, key: `${prefix}-5` };
  const first = await agent.create({ ...req, approvers });
  const same = await agent.create({ ...req, approvers });
  assert.equal(same.id, first.id);
  assert.equal(same.created, false);
  await assert.rejects(agent.create({ ...req, approvers: { ...approvers, required: 1 } }), KeyReused);
});

test("obvious mistakes are refused before the core, with clear errors", async () => {
  const dir = mkdtempSync(join(tmpdir(), "inloop-ts-policy-"));
  const client = new Client({ databaseUrl: `sqlite://${dir}/x.db` });
  try {
    const base = { title: "Wire?", payload: WIRE, responseSchema: Approval };
    // Deliberately ill-typed values, as plain JavaScript callers could pass them.
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ reminders: [-5] }, "reminders[0] must be a positive duration"],
      [{ reminders: [60_000, "0s"] }, "reminders[1] must be a positive duration"],
      [{ reminders: ["soon"] }, 'reminders[0] must be milliseconds or a duration like "500ms"'],
      [{ reminders: "30m" }, "reminders must be an array of durations"],
      [{ escalate: { after: "1h", notify: ["slack:#x"] } }, "escalate must be an array"],
      [{ escalate: [{ notify: ["slack:#x"] }] }, "escalate[0].after is required"],
      [{ escalate: [{ after: "-1h", notify: ["slack:#x"] }] }, "escalate[0].after must be milliseconds or a duration"],
      [{ escalate: [{ after: 0, notify: ["slack:#x"] }] }, "escalate[0].after must be a positive duration"],
      [{ escalate: [{ after: "1h", notify: "slack:#x" }] }, "escalate[0].notify must be an array of strings"],
      [{ approvers: ["alice"] }, "approvers must be an object"],
      [{ approvers: { anyOf: "alice" } }, "approvers.anyOf must be an array of strings"],
      [{ approvers: { anyOf: [] } }, "approvers.anyOf must name at least one approver"],
      [{ approvers: { anyOf: ["a"], required: 0 } }, "approvers.required must be an integer of at least 1, not 0"],
      [{ approvers: { anyOf: ["a"], required: 1.5 } }, "approvers.required must be an integer of at least 1, not 1.5"],
      [{ approvers: { anyOf: ["a"], excludeRequester: "yes" } }, "approvers.excludeRequester must be a boolean"],
      [{ approvers: { anyOf: ["a"], rejectOn: "all" } }, 'approvers.rejectOn must be "any" or "majority", not "all"'],
      [{ onTimeout: "deny" }, 'onTimeout must be "raise" or { default: answer }'],
      [{ onTimeout: { approved: false } }, 'onTimeout must be "raise" or { default: answer }'],
      [{ onTimeout: { default: null } }, 'onTimeout must be "raise" or { default: answer }'],
      [{ requestedBy: 7 }, "requestedBy must be a string"],
    ];
    for (const [extra, message] of cases) {
      await rejectsWith(client.create({ ...base, ...extra } as never), InvalidArgument, message);
    }
    assert.deepEqual((await client.list()).items, []);
  } finally {
    await client.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
