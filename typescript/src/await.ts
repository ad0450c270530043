/** `awaitHuman`: ask a person, wait durably, get a typed answer. @module */

import { Aborted, Conflict, InvalidArgument, call as callNative, fromNative } from "./errors.js";
import { Client, abortable, defaultClient, toJsonText, type TaskRequest } from "./client.js";
import { native, type NativeEngine } from "./native.js";
import { parseAnswer, parsePayload, type Infer, type Schema } from "./schema.js";
import { policyToJson, taskFromJson, type Task, type Vote } from "./types.js";
import { inconclusive, type Verdict, type Verifier } from "./verifiers.js";

/** Options of {@link awaitHuman}. */
export interface AwaitHumanOptions<S extends Schema> extends TaskRequest<S> {
  /** The client (default: the process-wide one for the configured database and namespace). */
  client?: Client;
  /**
   * Stops waiting: the promise rejects with `Aborted` and the task stays pending (call again
   * with the same `key` to resume). Already aborted: nothing is created.
   */
  signal?: AbortSignal;
  /**
   * Your own check of each answer, run here when one arrives: `(payload, answer)` (sync or
   * async) returning `verifiers.passed()`, `rejected(reason)` or `inconclusive(reason)`. A
   * rejection sends the task back to the person with the reason and keeps waiting; a throw is
   * inconclusive (the fail policy of `verification` decides; fail-closed by default).
   */
  verifier?: Verifier<never, Infer<S>>;
}

/**
 * Asks a person and waits for the answer, durably.
 *
 * The request is stored before anything else happens. With a `key`, calling again (after a
 * crash, a retry, a redeploy) returns the same task, and its answer if one came: the agent
 * never asks twice and never acts on two answers. `responseSchema` is a Zod 4 or Zod 3 schema
 * (the answer is parsed by it: typed as its output, defaults filled) or a JSON Schema object
 * (the answer is returned as JSON, typed `unknown`).
 *
 * `verification` (see `verifiers`) has the core check every answer with rules and an LLM
 * before it is accepted; `verifier` is your own check, run in this process.
 *
 * An approval policy says who must answer: `approvers` (who may answer, how many distinct
 * approvals complete the task, whether the requester, `requestedBy`, is excluded; see
 * `Approvers`), `reminders` (durations after creation at which the `notify` targets are
 * reminded), `escalate` (see `Escalation`) and `onTimeout`: `"raise"` (the default) or
 * `{ default: answer }`, returned when `timeout` passes unanswered and recorded as a default
 * (`task.defaulted`, `answeredVia === "timeout"`).
 *
 * Rejects with `TimedOut` when `timeout` passes unanswered and `onTimeout` is `"raise"` (never a made-up denial),
 * `Cancelled` when the task is cancelled, `VerificationExhausted` (with `reasons`) when every
 * allowed answer was rejected, `KeyReused` when `key` already names a different
 * request, and `Aborted` when `signal` aborts (the task stays pending).
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { awaitHuman } from "inloop";
 *
 * const Decision = z.object({ approved: z.boolean(), note: z.string().default("") });
 * const decision = await awaitHuman({
 *   title: "Approve this refund?",
 *   payload: { orderId: "A-1", amount: 500 },
 *   responseSchema: Decision,
 *   key: "refund-A-1",
 *   timeout: "4h",
 * });
 * if (decision.approved) await refund("A-1");
 * ```
 *
 * @example Two of three approvers, reminded, escalated, defaulting to a denial:
 * ```ts
 * const Approval = z.object({ approved: z.boolean(), comment: z.string().optional() });
 * const approval = await awaitHuman({
 *   title: "Wire 25,000 EUR to ACME?",
 *   payload: wire,
 *   responseSchema: Approval,
 *   key: `wire-${wire.id}`,
 *   requestedBy: "alice@acme.com", // she asked, so she may not approve it
 *   approvers: { anyOf: ["alice@acme.com", "bob@acme.com", "role:finance"], required: 2, excludeRequester: true },
 *   reminders: ["30m", "2h"],
 *   escalate: [{ after: "4h", notify: ["slack:@cfo"], addApprovers: ["carol@acme.com"] }],
 *   timeout: "8h",
 *   onTimeout: { default: { approved: false } },
 * });
 * ```
 */
