/**
 * Verifying a person's answer before the agent trusts it (`docs/verification.md`).
 *
 * Two kinds of verifier, which can be combined:
 * - **In the core** (wherever the answer arrives): deterministic rules and an optional LLM
 *   verifier, built with {@link claude}, {@link openai}, {@link azureOpenai} or {@link gemini}
 *   and passed as `verification` to `awaitHuman`. API keys come from the process that
 *   verifies (environment variables such as `ANTHROPIC_API_KEY`), never from the task.
 * - **In the agent**: `awaitHuman({ ..., verifier })`, where `verifier(payload, answer)` (sync
 *   or async) returns {@link passed}, {@link rejected} or {@link inconclusive}. A rejection
 *   goes back through the core (the task is pending again, the attempt counted and audited,
 *   the person sees the reason) and the agent keeps waiting. A throw is inconclusive.
 *
 * @example
 * ```ts
 * import { awaitHuman, verifiers } from "inloop";
 * const decision = await awaitHuman({
 *   title: "Approve this refund?", payload: refund, responseSchema: Decision, key: "refund-A-1",
 *   verification: verifiers.claude("claude-sonnet-4-6", { instructions: "Denials need a reason." }),
 *   verifier: (p, d) => (d.amount > p.amount ? verifiers.rejected(`at most ${p.amount}`) : verifiers.passed()),
 * });
 * ```
 * @module
 */

import { InvalidArgument } from "./errors.js";

/** What a verifier concluded; `reason` is required for `reject` and `inconclusive`. */
export interface Verdict {
  readonly kind: "pass" | "reject" | "inconclusive";
  readonly reason?: string;
}

/** An agent-side verifier: `(payload, answer) => Verdict`, sync or async. */
export type Verifier<P = unknown, A = unknown> = (payload: P, answer: A) => Verdict | Promise<Verdict>;

/** A deterministic rule checked by the core (the rules language of docs/verification.md). */
export interface Rule {
  readonly name: string;
  readonly check: unknown;
  readonly message: string;
  readonly when?: unknown;
}

/** How the core verifies answers (`NewTask.verification`, as the core takes it). */
export interface Verification {
  readonly rules: readonly Rule[];
  readonly llm?: Record<string, unknown>;
  readonly max_attempts: number;
  readonly on_inconclusive: "fail_closed" | "fail_open";
}

function need(kind: string, reason: string | undefined): string {
  if (typeof reason !== "string" || reason.trim() === "") throw new InvalidArgument(`a ${kind} verdict needs a reason`);
  return reason;
}

/** The answer is acceptable. */
export function passed(): Verdict {
  return { kind: "pass" };
}

/** The answer is not acceptable; `reason` tells the person what to change. */
export function rejected(reason: string): Verdict {
  return { kind: "reject", reason: need("reject", reason) };
}

/** The verifier cannot tell; the task's fail policy decides. */
export function inconclusive(reason: string): Verdict {
  return { kind: "inconclusive", reason: need("inconclusive", reason) };
}

/** Options shared by the LLM helpers. */
export interface LlmOptions {
  /** What to check, in words (added to the verifier's system prompt). */
  instructions?: string;
  /** The whole call's time limit in ms (default 20000). */
  timeoutMs?: number;
  /** Deterministic rules checked before the LLM. */
  rules?: readonly Rule[];
  /** The rejection that reaches this number ends the task (default 3). */
  maxAttempts?: number;
  /** What an inconclusive verdict does (default `"fail_closed"`: keep the task pending). */
  onInconclusive?: "fail_closed" | "fail_open";
}

/** Rules only (no LLM), or the settings for an agent-side `verifier`. */
export function rules(list: readonly Rule[], options: Omit<LlmOptions, "instructions" | "timeoutMs" | "rules"> = {}): Verification {
  return {
    rules: [...list],
    max_attempts: options.maxAttempts ?? 3,
    on_inconclusive: options.onInconclusive ?? "fail_closed",
  };
}

function llm(provider: string, model: string, api: string | undefined, o: LlmOptions, extra: Record<string, unknown> = {}): Verification {
  if (typeof model !== "string" || model === "") throw new InvalidArgument("the model must be a non-empty string");
  const spec: Record<string, unknown> = { provider, model, timeout_ms: o.timeoutMs ?? 20_000, ...extra };
  if (o.instructions !== undefined) spec["instructions"] = o.instructions;
  if (api !== undefined) spec["api"] = api;
  return { ...rules(o.rules ?? [], o), llm: spec };
}

/**
 * An Anthropic Messages verifier (`ANTHROPIC_API_KEY` where the answer is verified); `api:
 * "tool"` uses a forced tool call. Example: `verifiers.claude("claude-sonnet-4-6")`.
 */
export function claude(model: string, options: LlmOptions & { api?: "json_schema" | "tool" } = {}): Verification {
  return llm("anthropic", model, options.api ?? "json_schema", options);
}

/** An OpenAI verifier: Chat Completions or the Responses API (`OPENAI_API_KEY`). */
export function openai(model: string, options: LlmOptions & { api?: "chat" | "responses" } = {}): Verification {
  return llm("openai", model, options.api ?? "chat", options);
}

/**
 * An Azure OpenAI verifier on `deployment` (`AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_KEY`):
 * the deployment URL with `apiVersion`, else the v1 surface.
 */
export function azureOpenai(
  deployment: string,
  options: LlmOptions & { api?: "chat" | "responses"; apiVersion?: string } = {},
): Verification {
  const extra = options.apiVersion === undefined ? {} : { api_version: options.apiVersion };
  return llm("azure_openai", deployment, options.api ?? "chat", options, extra);
}

/** A Google Gemini verifier (`generateContent` with `responseJsonSchema`; `GEMINI_API_KEY`). */
export function gemini(model: string, options: LlmOptions = {}): Verification {
  return llm("gemini", model, undefined, options);
}
