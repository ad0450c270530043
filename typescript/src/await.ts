/** `awaitHuman`: ask a person, wait durably, get a typed answer. @module */

import { Aborted, InvalidArgument } from "./errors.js";
import { Client, abortable, defaultClient, type TaskRequest } from "./client.js";
import { parseAnswer, type Infer, type Schema } from "./schema.js";

/** Options of {@link awaitHuman}. */
export interface AwaitHumanOptions<S extends Schema> extends TaskRequest<S> {
  /** The client (default: the process-wide one for the configured database and namespace). */
  client?: Client;
  /**
   * Stops waiting: the promise rejects with `Aborted` and the task stays pending (call again
   * with the same `key` to resume). Already aborted: nothing is created.
   */
  signal?: AbortSignal;
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
 * Rejects with `TimedOut` when `timeout` passes unanswered (never a made-up denial),
 * `Cancelled` when the task is cancelled, `KeyReused` when `key` already names a different
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
 */
export async function awaitHuman<S extends Schema>(options: AwaitHumanOptions<S>): Promise<Infer<S>> {
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
  const text = await abortable(engine, signal, (h) => engine.ask(request, h ?? null));
  const task = JSON.parse(text) as { response?: unknown };
  return parseAnswer(options.responseSchema, task.response ?? null);
}
