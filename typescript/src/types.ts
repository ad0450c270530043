/** The values inloop hands back: tasks (with their policy, votes and timers), pages of tasks, audit rows. @module */

import { InternalError } from "./errors.js";

/** Where a task is in its life. Only `"pending"` can still be answered. */
export type Status = "pending" | "completed" | "timed_out" | "cancelled" | "verification_exhausted";

/** Every {@link Status}, in order. */
export const STATUSES: readonly Status[] = [
  "pending",
  "completed",
  "timed_out",
  "cancelled",
  "verification_exhausted",
];

/** A JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON Schema document (an object). */
export type JsonSchema = { [key: string]: unknown };

/** A request for a human, as stored. */
export interface Task {
  readonly id: string;
  readonly namespace: string;
  readonly key: string;
  readonly title: string;
  readonly payload: unknown;
  readonly payloadSchema: JsonSchema | null;
  readonly responseSchema: JsonSchema;
  /** SHA-256 of the canonical JSON of title, payload and schemas. */
  readonly digest: string;
  readonly notify: string[];
  readonly assignTo: string[];
  readonly status: Status;
  /** The accepted answer (JSON), or `null` while none was accepted. */
  readonly response: unknown;
  readonly answeredBy: string | null;
  readonly answeredVia: string | null;
  readonly cancelledBy: string | null;
  readonly cancelReason: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly deadline: Date | null;
  readonly endedAt: Date | null;
  /** The reviewer working on the task (claimed in the dashboard or through the API). */
  readonly claimedBy: string | null;
  readonly claimedAt: Date | null;
  /** The verification spec (rules, LLM verifier, attempts, fail policy) as JSON, or `null`. */
  readonly verification: Record<string, unknown> | null;
  /** How many answers verification rejected so far. */
  readonly attempts: number;
  /** Why each rejected answer was rejected, oldest first. */
  readonly rejections: Rejection[];
  /** Where the task's end is POSTed (a signed `task.ended` event), as stored (normalized). */
  readonly callbackUrl: string | null;
  /** Who asked (`requestedBy` at creation); `excludeRequester` keeps them from voting. */
  readonly requestedBy: string | null;
  /** The approval policy as stored, or `null` when the task has none. */
  readonly policy: TaskPolicy | null;
  /** The votes so far on a task with approvers, oldest first (one per person). */
  readonly votes: Vote[];
  /** Reminders and escalation steps, in the order they are due. */
  readonly timers: Timer[];
  /**
   * Whether the task ended with its policy's `onTimeout` default: nobody answered, `status`
   * is `"timed_out"`, `response` is the default and `answeredVia` is `"timeout"`. A
   * defaulted answer is not a person's decision.
   */
  readonly defaulted: boolean;
  /**
   * On the result of `Client.create`: `true` when that call created the task, `false` when
   * its key already named it (a replay). `undefined` elsewhere.
   */
  readonly created?: boolean;
}

/** A task's approval policy as stored (durations in milliseconds). */
export interface TaskPolicy {
  /** Who may answer and how many distinct approvals complete the task, or `null`. */
  readonly approvers: {
    readonly anyOf: string[];
    readonly required: number;
    readonly excludeRequester: boolean;
    readonly rejectOn: "any" | "majority";
  } | null;
  /** When the `notify` targets are reminded, in ms after creation, as listed. */
  readonly remindersMs: number[];
  /** Escalation steps, as listed. */
  readonly escalate: { readonly afterMs: number; readonly notify: string[]; readonly addApprovers: string[] }[];
  /** `"raise"`, or the default answer given when the deadline passes unanswered. */
  readonly onTimeout: "raise" | { readonly default: unknown };
}

/**
 * One person's vote on a task with approvers (`task.votes`). The same vote again is not
 * counted twice; a changed vote is refused.
 */
export interface Vote {
  /** Who voted, as the core resolved them (a user name, or the `by` given). */
  readonly by: string;
  /** Through which channel (`"dashboard"`, `"slack"`, `"typescript"` ...). */
  readonly channel: string;
  readonly at: Date;
  /** Whether the vote approves (the approval's boolean; `true` for other answers). */
  readonly approve: boolean;
  /** The answer as given (JSON). */
  readonly response: unknown;
  /** The voter's e-mail address, when the core knows it (a user's, or a `by` that is one). */
  readonly email: string | null;
}

