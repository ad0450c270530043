/** `once`: run a side effect at most once per key, and remember its result. @module */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { InvalidArgument, call } from "./errors.js";
import { Client, defaultClient, toJsonText } from "./client.js";

/** Options of {@link once}. */
export interface OnceOptions {
  /** The client (default: the process-wide one for the configured database and namespace). */
  client?: Client;
  /** The effect's namespace (default: the client's). */
  namespace?: string;
  /**
   * When `fn` throws: `true` (default) records the failure and releases the effect, so the
   * next call runs `fn` again; `false` leaves it in doubt (for a function that cannot tell
   * whether the effect happened, such as a timeout after a request was sent).
   */
  releaseOnError?: boolean;
  /** Who or which process runs it (recorded; default `node:HOST:PID`). */
  by?: string;
}

/**
 * Test hooks (the crash tests kill the process right after the result is recorded).
 * @internal
 */
export const _hooks: { afterRecord?: () => void } = {};

/**
 * Runs the side effect `fn` at most once for `key`, and resolves to its recorded result.
 *
 * The start and the result of the effect are recorded in inloop's database (or through its
 * server, in remote mode). A retried agent that reaches the same `once(key, ...)` gets the
 * recorded result and `fn` does not run again. `fn` takes no arguments and may be sync or
 * async; its result must be JSON. `once` resolves to the *recorded* JSON (the result through
 * `JSON.stringify` and `JSON.parse`), on the first run as on every replay.
 *
 * What is guaranteed, and what is not (`docs/policies.md`):
 * - `fn` runs at most once per namespace and key, across processes and machines, unless a
 *   person allows a retry.
 * - If a process dies inside `fn` (or before the result is recorded), nobody can know whether
 *   the effect happened: the effect is *in doubt*. Every later call rejects with
 *   `EffectInDoubt` (never a silent second run) until a person resolves it in the dashboard
 *   ("Effects in doubt": mark done with a result, or allow a retry). A concurrent call while
 *   `fn` runs rejects with it too.
 * - If `fn` throws, the failure is recorded and the effect released: the next call runs `fn`
 *   again (so `fn` should throw only when the effect did not happen; see `releaseOnError`).
 * - A result that is not JSON, or over 256 KiB, cannot be recorded: the effect ran, so it
 *   stays in doubt and the call rejects (`InvalidArgument`, `TooLarge`).
 *
 * For a person to resolve an effect in doubt correctly, the effect must be idempotent or
 * checkable in the system it acts on (pass `key` to the provider as its idempotency key
 * where there is one).
 *
 * @example
 * ```ts
 * import { once } from "inloop";
 *
 * const refund = await once(`refund-${orderId}`, () =>
 *   stripe.refunds.create({ charge: chargeId }, { idempotencyKey: `refund-${orderId}` }),
 * );
 * ```
 */
export async function once<T>(key: string, fn: () => T | Promise<T>, options: OnceOptions = {}): Promise<T> {
  if (typeof key !== "string") throw new InvalidArgument(`key must be a string, not ${typeof key}`);
  if (typeof fn !== "function") throw new InvalidArgument("fn must be a function taking no arguments");
  const client = options.client ?? defaultClient(options.namespace);
  const ns = options.namespace ?? client.namespace;
  const engine = await client._engine();
  const token = randomBytes(24).toString("base64url");
  const by = options.by ?? `node:${hostname()}:${process.pid}`;
  const begun = JSON.parse(await call(() => engine.effectBegin(ns, key, token, by))) as
    | { outcome: "run"; token: string }
    | { outcome: "done"; result: unknown };
  if (begun.outcome === "done") return begun.result as T;
  let value: T;
  try {
    value = await fn();
  } catch (e) {
    if (options.releaseOnError !== false) {
      const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      try {
        await call(() => engine.effectAbort(ns, key, begun.token, what.slice(0, 2000)));
      } catch (abortError) {
        // The effect stays in doubt; the caller still gets fn's own error.
        process.emitWarning(`inloop: the failure of effect ${JSON.stringify(key)} could not be recorded (${String(abortError)}); it stays in doubt`);
      }
    }
    throw e;
  }
  let text: string;
  try {
    // A function without a result (`undefined`) records `null`.
    text = value === undefined ? "null" : toJsonText(value, "the result");
  } catch (e) {
    throw new InvalidArgument(
      `the result of the effect ${JSON.stringify(key)} is not JSON; the effect ran, so it is now in doubt: a person must mark it done (with a result) or allow a retry`,
      { cause: e },
    );
  }
  const done = JSON.parse(await call(() => engine.effectFinish(ns, key, begun.token, text))) as { result: unknown };
  _hooks.afterRecord?.();
  return done.result as T;
}
