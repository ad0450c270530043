/** The {@link Client}: both sides of inloop on one database. @module */

import { createRequire } from "node:module";
import { Aborted, InvalidArgument, call, fromNative } from "./errors.js";
import { native, type NativeEngine } from "./native.js";
import { parsePayload, toJsonSchema, type InferInput, type Schema } from "./schema.js";
import type { Verdict, Verification } from "./verifiers.js";
import {
  STATUSES,
  auditCheckFromJson,
  auditEventFromJson,
  effectFromJson,
  taskFromJson,
  type AuditCheck,
  type AuditEvent,
  type Effect,
  type EffectState,
  type Status,
  type Task,
  type TaskPage,
} from "./types.js";

/**
 * A duration: milliseconds (a number), or a string such as `"500ms"`, `"30s"`, `"15m"`,
 * `"4h"`, `"2d"` (units may be combined: `"1h30m"`).
 */
export type Timeout = number | string;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds for a {@link Timeout}; `InvalidArgument` when malformed. @internal */
export function timeoutMs(timeout: Timeout | undefined | null, what = "timeout"): number | undefined {
  if (timeout === undefined || timeout === null) return undefined;
  let ms: number;
  if (typeof timeout === "number") {
    ms = timeout;
  } else if (typeof timeout === "string") {
    const text = timeout.trim();
    const re = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/gy;
    let total = 0;
    let end = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
      end = re.lastIndex;
      while (text[end] === " ") end++;
      re.lastIndex = end;
    }
    if (text === "" || end !== text.length) {
      throw new InvalidArgument(
        `${what} must be milliseconds or a duration like "500ms", "30s", "15m", "4h", "2d", not ${JSON.stringify(timeout)}`,
      );
    }
    ms = total;
  } else {
    throw new InvalidArgument(`${what} must be milliseconds or a duration string, not ${typeof timeout}`);
  }
  if (!Number.isFinite(ms) || !(ms > 0)) {
    throw new InvalidArgument(`${what} must be a positive duration, not ${String(timeout)}`);
  }
  return Math.max(1, Math.round(ms));
}

