/**
 * Errors thrown by inloop. Every error is an {@link InloopError} with a stable `code` (the
 * core's code, the same in Python, TypeScript, the CLI and the REST API), structured
 * `details`, and the native error as `cause` when it came from the core.
 *
 * @example
 * ```ts
 * import { awaitHuman, TimedOut } from "inloop";
 * try {
 *   await awaitHuman({ title: "Approve?", payload: {}, responseSchema: Decision, timeout: "1m" });
 * } catch (e) {
 *   if (e instanceof TimedOut) console.log("nobody answered by", e.details.at);
 *   else throw e;
 * }
 * ```
 * @module
 */

/** Every error code inloop uses. */
export type ErrorCode =
  | "invalid_payload"
  | "invalid_answer"
  | "invalid_schema"
  | "invalid_argument"
  | "too_large"
  | "not_found"
  | "key_reused"
  | "conflict"
  | "timed_out"
  | "cancelled"
  | "verification_rejected"
  | "verification_inconclusive"
  | "verification_pending"
  | "verification_exhausted"
  | "effect_in_doubt"
  | "digest_mismatch"
  | "config"
  | "database"
  | "internal"
  | "aborted"
  | "forbidden"
  // the framework adapters (inloop/openai-agents): a call's arguments differ from the approved ones
  | "arguments_changed"
  // remote mode (an inloop server), without a subclass: an `InloopError` with this code
  | "invalid_json"
  | "unauthorized"
  | "unavailable";

/** The codes a server may answer with that have no subclass (an `InloopError` carries them). */
const PLAIN_CODES: readonly string[] = ["invalid_json", "unauthorized", "unavailable"];

/** One problem in a JSON document: a JSON Pointer (`""` is the whole document) and why. */
export interface FieldError {
  readonly path: string;
  readonly message: string;
}

/** Options of every inloop error's constructor. */
export interface InloopErrorOptions {
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** Base class of every inloop error. */
export class InloopError extends Error {
  /** The stable error code (for example `"timed_out"`). */
  readonly code: ErrorCode;
  /** Structured details (for example `{ by, at }` on a {@link Conflict}). */
  readonly details: Record<string, unknown>;

  constructor(message: string, options: InloopErrorOptions = {}, code: ErrorCode = "internal") {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
  }
}

function fieldErrors(details: Record<string, unknown>): FieldError[] {
  const raw = details["errors"];
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((e: unknown) => {
    if (typeof e !== "object" || e === null) return [];
    const r = e as Record<string, unknown>;
    return [{ path: String(r["path"] ?? ""), message: String(r["message"] ?? "") }];
  });
}

/** The payload does not match its schema. */
export class InvalidPayload extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "invalid_payload");
  }
  /** The field errors, each with a JSON Pointer `path` and a `message`. */
  get errors(): FieldError[] {
    return fieldErrors(this.details);
  }
}

/** An answer does not match the response schema; the task stays pending. */
export class InvalidAnswer extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "invalid_answer");
  }
  /** The field errors, each with a JSON Pointer `path` and a `message`. */
  get errors(): FieldError[] {
    return fieldErrors(this.details);
  }
}

/** A schema is not a usable JSON Schema. */
export class InvalidSchema extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "invalid_schema");
  }
}

/** An argument is malformed (namespace, key, id, filter, timeout ...). */
export class InvalidArgument extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "invalid_argument");
  }
}

/** A payload, answer or schema is over its documented size limit. */
export class TooLarge extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "too_large");
  }
}

/**
 * The caller may not do this to the task: an answer from someone who is not one of its
 * approvers, from the requester when the policy excludes them, a changed vote, a task claimed
 * by someone else, or an API key without `--allow-answer`. Audited.
 */
export class Forbidden extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "forbidden");
  }
}

/** No task with this id (or key). */
export class NotFound extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "not_found");
  }
}

/** The idempotency key already names a task with a different request. */
export class KeyReused extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "key_reused");
  }
}

/** The task already ended: answered (`details.by`, `details.at`), timed out or cancelled. */
export class Conflict extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "conflict");
  }
}

/** Nobody answered before the deadline. Never a silent denial. */
export class TimedOut extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "timed_out");
  }
}

/** The task was cancelled (`details` has `by` and `reason`). */
export class Cancelled extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "cancelled");
  }
}

/**
 * Verification rejected the answer (a rule, the LLM verifier or the agent's verifier); the task
 * stays pending. `reason` (also `details.reason`) is for the person who answered.
 */
export class VerificationRejected extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "verification_rejected");
  }

  /** Why the answer was rejected. */
  get reason(): string {
    return String(this.details["reason"] ?? "");
  }
}