/** A durable reminder or escalation step (`task.timers`, in the order due); each fires once. */
export interface Timer {
  /** `"reminder"` or `"escalation"`. */
  readonly kind: string;
  /** 1, 2 ... within its kind, in the order the policy lists them. */
  readonly index: number;
  readonly dueAt: Date;
  /** When it fired, or `null` while it has not. */
  readonly firedAt: Date | null;
}

/** One rejected answer: which attempt, which verifier, why, who answered, when. */
export interface Rejection {
  readonly attempt: number;
  readonly verifier: string;
  readonly reason: string;
  readonly by: string | null;
  readonly at: string;
}

/** A page of tasks, newest first, with the cursor of the next page (`null` on the last). */
export interface TaskPage {
  readonly items: Task[];
  readonly nextCursor: string | null;
}

/** One row of a task's append-only, hash-chained audit trail. */
export interface AuditEvent {
  readonly taskId: string;
  readonly seq: number;
  readonly at: Date;
  readonly actor: string | null;
  readonly channel: string | null;
  readonly kind: string;
  readonly data: Record<string, unknown>;
  readonly prevHash: string;
  readonly hash: string;
}

/** The result of verifying a task's audit hash chain. */
export interface AuditCheck {
  readonly ok: boolean;
  readonly rows: number;
  readonly brokenAtSeq: number | null;
  readonly problem: string | null;
}

/** Where an effect of `once` is. */
export type EffectState = "running" | "done" | "failed" | "retry_allowed";

/** An exactly-once effect (`once`), as stored. */
export interface Effect {
  readonly id: string;
  readonly namespace: string;
  readonly key: string;
  /**
   * `running`: an attempt began and has not recorded an outcome (in doubt to every other
   * caller); `done`: the result is recorded; `failed` (the function threw) and `retry_allowed`
   * (a person allowed it): the next call runs the function again.
   */
  readonly state: EffectState;
  /** How many attempts began (1 for the first). */
  readonly attempt: number;
  readonly startedAt: Date;
  /** Who or which process began the current (or last) attempt. */
  readonly startedBy: string | null;
  readonly finishedAt: Date | null;
  /** The recorded result (JSON), once done. */
  readonly result: unknown;
  /** Why the last attempt failed, when it did. */
  readonly error: string | null;
  /** The person who resolved it while in doubt (mark done or allow retry), if anyone. */
  readonly resolvedBy: string | null;
  readonly resolvedAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

type Raw = Record<string, unknown>;

function obj(v: unknown, what: string): Raw {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new InternalError(`the core returned a malformed ${what}`);
  }
  return v as Raw;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : String(v);
}