/** JSON text for a value, refusing what JSON cannot carry. @internal */
export function toJsonText(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, (_key, v: unknown) => {
      if (typeof v === "number" && !Number.isFinite(v)) throw new TypeError(`${v} is not a JSON number`);
      if (typeof v === "function" || typeof v === "symbol") throw new TypeError(`a ${typeof v} is not JSON`);
      return v;
    });
  } catch (e) {
    throw new InvalidArgument(`${what} is not JSON-serializable: ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
    });
  }
  if (text === undefined) throw new InvalidArgument(`${what} is not JSON-serializable (undefined)`);
  return text;
}

function epochMs(d: Date | undefined, what: string): number | undefined {
  if (d === undefined) return undefined;
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new InvalidArgument(`${what} must be a valid Date`);
  return d.getTime();
}

function stringList(v: readonly string[] | undefined, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) {
    throw new InvalidArgument(`${what} must be an array of strings`);
  }
  return [...v];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The policy's wire JSON (`core/src/policy.rs`), or `null` when nothing is asked. Checks
 * shapes and durations here; the rest (a quorum's schema, a reminder after the timeout, a
 * default that does not fit the schema) is the core's to refuse.
 */
function policyJson(req: TaskRequest): Record<string, unknown> | null {
  const policy: Record<string, unknown> = {};
  const { approvers, reminders, escalate, onTimeout } = req;
  if (approvers !== undefined) {
    if (!isObject(approvers)) throw new InvalidArgument("approvers must be an object { anyOf, required?, ... }");
    const anyOf = stringList(approvers.anyOf, "approvers.anyOf");
    if (anyOf.length === 0) throw new InvalidArgument("approvers.anyOf must name at least one approver");
    const required = approvers.required ?? 1;
    if (typeof required !== "number" || !Number.isInteger(required) || required < 1) {
      throw new InvalidArgument(`approvers.required must be an integer of at least 1, not ${String(required)}`);
    }
    const excludeRequester = approvers.excludeRequester ?? false;
    if (typeof excludeRequester !== "boolean") throw new InvalidArgument("approvers.excludeRequester must be a boolean");
    const rejectOn = approvers.rejectOn ?? "any";
    if (rejectOn !== "any" && rejectOn !== "majority") {
      throw new InvalidArgument(`approvers.rejectOn must be "any" or "majority", not ${JSON.stringify(rejectOn)}`);
    }
    policy["approvers"] = { any_of: anyOf, required, exclude_requester: excludeRequester, reject_on: rejectOn };
  }
  if (reminders !== undefined) {
    if (!Array.isArray(reminders)) {
      throw new InvalidArgument("reminders must be an array of durations (ms or strings such as \"30m\")");
    }
    policy["reminders_ms"] = reminders.map((r: Timeout, i) => timeoutMs(r, `reminders[${i}]`));
  }
  if (escalate !== undefined) {
    if (!Array.isArray(escalate)) throw new InvalidArgument("escalate must be an array of { after, notify?, addApprovers? }");
    policy["escalate"] = escalate.map((step: Escalation, i) => {
      if (!isObject(step)) throw new InvalidArgument(`escalate[${i}] must be an object { after, notify?, addApprovers? }`);
      if (step.after === undefined) throw new InvalidArgument(`escalate[${i}].after is required`);
      return {
        after_ms: timeoutMs(step.after, `escalate[${i}].after`),
        notify: stringList(step.notify, `escalate[${i}].notify`),
        add_approvers: stringList(step.addApprovers, `escalate[${i}].addApprovers`),
      };
    });
  }
  if (onTimeout !== undefined && onTimeout !== "raise") {
    if (!isObject(onTimeout) || !("default" in onTimeout) || onTimeout.default == null) {
      throw new InvalidArgument(
        `onTimeout must be "raise" or { default: answer } (an answer, not null), not ${JSON.stringify(onTimeout) ?? String(onTimeout)}`,
      );
    }
    policy["on_timeout"] = { default: onTimeout.default };
  }
  return Object.keys(policy).length === 0 ? null : policy;
}

/** Options of `new Client(...)`. */
export interface ClientOptions {
  /**
   * The database: `sqlite:///path/to.db` or `postgres://...`. Default: `INLOOP_URL` (a
   * server) when set, else `INLOOP_DATABASE_URL`, else the SQLite file `.inloop/inloop.db`
   * under the current directory. Ignored when `url` is given.
   */
  databaseUrl?: string;
  /**
   * An inloop server (`inloop serve`), for example `"http://inloop.internal:7070"`: remote
   * mode, over HTTP, with an API key. Takes precedence over `databaseUrl`.
   */
  url?: string;
  /** The API key for the server (`ilk_...`). Default: `INLOOP_API_KEY`. */
  apiKey?: string;
  /** The namespace tasks are created in and listed from. Default `"default"`. */
  namespace?: string;
}

/**
 * Who may answer a task, and how many distinct approvals complete it (a task's approval
 * policy; the core enforces it on every channel).
 *
 * `anyOf` names user names, e-mail addresses, `role:NAME` or `group:NAME`: only these people
 * may answer (anyone else gets `Forbidden`, or `NotFound` for a reviewer who cannot see the
 * task). `required` distinct approvals (default 1) complete the task; above 1 the response
 * must be an approval (one required boolean, optional text fields). Each person votes once;
 * a vote cannot be changed. `excludeRequester` keeps the requester (`requestedBy`) from
 * answering even when `anyOf` names them. `rejectOn`: `"any"` (the first rejection ends the
 * task as rejected, the default) or `"majority"` (more than half of `required`).
 *
 * @example
 * ```ts
 * const approvers: Approvers = {
 *   anyOf: ["alice@acme.com", "bob@acme.com", "role:finance"],
 *   required: 2,
 *   excludeRequester: true,
 * };
 * ```
 */
