/**
 * inloop: durable, typed human-in-the-loop for AI agents.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { awaitHuman } from "inloop";
 *
 * const decision = await awaitHuman({
 *   title: "Approve this refund?",
 *   payload: { orderId: "A-1", amount: 500 },
 *   responseSchema: z.object({ approved: z.boolean() }),
 *   key: "refund-A-1",
 *   timeout: "4h",
 * });
 * ```
 * @module
 */

export {
  awaitDecision,
  awaitHuman,
  taskDigest,
  verifyDigest,
  type AwaitHumanOptions,
  type Decision,
} from "./await.js";
export { once, type OnceOptions } from "./effects.js";
export {
  Client,
  defaultClient,
  type AnswerOptions,
  type Approvers,
  type CancelOptions,
  type ClientOptions,
  type CreateOptions,
  type EffectsOptions,
  type Escalation,
  type ListOptions,
  type OnTimeout,
  type ResolveEffectOptions,
  type TaskRequest,
  type Timeout,
  type WaitOptions,
} from "./client.js";
export {
  Aborted,
  Cancelled,
  ConfigError,
  Conflict,
  DatabaseError,
  DigestMismatch,
  EffectInDoubt,
  Forbidden,
  InloopError,
  InternalError,
  InvalidAnswer,
  InvalidArgument,
  InvalidPayload,
  InvalidSchema,
  KeyReused,
  NotFound,
  TimedOut,
  TooLarge,
  VerificationExhausted,
  VerificationInconclusive,
  VerificationPending,
  VerificationRejected,
  type ErrorCode,
  type FieldError,
  type InloopErrorOptions,
} from "./errors.js";
export * as verifiers from "./verifiers.js";
export type { Verdict, Verification, Verifier, Rule as VerificationRule } from "./verifiers.js";
export type { Infer, InferInput, Schema, Zod3Schema, Zod4Schema } from "./schema.js";
export { verifyWebhook, type VerifyWebhookOptions, type WebhookHeaders } from "./webhooks.js";
export {
  STATUSES,
  type AuditCheck,
  type AuditEvent,
  type Effect,
  type EffectState,
  type JsonSchema,
  type JsonValue,
  type Status,
  type Task,
  type TaskPage,
  type TaskPolicy,
  type Timer,
  type Vote,
} from "./types.js";