function optStr(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

function date(v: unknown): Date {
  const d = new Date(str(v));
  if (Number.isNaN(d.getTime())) throw new InternalError(`the core returned a bad time: ${String(v)}`);
  return d;
}

function optDate(v: unknown): Date | null {
  return v === null || v === undefined ? null : date(v);
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.map(str) : [];
}

function policyFromJson(v: unknown): TaskPolicy | null {
  if (v === null || v === undefined) return null;
  const d = obj(v, "policy");
  const a = d["approvers"] == null ? null : obj(d["approvers"], "policy");
  const onTimeout = d["on_timeout"];
  return {
    approvers:
      a === null
        ? null
        : {
            anyOf: strings(a["any_of"]),
            required: typeof a["required"] === "number" ? a["required"] : 1,
            excludeRequester: a["exclude_requester"] === true,
            rejectOn: a["reject_on"] === "majority" ? "majority" : "any",
          },
    remindersMs: Array.isArray(d["reminders_ms"]) ? d["reminders_ms"].map(Number) : [],
    escalate: (Array.isArray(d["escalate"]) ? d["escalate"] : []).map((e: unknown) => {
      const s = obj(e, "policy");
      return { afterMs: Number(s["after_ms"]), notify: strings(s["notify"]), addApprovers: strings(s["add_approvers"]) };
    }),
    onTimeout:
      typeof onTimeout === "object" && onTimeout !== null && "default" in onTimeout
        ? { default: (onTimeout as { default: unknown }).default ?? null }
        : "raise",
  };
}

/** The wire JSON of a task's policy (what the core's digest covers). @internal */
export function policyToJson(p: TaskPolicy | null): Record<string, unknown> | null {
  if (p === null) return null;
  return {
    approvers:
      p.approvers === null
        ? null
        : {
            any_of: p.approvers.anyOf,
            required: p.approvers.required,
            exclude_requester: p.approvers.excludeRequester,
            reject_on: p.approvers.rejectOn,
          },
    reminders_ms: p.remindersMs,
    escalate: p.escalate.map((e) => ({ after_ms: e.afterMs, notify: e.notify, add_approvers: e.addApprovers })),
    on_timeout: p.onTimeout === "raise" ? "raise" : { default: p.onTimeout.default },
  };
}

function voteFromJson(v: unknown): Vote {
  const d = obj(v, "vote");
  return {
    by: str(d["by"]),
    channel: str(d["channel"]),
    at: date(d["at"]),
    approve: d["approve"] === true,
    response: d["response"] ?? null,
    email: optStr(d["email"]),
  };
}

function timerFromJson(v: unknown): Timer {
  const d = obj(v, "timer");
  return { kind: str(d["kind"]), index: Number(d["index"]), dueAt: date(d["due_at"]), firedAt: optDate(d["fired_at"]) };
}

/** @internal */
export function taskFromJson(v: unknown, created?: boolean): Task {
  const d = obj(v, "task");
  const status = str(d["status"]) as Status;
  const answeredVia = optStr(d["answered_via"]);
  const task: Task = {
    id: str(d["id"]),
    namespace: str(d["namespace"]),
    key: str(d["key"]),
    title: str(d["title"]),
    payload: d["payload"] ?? null,
    payloadSchema: d["payload_schema"] == null ? null : obj(d["payload_schema"], "schema"),
    responseSchema: obj(d["response_schema"], "schema"),
    digest: str(d["digest"]),
    notify: strings(d["notify"]),
    assignTo: strings(d["assign_to"]),
    status,
    response: d["response"] ?? null,
    answeredBy: optStr(d["answered_by"]),
    answeredVia,
    cancelledBy: optStr(d["cancelled_by"]),
    cancelReason: optStr(d["cancel_reason"]),
    createdAt: date(d["created_at"]),
    updatedAt: date(d["updated_at"]),
    deadline: optDate(d["deadline"]),
    endedAt: optDate(d["ended_at"]),
    claimedBy: optStr(d["claimed_by"]),
    claimedAt: optDate(d["claimed_at"]),
    verification:
      d["verification"] == null ? null : (obj(d["verification"], "verification") as Record<string, unknown>),
    attempts: typeof d["attempts"] === "number" ? d["attempts"] : 0,
    rejections: Array.isArray(d["rejections"]) ? (d["rejections"] as Rejection[]) : [],
    callbackUrl: optStr(d["callback_url"]),
    requestedBy: optStr(d["requested_by"]),
    policy: policyFromJson(d["policy"]),
    votes: Array.isArray(d["votes"]) ? d["votes"].map(voteFromJson) : [],
    timers: Array.isArray(d["timers"]) ? d["timers"].map(timerFromJson) : [],
    defaulted: status === "timed_out" && answeredVia === "timeout",
    ...(created === undefined ? {} : { created }),
  };
  return task;
}

/** @internal */
export function auditEventFromJson(v: unknown): AuditEvent {
  const d = obj(v, "audit row");
  return {
    taskId: str(d["task_id"]),
    seq: Number(d["seq"]),
    at: date(d["at"]),
    actor: optStr(d["actor"]),
    channel: optStr(d["channel"]),
    kind: str(d["kind"]),
    data: d["data"] == null ? {} : obj(d["data"], "audit data"),
    prevHash: str(d["prev_hash"]),
    hash: str(d["hash"]),
  };
}

/** @internal */
export function auditCheckFromJson(v: unknown): AuditCheck {
  const d = obj(v, "audit check");
  return {
    ok: d["ok"] === true,
    rows: Number(d["rows"]),
    brokenAtSeq: typeof d["broken_at_seq"] === "number" ? d["broken_at_seq"] : null,
    problem: optStr(d["problem"]),
  };
}

/** @internal */
export function effectFromJson(v: unknown): Effect {
  const d = obj(v, "effect");
  return {
    id: str(d["id"]),
    namespace: str(d["namespace"]),
    key: str(d["key"]),
    state: str(d["state"]) as EffectState,
    attempt: Number(d["attempt"]),
    startedAt: date(d["started_at"]),
    startedBy: optStr(d["started_by"]),
    finishedAt: optDate(d["finished_at"]),
    result: d["result"] ?? null,
    error: optStr(d["error"]),
    resolvedBy: optStr(d["resolved_by"]),
    resolvedAt: optDate(d["resolved_at"]),
    createdAt: date(d["created_at"]),
    updatedAt: date(d["updated_at"]),
  };
}