export async function awaitHuman<S extends Schema>(options: AwaitHumanOptions<S>): Promise<Infer<S>> {
  return (await run(options)).answer;
}

/**
 * What {@link awaitDecision} resolves to: the typed answer, and what it approved.
 *
 * `answer` is what `awaitHuman` would have returned; `task` the ended task; `digest` the
 * digest of exactly what the person saw and answered (title, payload, schemas); `verify`
 * checks that a payload is that one. `votes` lists the individual votes when the task's
 * approval policy collects several (empty otherwise); `defaulted` is true when the task timed
 * out and the answer is its policy's default, not a person's.
 */
export interface Decision<T> {
  readonly answer: T;
  readonly task: Task;
  /** The approved digest: SHA-256 of the canonical title, payload and schemas. */
  readonly digest: string;
  readonly answeredBy: string | null;
  /** Through which channel (`dashboard`, `slack`, `api` ...). */
  readonly answeredVia: string | null;
  /** The individual votes when an approval policy collects several (empty otherwise). */
  readonly votes: readonly Vote[];
  /** The task timed out and the answer is its policy's default, not a person's. */
  readonly defaulted: boolean;
  /**
   * Throws `DigestMismatch` unless `payload` is exactly what was approved (parsed by the
   * request's `payloadSchema` first, as the request's payload was).
   */
  verify(payload: unknown): void;
}

/**
 * `awaitHuman`, resolving to a {@link Decision}: the typed answer (`answer`) with what it
 * approved (`digest`, `task`), who answered (`answeredBy`, `answeredVia`), and
 * `verify(payload)`, which throws `DigestMismatch` unless the payload is exactly the one
 * approved. Same options, same errors, same durability as `awaitHuman`.
 *
 * @example An approval bound to the action:
 * ```ts
 * const decision = await awaitDecision({
 *   title: "Run this tool?", payload: args, responseSchema: Approval, key: `tool-${callId}`,
 * });
 * if (decision.answer.approved) {
 *   decision.verify(args); // what runs is what was approved
 *   await once(`tool-${callId}`, () => runTool(args));
 * }
 * ```
 */
export async function awaitDecision<S extends Schema>(options: AwaitHumanOptions<S>): Promise<Decision<Infer<S>>> {
  const { raw, answer } = await run(options);
  const task = taskFromJson(raw);
  const payloadSchema = options.payloadSchema;
  return {
    answer,
    task,
    digest: task.digest,
    answeredBy: task.answeredBy,
    answeredVia: task.answeredVia,
    votes: task.votes,
    defaulted: task.defaulted,
    verify(payload: unknown): void {
      verifyDigest(task, parsePayload(payloadSchema, payload));
    },
  };
}

/** The JSON `verifyDigest` and `taskDigest` hand the core. */
function digestParts(task: Task, payload: unknown): [string, string] {
  if (typeof task !== "object" || task === null || typeof task.digest !== "string") {
    throw new InvalidArgument("the first argument must be a Task");
  }
  const parts = toJsonText(
    {
      id: task.id,
      title: task.title,
      payload_schema: task.payloadSchema,
      response_schema: task.responseSchema,
      verification: task.verification,
      policy: policyToJson(task.policy ?? null),
      digest: task.digest,
    },
    "the task",
  );
  return [parts, toJsonText(payload, "the payload")];
}

/**
 * The digest `task` would have with `payload` instead of its own (everything else as it is).
 *
 * @example
 * ```ts
 * assert.equal(taskDigest(task, task.payload), task.digest);
 * ```
 */
export function taskDigest(task: Task, payload: unknown): string {
  const [parts, body] = digestParts(task, payload);
  try {
    return native().taskDigest(parts, body);
  } catch (e) {
    throw fromNative(e);
  }
}

/**
 * Throws `DigestMismatch` (`expected`, `actual`) unless `payload` produces `task`'s digest:
 * what the agent is about to do is what the person approved (for example, the tool arguments
 * were not edited after the approval). Key order never matters (canonical JSON).
 *
 * @example
 * ```ts
 * const task = await client.getByKey(`tool-${callId}`);
 * verifyDigest(task, argsAboutToRun);
 * ```
 */