export interface Approvers {
  anyOf: readonly string[];
  /** Distinct approvals that complete the task (default 1). */
  required?: number;
  /** The requester may not answer, even when `anyOf` names them (needs `requestedBy`). */
  excludeRequester?: boolean;
  /** When rejections end the task as rejected (default `"any"`). */
  rejectOn?: "any" | "majority";
}

/**
 * A later step of a task's policy: `after` this long from creation with no outcome, notify
 * `notify` (`CHANNEL:TARGET`) and add `addApprovers` to the approvers. Fired once, durably.
 *
 * @example
 * ```ts
 * const step: Escalation = { after: "4h", notify: ["slack:@cfo"], addApprovers: ["carol@acme.com"] };
 * ```
 */
export interface Escalation {
  /** ms, or `"30s"`, `"15m"`, `"4h"`, `"2d"`. */
  after: Timeout;
  notify?: readonly string[];
  addApprovers?: readonly string[];
}

/**
 * What the deadline means: `"raise"` (the waiter rejects with `TimedOut`, the default) or
 * `{ default: answer }` (the waiter gets `answer`, recorded as a default: `task.defaulted`,
 * `answeredVia === "timeout"`). The default must be a valid answer for the response schema.
 */
export type OnTimeout<A = unknown> = "raise" | { default: A };

/** What a task asks: shared by `Client.create` and `awaitHuman`. */
export interface TaskRequest<S extends Schema = Schema> {
  /** What the person is asked. */
  title: string;
  /** What they look at (any JSON value). */
  payload: unknown;
  /** The payload's schema (Zod or JSON Schema); a Zod schema parses the payload first. */
  payloadSchema?: Schema;
  /** The schema of the answer: Zod 4, Zod 3, or a JSON Schema object. */
  responseSchema: S;
  /** Idempotency key: the same key returns the same task (and its answer), in any state. */
  key?: string;
  /** After this long unanswered the task times out: ms, or `"30s"`, `"15m"`, `"4h"`, `"2d"`. */
  timeout?: Timeout;
  /** Delivery targets, for example `["slack:#ops", "email:a@example.com"]`. */
  notify?: readonly string[];
  /** Who may answer. */
  assignTo?: readonly string[];
  /** The namespace (default: the client's). */
  namespace?: string;
  /** How the core verifies answers: rules and an LLM (see `verifiers`). */
  verification?: Verification;
  /**
   * An http(s) URL that receives the task's end (answered, timed out, cancelled, verification
   * exhausted) as the signed `task.ended` event webhooks get; check it with `verifyWebhook`
   * and the server's callback secret. `inloop serve` delivers only URLs its `[callbacks] allow`
   * list permits (through a server, others reject with `InvalidArgument` at creation). Not part
   * of the digest: a replayed key keeps the task's first callback.
   */
  callbackUrl?: string;
  /**
   * The W3C trace context the task's life is traced under (`00-<trace id>-<span id>-<flags>`):
   * its spans (`inloop.create`, `inloop.deliver`, `inloop.answer`, `inloop.resume` ...) become
   * children of that span, so the agent's trace shows the wait. Default: the active
   * OpenTelemetry span's, when `@opentelemetry/api` is installed (docs/deployment.md, "Tracing").
   */
  traceparent?: string;
  /** Who asks (an agent, or the person it acts for); recorded, and excluded by `excludeRequester`. */
  requestedBy?: string;
  /** Who may answer and how many approvals complete the task (see {@link Approvers}). */
  approvers?: Approvers;
  /** Remind the `notify` targets this long after creation, once each: ms or `"30m"`, `"2h"` ... */
  reminders?: readonly Timeout[];
  /** Escalation steps (see {@link Escalation}). */
  escalate?: readonly Escalation[];
  /** `"raise"` (default) or `{ default: answer }` when `timeout` passes unanswered (see {@link OnTimeout}). */
  onTimeout?: OnTimeout<InferInput<S>>;
}

/** Options of `Client.create`. */
export interface CreateOptions<S extends Schema = Schema> extends TaskRequest<S> {}