/** The verifier could not decide and the task is fail-closed: it stays pending. */
export class VerificationInconclusive extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "verification_inconclusive");
  }
}

/** Another answer to the task is being verified right now; answer again later. */
export class VerificationPending extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "verification_pending");
  }
}

/**
 * Every allowed answer was rejected by verification: the task ended
 * (`status: "verification_exhausted"`). `reasons` lists why, oldest first.
 */
export class VerificationExhausted extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "verification_exhausted");
  }

  /** Why each answer was rejected, oldest first. */
  get reasons(): string[] {
    const r = this.details["reasons"];
    return Array.isArray(r) ? r.map(String) : [];
  }
}

/**
 * An effect of `once` began in another attempt and never recorded a result: that process may
 * have died inside the function, or may still be running it. The function is not run again
 * until a person resolves the effect (the dashboard's "Effects in doubt": mark done, or allow
 * a retry), so it never runs twice silently.
 */
export class EffectInDoubt extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "effect_in_doubt");
  }

  /** The effect's key. */
  get key(): string {
    return String(this.details["key"] ?? "");
  }

  /** The effect's namespace. */
  get namespace(): string {
    return String(this.details["namespace"] ?? "");
  }

  /** Which attempt is in doubt (1 for the first). */
  get attempt(): number {
    return Number(this.details["attempt"] ?? 0);
  }

  /** When the attempt in doubt began. */
  get startedAt(): Date | null {
    const at = this.details["started_at"];
    return typeof at === "string" ? new Date(at) : null;
  }

  /** Who or which process began it (`node:HOST:PID` by default). */
  get startedBy(): string | null {
    const by = this.details["started_by"];
    return typeof by === "string" ? by : null;
  }
}

/**
 * A payload does not produce the digest of the task that was approved: what the agent is
 * about to do is not what the person approved (`verifyDigest`, `Decision.verify`).
 */
export class DigestMismatch extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "digest_mismatch");
  }

  /** The approved digest (the task's). */
  get expected(): string {
    return String(this.details["expected"] ?? "");
  }

  /** The digest of the payload that was checked. */
  get actual(): string {
    return String(this.details["actual"] ?? "");
  }
}

/** The configuration (database URL, environment) is unusable. */
export class ConfigError extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "config");
  }
}

/** The database failed or could not be reached. */
export class DatabaseError extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "database");
  }
}

/** Something inloop did not expect; please report it. */
export class InternalError extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "internal");
  }
}

/** The wait was stopped by an `AbortSignal`. The task is unchanged (still pending). */
export class Aborted extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "aborted");
  }
}

type ErrorClass = new (message: string, options?: InloopErrorOptions) => InloopError;

const BY_CODE: Partial<Record<ErrorCode, ErrorClass>> = {
  invalid_payload: InvalidPayload,
  invalid_answer: InvalidAnswer,
  invalid_schema: InvalidSchema,
  invalid_argument: InvalidArgument,
  too_large: TooLarge,
  forbidden: Forbidden,
  not_found: NotFound,
  key_reused: KeyReused,
  conflict: Conflict,
  timed_out: TimedOut,
  cancelled: Cancelled,
  verification_rejected: VerificationRejected,
  verification_inconclusive: VerificationInconclusive,
  verification_pending: VerificationPending,
  verification_exhausted: VerificationExhausted,
  effect_in_doubt: EffectInDoubt,
  digest_mismatch: DigestMismatch,
  config: ConfigError,
  database: DatabaseError,
  internal: InternalError,
  aborted: Aborted,
};

/** The typed error for a rejection of the native addon (its message is JSON). @internal */
export function fromNative(err: unknown): InloopError {
  if (err instanceof InloopError) return err;
  const text = err instanceof Error ? err.message : String(err);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return new InternalError(text, { cause: err });
  }
  if (typeof parsed !== "object" || parsed === null) {
    return new InternalError(text, { cause: err });
  }
  const body = parsed as Record<string, unknown>;
  const code = typeof body["code"] === "string" ? body["code"] : "internal";
  const message = typeof body["message"] === "string" ? body["message"] : text;
  const details =
    typeof body["details"] === "object" && body["details"] !== null && !Array.isArray(body["details"])
      ? (body["details"] as Record<string, unknown>)
      : {};
  if (PLAIN_CODES.includes(code)) return new InloopError(message, { details, cause: err }, code as ErrorCode);
  const cls = Object.prototype.hasOwnProperty.call(BY_CODE, code) ? BY_CODE[code as ErrorCode] : undefined;
  return new (cls ?? InternalError)(message, { details, cause: err });
}

/** Runs a native call, rethrowing its rejection as a typed {@link InloopError}. @internal */
export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromNative(e);
  }
}