export function verifyDigest(task: Task, payload: unknown): void {
  const [parts, body] = digestParts(task, payload);
  try {
    native().verifyDigest(parts, body);
  } catch (e) {
    throw fromNative(e);
  }
}

/** What `awaitHuman` and `awaitDecision` share: builds the request, waits, and returns the
 * ended task (as JSON) and the typed answer. */
async function run<S extends Schema>(
  options: AwaitHumanOptions<S>,
): Promise<{ raw: Record<string, unknown>; answer: Infer<S> }> {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgument("awaitHuman takes an options object");
  }
  const { signal } = options;
  if (signal?.aborted) {
    throw new Aborted("the wait was aborted before it started; nothing was created", { cause: signal.reason });
  }
  const client = options.client ?? defaultClient(options.namespace);
  const request = await client._request(options);
  const engine = await client._engine();
  if (signal?.aborted) {
    throw new Aborted("the wait was aborted before it started; nothing was created", { cause: signal.reason });
  }
  if (options.verifier !== undefined) {
    return withVerifier(engine, request, options, options.verifier);
  }
  const text = await abortable(engine, signal, (h) => engine.ask(request, h ?? null));
  const raw = JSON.parse(text) as Record<string, unknown>;
  return { raw, answer: parseAnswer(options.responseSchema, raw["response"] ?? null) };
}

/** Waits for an answer, judges it, reports the verdict to the core, and waits again while
 * the core sends the task back to the person. */
async function withVerifier<S extends Schema>(
  engine: NativeEngine,
  request: string,
  options: AwaitHumanOptions<S>,
  verifier: Verifier<never, Infer<S>>,
): Promise<{ raw: Record<string, unknown>; answer: Infer<S> }> {
  const name = `sdk:${verifier.name || "verifier"}`;
  const created = JSON.parse(await callNative(() => engine.create(request))) as { task: { id: string } };
  const id = created.task.id;
  for (;;) {
    const text = await abortable(engine, options.signal, (h) => engine.awaitResponse(id, h ?? null));
    const done = JSON.parse(text) as { response?: unknown; attempts?: number; status?: string };
    const answer = parseAnswer(options.responseSchema, done.response ?? null);
    // The policy's onTimeout default: the agent's own answer, not a person's to judge.
    if (done.status === "timed_out") return { raw: done as Record<string, unknown>, answer };
    const started = performance.now();
    const verdict = await judge(verifier, options.payload, answer);
    const body = JSON.stringify({
      attempts: done.attempts ?? 0,
      verdict: verdict.kind,
      reason: verdict.reason ?? null,
      verifier: name,
      latency_ms: Math.round(performance.now() - started),
    });
    let after: Record<string, unknown>;
    try {
      after = JSON.parse(await callNative(() => engine.submitVerdict(id, body))) as Record<string, unknown>;
    } catch (e) {
      if (e instanceof Conflict) continue; // judged meanwhile (a retried agent): look again
      throw e;
    }
    if (after["status"] === "completed") return { raw: after, answer };
  }
}

/** Runs the verifier; a throw or a result that is not a verdict is inconclusive. */
async function judge<A>(verifier: Verifier<never, A>, payload: unknown, answer: A): Promise<Verdict> {
  let result: unknown;
  try {
    // The payload is the caller's own value, typed by the caller's verifier (hence `never`).
    result = await (verifier as Verifier<unknown, A>)(payload, answer);
  } catch (e) {
    const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return inconclusive(`the verifier threw ${what}`.slice(0, 2000));
  }
  const v = result as Partial<Verdict> | null;
  const ok =
    typeof v === "object" &&
    v !== null &&
    (v.kind === "pass" || ((v.kind === "reject" || v.kind === "inconclusive") && typeof v.reason === "string" && v.reason.trim() !== ""));
  return ok ? (v as Verdict) : inconclusive(`the verifier returned ${JSON.stringify(result) ?? String(result)}, not a verdict`);
}