/** Options of `Client.list`. */
export interface ListOptions {
  status?: Status;
  keyPrefix?: string;
  createdAfter?: Date;
  createdBefore?: Date;
  /** Page size (default 50). */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
  /** List every namespace rather than the client's. */
  allNamespaces?: boolean;
}

/** Options of `Client.answer`. */
export interface AnswerOptions {
  /** Who answers (recorded, and checked against `assignTo`). */
  by: string;
  /** Through which channel (default `"typescript"`). */
  channel?: string;
}

/** Options of `Client.cancel`. */
export interface CancelOptions {
  by: string;
  reason?: string;
  channel?: string;
}

/** Options of `Client.effects`. */
export interface EffectsOptions {
  /** `"in_doubt"` (the same as `"running"`): the ones waiting for a person. Every state when absent. */
  state?: EffectState | "in_doubt";
  /** At most this many, oldest first (default 100). */
  limit?: number;
  /** Every namespace rather than the client's (with a database; a server key sees its own). */
  allNamespaces?: boolean;
}

/** Options of `Client.resolveEffect`. */
export interface ResolveEffectOptions {
  /** The person who resolves (recorded in the effect's audit trail). */
  by: string;
  /** For `"mark_done"`: what every later `once` call returns (default `null`). */
  result?: unknown;
  /** Only this attempt (rejects with `Conflict` when another one is in doubt by now). */
  attempt?: number;
  /** Why (recorded). */
  note?: string;
  /** The effect's namespace (default: the client's). */
  namespace?: string;
}

/** Options of `Client.wait`. */
export interface WaitOptions {
  /** Stop waiting after this long (the task is returned as it is then). */
  timeout?: Timeout;
  /** Stops the wait (rejects with `Aborted`); the task is unchanged. */
  signal?: AbortSignal;
}

function abortedError(signal: AbortSignal): Aborted {
  return new Aborted("the wait was aborted; the task is unchanged", { cause: signal.reason });
}

/**
 * Runs an abortable native wait. On abort the native wait is stopped (the addon remembers an
 * abort that arrives before the wait registers) and the promise rejects with `Aborted`.
 * @internal
 */
