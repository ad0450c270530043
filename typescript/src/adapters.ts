/**
 * What the framework adapters share (`inloop/openai-agents`, `inloop/claude-agent`): binding
 * an approval to the exact arguments shown, waiting for tasks (with an agent-side verifier),
 * and the message a tool call gets when nobody decided. No framework is imported here.
 *
 * @example
 * ```ts
 * import { argsDigest } from "inloop/openai-agents";
 * argsDigest({ order_id: "A-1", amount: 500 }); // "5c1f…" (SHA-256 hex)
 * ```
 * @module
 */

import { createHash } from "node:crypto";
import type { Client } from "./client.js";
import { Conflict, InloopError, InvalidArgument, type InloopErrorOptions } from "./errors.js";
import type { Task } from "./types.js";
import { inconclusive, type Verdict, type Verifier } from "./verifiers.js";

/** The call about to run has other arguments than the ones the person approved. */
export class ArgumentsChanged extends InloopError {
  constructor(message: string, options: InloopErrorOptions = {}) {
    super(message, options, "arguments_changed");
  }
}

function canonical(value: unknown): string {
  if (value === null || typeof value !== "object") {
    const text = JSON.stringify(value);
    if (text === undefined) throw new InvalidArgument(`a call's arguments must be JSON, not ${String(value)}`);
    return text;
  }
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`).join(",")}}`;
}

/**
 * SHA-256 (hex) of the canonical JSON (sorted keys, no spaces) of a call's arguments: what an
 * approval is bound to. Numbers are written as JavaScript writes them (`500`, not `500.0`).
 *
 * @example
 * ```ts
 * argsDigest({ order_id: "A-1", amount: 500 }) === argsDigest({ amount: 500, order_id: "A-1" }); // true
 * ```
 */
export function argsDigest(args: unknown): string {
  return createHash("sha256").update(canonical(args), "utf8").digest("hex");
}

/**
 * A run id (a ticket, an order): a non-empty string of at most 200 characters.
 * @internal
 */
export function checkRunId(runId: unknown): string {
  if (typeof runId !== "string" || runId.trim() === "" || runId.length > 200) {
    throw new InvalidArgument(`runId must be a non-empty string of at most 200 characters, not ${JSON.stringify(runId)}`);
  }
  return runId;
}

async function judge(verifier: Verifier, payload: unknown, answer: unknown): Promise<Verdict> {
  let result: unknown;
  try {
    result = await verifier(payload, answer);
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

/**
 * Waits, push-woken, until the task ended and returns it. With `verifier`, a person's
 * completed answer is judged (`verifier(task.payload, answer)`) and the verdict goes to the
 * core, which sends a rejected answer back to the person: this then keeps waiting. A task that
 * ended without an answer (timed out, cancelled, verification exhausted) is returned as it is.
 * `signal` stops the wait (rejects with `Aborted`; the task is unchanged).
 *
 * @example
 * ```ts
 * const task = await waitEnded(client, id);
 * ```
 */
export async function waitEnded(client: Client, taskId: string, verifier?: Verifier, signal?: AbortSignal): Promise<Task> {
  const name = `sdk:${verifier?.name || "verifier"}`;
  for (;;) {
    const task = await client.wait(taskId, signal === undefined ? {} : { signal });
    if (task.status === "pending") continue;
    if (verifier === undefined || task.status !== "completed") return task;
    const started = performance.now();
    const verdict = await judge(verifier, task.payload, task.response);
    let after: Task;
    try {
      after = await client.submitVerdict(taskId, verdict, {
        attempts: task.attempts,
        verifier: name,
        latencyMs: performance.now() - started,
      });
    } catch (e) {
      if (e instanceof Conflict) continue; // judged meanwhile (another resumer): look again
      throw e;
    }
    if (after.status !== "pending") return after;
  }
}

/**
 * Waits until every task ended (see {@link waitEnded}); returns them in order.
 *
 * @example
 * ```ts
 * const [a, b] = await waitAll(client, [first.id, second.id]);
 * ```
 */
export async function waitAll(client: Client, taskIds: readonly string[], verifier?: Verifier): Promise<Task[]> {
  return Promise.all(taskIds.map((id) => waitEnded(client, id, verifier)));
}

/**
 * The message a tool call gets when its task ended without an answer (timed out, cancelled,
 * verification exhausted): it is never an approval.
 *
 * @example
 * ```ts
 * noAnswer(task); // "No decision from a person on this tool call: the request timed out."
 * ```
 */
export function noAnswer(task: Task): string {
  const why = task.status.replaceAll("_", " ");
  const extra = task.cancelReason ? ` (${task.cancelReason})` : "";
  return `No decision from a person on this tool call: the request ${why}${extra}.`;
}