export async function abortable(
  engine: NativeEngine,
  signal: AbortSignal | undefined,
  run: (handle: number | undefined) => Promise<string>,
): Promise<string> {
  if (signal === undefined) return call(() => run(undefined));
  if (signal.aborted) throw abortedError(signal);
  const handle = engine.abortHandle();
  const onAbort = (): void => engine.abort(handle);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await run(handle);
  } catch (e) {
    const err = fromNative(e);
    throw err instanceof Aborted ? abortedError(signal) : err;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * A connection to inloop (its database, or an inloop server), for agents and for the people
 * who answer them.
 *
 * Configuration (the core's one rule): `url` (an inloop server) if given, else `databaseUrl`
 * if given, else `INLOOP_URL` (a server; `INLOOP_API_KEY` is then required), else
 * `INLOOP_DATABASE_URL`, else the SQLite file `.inloop/inloop.db` under the current
 * directory. A server needs an API key (`apiKey` or `INLOOP_API_KEY`; `ConfigError`
 * otherwise). A database is opened (and migrated) on first use, a server contacted on first
 * use; a `Client` may be shared freely.
 *
 * @example The human side, from any process on the same database:
 * ```ts
 * import { Client } from "inloop";
 * const client = new Client({ databaseUrl: "postgres://localhost/app" });
 * const { items } = await client.list({ status: "pending" });
 * await client.answer(items[0]!.id, { approved: true }, { by: "alice@example.com" });
 * ```
 *
 * @example Remote mode, through `inloop serve`:
 * ```ts
 * const client = new Client({ url: "http://inloop.internal:7070", apiKey: "ilk_..." });
 * ```
 */
export class Client {
  /** The namespace this client creates and lists tasks in. */
  readonly namespace: string;
  readonly #url: string | undefined;
  readonly #remoteUrl: string | undefined;
  readonly #apiKey: string | undefined;
  #opening: Promise<NativeEngine> | undefined;

  constructor(options: ClientOptions = {}) {
    const { databaseUrl, url, apiKey, namespace = "default" } = options;
    for (const [name, v] of [
      ["databaseUrl", databaseUrl],
      ["url", url],
      ["apiKey", apiKey],
    ] as const) {
      if (v !== undefined && typeof v !== "string") throw new InvalidArgument(`${name} must be a string`);
    }
    if (typeof namespace !== "string" || namespace === "") {
      throw new InvalidArgument("namespace must be a non-empty string");
    }
    this.#url = databaseUrl;
    this.#remoteUrl = url;
    this.#apiKey = apiKey;
    this.namespace = namespace;
  }

  /**
   * The database URL this client uses (password redacted once opened), or the server URL
   * in remote mode.
   */
  get databaseUrl(): string {
    try {
      const target = native().resolveTarget(this.#url, this.#remoteUrl, this.#apiKey);
      return target.kind === "remote" ? target.url : native().resolveDatabaseUrl(this.#url);
    } catch (e) {
      throw fromNative(e);
    }
  }

  /** Whether this client talks to an inloop server (remote mode) rather than a database. */
  get remote(): boolean {
    try {
      return native().resolveTarget(this.#url, this.#remoteUrl, this.#apiKey).kind === "remote";
    } catch (e) {
      throw fromNative(e);
    }
  }

  /** The native engine, opened once (concurrent first calls share one opening). @internal */
  _engine(): Promise<NativeEngine> {
    if (this.#opening === undefined) {
      const opening = call(() => native().Engine.open(this.#url, this.#remoteUrl, this.#apiKey));
      this.#opening = opening;
      // A failed open is not cached: the next call tries again.
      opening.catch(() => {
        if (this.#opening === opening) this.#opening = undefined;
      });
    }
    return this.#opening;
  }

  /** The NewTask JSON for a request. @internal */
  async _request(req: CreateOptions): Promise<string> {
    if (typeof req !== "object" || req === null) throw new InvalidArgument("the request must be an object");
    if (typeof req.title !== "string") throw new InvalidArgument("title must be a string");
    if (!("payload" in req) || req.payload === undefined) {
      throw new InvalidArgument("payload is required (use null for none)");
    }
    if (req.key !== undefined && typeof req.key !== "string") throw new InvalidArgument("key must be a string");
    if (req.callbackUrl !== undefined && typeof req.callbackUrl !== "string") {
      throw new InvalidArgument("callbackUrl must be a string");
    }
    if (req.requestedBy !== undefined && typeof req.requestedBy !== "string") {
      throw new InvalidArgument("requestedBy must be a string");
    }
    if (req.traceparent !== undefined && typeof req.traceparent !== "string") {
      throw new InvalidArgument("traceparent must be a string");
    }
    const traceparent = req.traceparent ?? currentTraceparent();
    const timeout = timeoutMs(req.timeout);
    const payload = parsePayload(req.payloadSchema, req.payload);
    const body = {
      namespace: req.namespace ?? this.namespace,
      key: req.key ?? null,
      title: req.title,
      payload,
      payload_schema:
        req.payloadSchema === undefined ? null : await toJsonSchema(req.payloadSchema, "output", "payloadSchema"),
      response_schema: await toJsonSchema(req.responseSchema, "input", "responseSchema"),
      notify: stringList(req.notify, "notify"),
      assign_to: stringList(req.assignTo, "assignTo"),
      timeout_ms: timeout ?? null,
      requested_by: req.requestedBy ?? null,
      verification: req.verification ?? null,
      callback_url: req.callbackUrl ?? null,
      policy: policyJson(req),
      // Left out when absent: a server that predates the field still takes the rest.
      ...(traceparent === undefined ? {} : { traceparent }),
    };
    return toJsonText(body, "payload");
  }

  /**
   * Creates the task, or returns the one `key` already names (`task.created` tells which).
   * The same key with a different title, payload or schema rejects with `KeyReused`.
   *
   * @example
   * ```ts
   * const task = await client.create({
   *   title: "Approve?", payload: { amount: 5 }, responseSchema: { type: "boolean" }, key: "order-7",
   * });
   * ```
   */
  async create(options: CreateOptions): Promise<Task> {
    const request = await this._request(options);
    const engine = await this._engine();
    const out = JSON.parse(await call(() => engine.create(request))) as { task: unknown; created: boolean };
    return taskFromJson(out.task, out.created);
  }

  /**
   * The task with this id (`NotFound` if there is none, `InvalidArgument` for a malformed id).
   *
   * @example
   * ```ts
   * const task = await client.get(id);
   * if (task.status === "completed") console.log(task.response);
   * ```
   */
  async get(id: string): Promise<Task> {
    const engine = await this._engine();
    return taskFromJson(JSON.parse(await call(() => engine.get(id))));
  }

  /**
   * The task `key` names in this client's namespace (`NotFound` if none).
   *
   * @example
   * ```ts
   * const task = await client.getByKey("refund-A-1");
   * ```
   */
  async getByKey(key: string, namespace?: string): Promise<Task> {
    const engine = await this._engine();
    return taskFromJson(JSON.parse(await call(() => engine.getByKey(namespace ?? this.namespace, key))));
  }

  /**
   * Tasks in this client's namespace, newest first; `page.nextCursor` continues.
   *
   * @example
   * ```ts
   * let page = await client.list({ status: "pending", limit: 20 });
   * while (page.nextCursor) page = await client.list({ status: "pending", limit: 20, cursor: page.nextCursor });
   * ```
   */
  async list(options: ListOptions = {}): Promise<TaskPage> {
    if (options.status !== undefined && !STATUSES.includes(options.status)) {
      throw new InvalidArgument(`status must be one of ${STATUSES.join(", ")}, not ${String(options.status)}`);
    }
    const filter = {
      namespace: options.allNamespaces ? null : this.namespace,
      status: options.status ?? null,
      key_prefix: options.keyPrefix ?? null,
      created_after: epochMs(options.createdAfter, "createdAfter") ?? null,
      created_before: epochMs(options.createdBefore, "createdBefore") ?? null,
      limit: options.limit ?? 50,
      cursor: options.cursor ?? null,
    };
    const text = toJsonText(filter, "the filter");
    const engine = await this._engine();
    const out = JSON.parse(await call(() => engine.list(text))) as { items: unknown[]; next_cursor?: string | null };
    return { items: out.items.map((t) => taskFromJson(t)), nextCursor: out.next_cursor ?? null };
  }

  /**
   * Answers a task as `by`. The core validates the answer against the response schema
   * (`InvalidAnswer` with field errors; the task stays pending) and accepts exactly one
   * answer (`Conflict` names who answered first, and when).
   *
   * @example
   * ```ts
   * await client.answer(task.id, { approved: true }, { by: "alice@example.com" });
   * ```
   */
  async answer(id: string, response: unknown, options: AnswerOptions): Promise<Task> {
    if (typeof options?.by !== "string") throw new InvalidArgument("answer needs { by: string }");
    const body = toJsonText(response, "the answer");
    const engine = await this._engine();
    const channel = options.channel ?? "typescript";
    return taskFromJson(JSON.parse(await call(() => engine.answer(id, body, options.by, channel))));
  }

  /**
   * Records an agent-side verifier's verdict on the completed task's answer. `attempts` is
   * `task.attempts` as read with the answer (compare-and-set: a verdict on an answer already
   * judged rejects with `Conflict`). A rejection sends the task back to pending with the
   * reason for the person (or, on the last attempt, ends it: `VerificationExhausted`); an
   * inconclusive verdict follows the task's fail policy. `awaitHuman({ verifier })` does all of
   * this for you.
   *
   * @example
   * ```ts
   * const task = await client.wait(id);
   * await client.submitVerdict(id, verifiers.rejected("amount too high"), { attempts: task.attempts });
   * ```
   */
  async submitVerdict(
    id: string,
    verdict: Verdict,
    options: { attempts: number; verifier?: string; latencyMs?: number; by?: string },
  ): Promise<Task> {
    if (typeof options?.attempts !== "number") throw new InvalidArgument("submitVerdict needs { attempts: number }");
    const body = JSON.stringify({
      attempts: options.attempts,
      verdict: verdict.kind,
      reason: verdict.reason ?? null,
      verifier: options.verifier ?? "sdk:verifier",
      latency_ms: Math.max(0, Math.round(options.latencyMs ?? 0)),
      by: options.by ?? null,
    });
    const engine = await this._engine();
    return taskFromJson(JSON.parse(await call(() => engine.submitVerdict(id, body))));
  }

  /**
   * Cancels a pending task; its waiter rejects with `Cancelled`.
   *
   * @example
   * ```ts
   * await client.cancel(task.id, { by: "ops", reason: "order was refunded by hand" });
   * ```
   */
  async cancel(id: string, options: CancelOptions): Promise<Task> {
    if (typeof options?.by !== "string") throw new InvalidArgument("cancel needs { by: string }");
    const engine = await this._engine();
    const channel = options.channel ?? "typescript";
    return taskFromJson(JSON.parse(await call(() => engine.cancel(id, options.by, channel, options.reason ?? null))));
  }

  /**
   * Waits until the task ends (or `timeout` passes) and returns it, ended or not. Unlike
   * `awaitHuman` this never rejects for a timed-out or cancelled task: check `task.status`.
   *
   * @example
   * ```ts
   * const task = await client.wait(id, { timeout: "10s", signal: AbortSignal.timeout(60_000) });
   * ```
   */
  async wait(id: string, options: WaitOptions = {}): Promise<Task> {
    const ms = timeoutMs(options.timeout);
    if (options.signal?.aborted) throw abortedError(options.signal);
    const engine = await this._engine();
    const text = await abortable(engine, options.signal, (h) => engine.wait(id, ms ?? null, h ?? null));
    return taskFromJson(JSON.parse(text));
  }

  /**
   * The task's audit trail, oldest first.
   *
   * @example
   * ```ts
   * for (const e of await client.audit(id)) console.log(e.seq, e.kind, e.actor);
   * ```
   */
  async audit(id: string): Promise<AuditEvent[]> {
    const engine = await this._engine();
    const rows = JSON.parse(await call(() => engine.audit(id))) as unknown[];
    return rows.map(auditEventFromJson);
  }

  /**
   * Verifies the task's audit hash chain (an edited or removed row shows).
   *
   * @example
   * ```ts
   * const check = await client.verifyAudit(id);
   * if (!check.ok) console.error("audit broken at", check.brokenAtSeq, check.problem);
   * ```
   */
  async verifyAudit(id: string): Promise<AuditCheck> {
    const engine = await this._engine();
    return auditCheckFromJson(JSON.parse(await call(() => engine.verifyAudit(id))));
  }

  /**
   * The exactly-once effect `key` names (see `once`) in this client's namespace (`NotFound`
   * if none).
   *
   * @example
   * ```ts
   * const effect = await client.effect("charge-A-1");
   * console.log(effect.state, effect.attempt, effect.startedBy);
   * ```
   */
  async effect(key: string, namespace?: string): Promise<Effect> {
    const engine = await this._engine();
    return effectFromJson(JSON.parse(await call(() => engine.effect(namespace ?? this.namespace, key))));
  }

  /**
   * Effects of this client's namespace, oldest first; `{ state: "in_doubt" }` lists the ones
   * waiting for a person.
   *
   * @example
   * ```ts
   * for (const e of await client.effects({ state: "in_doubt" })) console.log(e.key, e.startedBy);
   * ```
   */
  async effects(options: EffectsOptions = {}): Promise<Effect[]> {
    const filter = toJsonText(
      {
        namespace: options.allNamespaces ? null : this.namespace,
        state: options.state ?? null,
        limit: options.limit ?? 100,
      },
      "the filter",
    );
    const engine = await this._engine();
    const rows = JSON.parse(await call(() => engine.effects(filter))) as unknown[];
    return rows.map(effectFromJson);
  }

  /**
   * Resolves an effect in doubt, as the person `by` (audited): `"mark_done"` records it done
   * with `result` (every later `once` call returns it); `"allow_retry"` lets the next call run
   * the function again. Check first that the process is gone and whether the effect
   * happened. In remote mode the API key needs `--allow-answer`.
   *
   * @example
   * ```ts
   * await client.resolveEffect("charge-A-1", "mark_done", { by: "alice", result: { charge: "ch_1" } });
   * ```
   */
  async resolveEffect(key: string, action: "mark_done" | "allow_retry", options: ResolveEffectOptions): Promise<Effect> {
    if (action !== "mark_done" && action !== "allow_retry") {
      throw new InvalidArgument(`action must be "mark_done" or "allow_retry", not ${JSON.stringify(action)}`);
    }
    if (typeof options?.by !== "string") throw new InvalidArgument("resolveEffect needs { by: string }");
    const body: Record<string, unknown> = {
      action,
      attempt: options.attempt ?? null,
      note: options.note ?? null,
      by: options.by,
    };
    if (action === "mark_done") body["result"] = options.result ?? null;
    const text = toJsonText(body, "the resolution");
    const engine = await this._engine();
    const ns = options.namespace ?? this.namespace;
    return effectFromJson(JSON.parse(await call(() => engine.effectResolve(ns, key, text))));
  }

  /** Closes the database connections (nothing to close for a server). The client reopens them if used again. */
  async close(): Promise<void> {
    const opening = this.#opening;
    this.#opening = undefined;
    if (opening === undefined) return;
    let engine: NativeEngine;
    try {
      engine = await opening;
    } catch {
      return;
    }
    await call(() => engine.close());
  }
}

const defaults = new Map<string, Client>();

/**
 * The process-wide client for the configured database or server (`INLOOP_URL` with
 * `INLOOP_API_KEY`), one per namespace, used by `awaitHuman` when no `client` is given.
 * Throws `ConfigError` for `INLOOP_URL` without `INLOOP_API_KEY`.
 *
 * @example
 * ```ts
 * const client = defaultClient("billing");
 * ```
 */
export function defaultClient(namespace = "default"): Client {
  let remote: boolean;
  let url: string;
  try {
    const target = native().resolveTarget(undefined, undefined, undefined);
    remote = target.kind === "remote";
    url = remote ? target.url : native().resolveDatabaseUrl(undefined);
  } catch (e) {
    throw fromNative(e);
  }
  const apiKey = remote ? (process.env["INLOOP_API_KEY"] ?? "").trim() : "";
  const id = [remote ? "remote" : "database", url, apiKey, namespace].join("\u0000");
  let client = defaults.get(id);
  if (client === undefined) {
    // Remote: the core reads INLOOP_URL and INLOOP_API_KEY itself.
    client = remote ? new Client({ namespace }) : new Client({ databaseUrl: url, namespace });
    defaults.set(id, client);
  }
  return client;
}

/** The shape of `@opentelemetry/api` this module reads (it is an optional dependency). */
interface OtelApi {
  trace: {
    getActiveSpan(): { spanContext(): { traceId: string; spanId: string; traceFlags: number } } | undefined;
    isSpanContextValid(sc: { traceId: string; spanId: string; traceFlags: number }): boolean;
  };
}

let otelApi: OtelApi | null | undefined;

/**
 * The W3C `traceparent` of the active OpenTelemetry span, or `undefined` when
 * `@opentelemetry/api` is not installed or no span is active. Read from the span itself, so it
 * does not depend on a registered propagator.
 * @internal
 */
export function currentTraceparent(): string | undefined {
  if (otelApi === undefined) {
    try {
      otelApi = createRequire(import.meta.url)("@opentelemetry/api") as OtelApi;
    } catch {
      otelApi = null;
    }
  }
  const sc = otelApi?.trace.getActiveSpan()?.spanContext();
  if (otelApi == null || sc === undefined || !otelApi.trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}
