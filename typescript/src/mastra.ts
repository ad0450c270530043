/**
 * Mastra adapter (`inloop/mastra`): a workflow step that a person answers through inloop.
 *
 * {@link humanStep} is a Mastra step (`createStep`) that suspends the run with a durable,
 * validated inloop task: the step's `resumeSchema` is the task's response schema and the
 * suspend payload is the task's payload. When the person answers, a {@link Resumer} in any
 * process with the same Mastra storage resumes the run with the typed answer; exactly one
 * resumer does (a lease per answer), so the steps after it run once. {@link runWorkflow}
 * does both in one process: start, wait for the answers, resume.
 *
 * @example
 * ```ts
 * import { humanStep, Resumer } from "inloop/mastra";
 * const approve = humanStep({
 *   id: "approve",
 *   title: (order) => `Refund ${order.amount} EUR for ${order.orderId}?`,
 *   inputSchema: Order,
 *   resumeSchema: z.object({ approved: z.boolean(), note: z.string().optional() }),
 * });
 * const wf = createWorkflow({ id: "refund", inputSchema: Order, outputSchema: Done }).then(approve).then(refund).commit();
 * // any process, any time later:
 * await new Resumer(mastra, { client }).runOnce();
 * ```
 * @module
 */

import { createStep, type Step } from "@mastra/core/workflows";
import { Client, defaultClient, type TaskRequest, type Timeout } from "./client.js";
import { Cancelled, InvalidArgument, TimedOut, VerificationExhausted } from "./errors.js";
import { acquire, release } from "./lease.js";
import { parseAnswer, type Infer, type InferInput, type Schema } from "./schema.js";
import type { Task } from "./types.js";

/** Key prefix of the tasks behind Mastra steps. */
export const KEY_PREFIX = "mastra:";

/** Where a task's step lives: the workflow's id, the run's id and the step's id. */
export interface StepRef {
  workflowId: string;
  runId: string;
  stepId: string;
}

/**
 * The inloop key of the task behind a step of a run (each part URI-encoded, so `:` separates
 * them): the same on every execution of the step, so a re-run finds the same task.
 *
 * @example
 * ```ts
 * taskKey({ workflowId: "refund", runId: "r-1", stepId: "approve" }); // "mastra:refund:r-1:approve"
 * ```
 */
export function taskKey(ref: StepRef): string {
  for (const [name, v] of Object.entries(ref)) {
    if (typeof v !== "string" || v === "") throw new InvalidArgument(`${name} must be a non-empty string`);
  }
  const key = KEY_PREFIX + [ref.workflowId, ref.runId, ref.stepId].map(encodeURIComponent).join(":");
  if (Buffer.byteLength(key) > 512) throw new InvalidArgument("the workflow, run and step ids are too long for an inloop key");
  return key;
}

/** The step a key made by {@link taskKey} names, else `null`. */
export function parseTaskKey(key: string): StepRef | null {
  if (!key.startsWith(KEY_PREFIX)) return null;
  const parts = key.slice(KEY_PREFIX.length).split(":");
  if (parts.length !== 3 || parts.some((p) => p === "")) return null;
  try {
    const [workflowId, runId, stepId] = parts.map(decodeURIComponent) as [string, string, string];
    return { workflowId, runId, stepId };
  } catch {
    return null;
  }
}

/** A Zod (4 or 3) schema, which Mastra and inloop both take. */
type ZodLike = Schema & ({ readonly _zod: unknown } | { readonly _def: unknown });

/** The task options {@link humanStep} passes to the core unchanged (see `TaskRequest`). */
const TASK_OPTIONS = ["timeout", "notify", "assignTo", "verification", "approvers", "reminders", "escalate", "callbackUrl", "onTimeout"] as const;

/** Options of {@link humanStep}. */
export interface HumanStepConfig<TId extends string, I extends ZodLike, R extends ZodLike, S extends ZodLike, O extends ZodLike>
  extends Pick<TaskRequest<R>, Exclude<(typeof TASK_OPTIONS)[number], "onTimeout">> {
  /** The step's id (part of the task key: keep it stable). */
  id: TId;
  description?: string;
  /** The task's title: a string, or made from the step's input. */
  title: string | ((input: Infer<I>) => string);
  inputSchema: I;
  /** The answer's schema: Mastra's resume schema and inloop's response schema. */
  resumeSchema: R;
  /** The suspend payload's schema, also the task's payload schema (default: `inputSchema`;
   * required with `payload`). */
  suspendSchema?: S;
  /** The suspend payload, which is what the person sees (default: the step's input). */
  payload?: (input: Infer<I>) => unknown;
  /** The step's output schema (default: `resumeSchema`, the answer is the output). */
  outputSchema?: O;
  /** The step's output from the answer (default: the answer itself). */
  output?: (answer: Infer<R>, input: Infer<I>) => Infer<O> | Promise<Infer<O>>;
  /** `"raise"` (default: the run is cancelled) or `{ default: answer }`, which the core records
   * as the answer when the timeout passes (and the run resumes with it). */
  onTimeout?: "raise" | { default: InferInput<R> };
  /** Namespace of the tasks (when `client` is not given). */
  namespace?: string;
  /** The inloop client (default: the process-wide one, see `defaultClient`). */
  client?: Client;
}

/** The parts of Mastra's step context {@link humanStep} uses. */
interface StepContext {
  inputData: unknown;
  runId: string;
  workflowId: string;
  suspend: (payload: unknown) => unknown;
}

/**
 * A Mastra step answered by a person (schemas are Zod, as `createStep` takes them). On its
 * first execution it creates the inloop task (key: {@link taskKey}; title; payload = the
 * suspend payload; response schema = the `resumeSchema`; the task options as given) and
 * suspends the run with that payload. `title` and `payload` must be deterministic: a
 * re-executed step makes the same request, and the same key with a different request is
 * `KeyReused`. When the run is resumed, the answer comes from the inloop task (validated by
 * the core and parsed by the Zod schema), not from whoever called `resume`: a resume while the
 * task is still pending suspends again. A task that ended without an answer throws
 * `TimedOut` / `Cancelled` / `VerificationExhausted` in the step (the {@link Resumer} cancels
 * such runs instead of resuming them); an `onTimeout` default the core recorded is an answer.
 *
 * @example
 * ```ts
 * const approve = humanStep({
 *   id: "approve", title: "Approve the refund?", inputSchema: Order,
 *   resumeSchema: z.object({ approved: z.boolean() }), timeout: "4h", notify: ["email:ops@example.com"],
 * });
 * ```
 */
export function humanStep<TId extends string, I extends ZodLike, R extends ZodLike, S extends ZodLike = I, O extends ZodLike = R>(
  config: HumanStepConfig<TId, I, R, S, O>,
): Step<TId, unknown, Infer<I>, Infer<O>, Infer<R>, Infer<S>> {
  if (typeof config?.id !== "string" || config.id === "") throw new InvalidArgument("humanStep needs an id");
  for (const name of ["inputSchema", "resumeSchema", "suspendSchema", "outputSchema"] as const) {
    const schema: unknown = config[name];
    if (schema === undefined && (name === "inputSchema" || name === "resumeSchema")) {
      throw new InvalidArgument(`humanStep needs ${name === "inputSchema" ? "an" : "a"} ${name}${name === "resumeSchema" ? " (the answer's schema)" : ""}`);
    }
    if (schema !== undefined && (typeof schema !== "object" || schema === null || !("_zod" in schema || "_def" in schema))) {
      throw new InvalidArgument(`humanStep: ${name} must be a Zod schema`);
    }
  }
  if (config.payload !== undefined && config.suspendSchema === undefined) {
    throw new InvalidArgument("humanStep: a payload function needs its suspendSchema (the payload is checked against it)");
  }
  if (config.output === undefined && config.outputSchema !== undefined) {
    throw new InvalidArgument("humanStep: an outputSchema other than the resumeSchema needs an output function");
  }
  const taskOptions = Object.fromEntries(TASK_OPTIONS.filter((k) => config[k] !== undefined).map((k) => [k, config[k]]));
  const execute = async (ctx: StepContext): Promise<unknown> => {
    const input = ctx.inputData as Infer<I>;
    const client = config.client ?? defaultClient(config.namespace);
    const key = taskKey({ workflowId: ctx.workflowId, runId: ctx.runId, stepId: config.id });
    const payload = config.payload ? config.payload(input) : input;
    const title = typeof config.title === "function" ? config.title(input) : config.title;
    const task = await client.create({
      title,
      payload,
      responseSchema: config.resumeSchema,
      payloadSchema: config.suspendSchema ?? config.inputSchema,
      key,
      requestedBy: `mastra:${ctx.workflowId}`,
      ...taskOptions,
    });
    if (task.status === "pending") return await ctx.suspend(payload);
    if (task.status === "completed" || task.defaulted) {
      // A policy's onTimeout default is recorded by the core as the answer (`defaulted`).
      const answer = parseAnswer(config.resumeSchema, task.response);
      return config.output ? await config.output(answer, input) : answer;
    }
    throw unanswered(task);
  };
  const params = {
    id: config.id,
    ...(config.description !== undefined ? { description: config.description } : {}),
    inputSchema: config.inputSchema,
    outputSchema: config.outputSchema ?? config.resumeSchema,
    resumeSchema: config.resumeSchema,
    suspendSchema: config.suspendSchema ?? config.inputSchema,
    execute,
  };
  // Mastra's createStep overloads cannot be resolved from generic schemas; the params are
  // exactly StepParams with the schemas above.
  return (createStep as unknown as (p: typeof params) => Step<TId, unknown, Infer<I>, Infer<O>, Infer<R>, Infer<S>>)(params);
}

function unanswered(task: Task): Error {
  if (task.status === "timed_out") {
    return new TimedOut(`nobody answered task ${task.id} before its deadline`, { details: { task_id: task.id } });
  }
  if (task.status === "verification_exhausted") {
    return new VerificationExhausted(`every answer to task ${task.id} was rejected by its verification`, {
      details: { task_id: task.id },
    });
  }
  const reason = task.cancelReason ? `: ${task.cancelReason}` : "";
  return new Cancelled(`task ${task.id} ended as ${task.status}${reason}`, {
    details: { task_id: task.id, by: task.cancelledBy, reason: task.cancelReason },
  });
}

/** The part of a Mastra workflow run the resumer uses. */
export interface RunLike {
  resume(params: { step: string; resumeData: unknown }): Promise<{ status: string }>;
  cancel(): Promise<void>;
}

/** The part of a Mastra workflow the resumer uses. */
export interface WorkflowLike {
  readonly id: string;
  createRun(options: { runId: string }): Promise<RunLike>;
  getWorkflowRunById(runId: string): Promise<{ status: string; suspendedPaths?: Record<string, number[]> } | null>;
}

/** The part of a `Mastra` instance the resumer uses: its workflows, by id. */
export interface MastraLike {
  getWorkflowById(id: string): unknown;
}

/** Options of {@link Resumer} and {@link runWorkflow}. */
export interface ResumerOptions {
  client?: Client;
  /** Namespace of the resume leases (default `<client namespace>.resumer`). */
  leaseNamespace?: string;
  /** How long a lease holds before another resumer may take over (default 5 minutes). */
  leaseTtl?: Timeout;
}

/** What one {@link Resumer.runOnce} pass did, by run id. */
export interface ResumePass {
  /** Runs resumed with an answer: the run's status after the resume (`success`, `suspended` ...). */
  resumed: Record<string, string>;
  /** Runs cancelled because their task ended without an answer (timed out, cancelled,
   * verification exhausted): the task's status. */
  cancelled: Record<string, string>;
  /** Runs whose resume threw: the error (its lease expires and it is retried after `leaseTtl`). */
  failed: Record<string, string>;
}

/**
 * Resumes the Mastra runs whose inloop tasks ended, from any process with the same Mastra
 * (its workflows and storage): an answered task resumes its step with the answer as
 * `resumeData`; a task that timed out or was cancelled cancels the run (a timeout is never a
 * made-up answer). Several resumers may run at once: a lease per task (an inloop task keyed
 * `inloop-resume:<task id>:<attempt>`) lets exactly one of them resume, so the steps after
 * the human step run once.
 *
 * @example
 * ```ts
 * const resumer = new Resumer(mastra, { client });
 * setInterval(() => void resumer.runOnce(), 1000);
 * ```
 */
export class Resumer {
  readonly #mastra: MastraLike;
  readonly #client: Client;
  readonly #ns: string;
  readonly #ttl: Timeout;
  readonly #settled = new Set<string>();

  constructor(mastra: MastraLike, options: ResumerOptions = {}) {
    if (typeof mastra?.getWorkflowById !== "function") throw new InvalidArgument("Resumer needs the Mastra instance");
    this.#mastra = mastra;
    this.#client = options.client ?? defaultClient();
    this.#ns = options.leaseNamespace ?? `${this.#client.namespace}.resumer`;
    this.#ttl = options.leaseTtl ?? "5m";
  }

  /**
   * One pass over the ended tasks of Mastra steps not resumed yet.
   *
   * @example
   * ```ts
   * const { resumed, cancelled, failed } = await new Resumer(mastra, { client }).runOnce();
   * ```
   */
  async runOnce(): Promise<ResumePass> {
    const pass: ResumePass = { resumed: {}, cancelled: {}, failed: {} };
    for (const status of ["completed", "timed_out", "cancelled", "verification_exhausted"] as const) {
      let cursor: string | undefined;
      do {
        const page = await this.#client.list({ status, keyPrefix: KEY_PREFIX, limit: 500, ...(cursor ? { cursor } : {}) });
        for (const task of page.items) {
          if (this.#settled.has(task.id)) continue;
          try {
            await this.#resume(task, pass);
          } catch (e) {
            const ref = parseTaskKey(task.key);
            pass.failed[ref?.runId ?? task.id] = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
          }
        }
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
    }
    return pass;
  }

  /**
   * Resumes (or cancels) the run behind one ended task, if it is still suspended on that
   * step and no other resumer holds its lease; resolves to what happened, or `null` when
   * there was nothing to do.
   *
   * @example
   * ```ts
   * await resumer.resumeTask(await client.getByKey(taskKey({ workflowId, runId, stepId })));
   * ```
   */
  async resumeTask(task: Task): Promise<{ runId: string; action: "resumed" | "cancelled"; status: string } | null> {
    const pass: ResumePass = { resumed: {}, cancelled: {}, failed: {} };
    await this.#resume(task, pass);
    for (const [runId, status] of Object.entries(pass.resumed)) return { runId, action: "resumed", status };
    for (const [runId, status] of Object.entries(pass.cancelled)) return { runId, action: "cancelled", status };
    return null;
  }

  async #resume(task: Task, pass: ResumePass): Promise<void> {
    if (task.status === "pending") return;
    const ref = parseTaskKey(task.key);
    if (ref === null) {
      this.#settled.add(task.id);
      return;
    }
    const workflow = this.#workflow(ref.workflowId);
    if (workflow === null) return; // another application's workflow: not ours to resume
    const state = await workflow.getWorkflowRunById(ref.runId);
    if (state === null || state.status !== "suspended" || !(ref.stepId in (state.suspendedPaths ?? {}))) {
      this.#settled.add(task.id); // resumed already, or the run ended another way
      return;
    }
    const lease = await acquire(this.#client, task.id, this.#ns, this.#ttl, "Resume the Mastra run waiting on this task");
    if (lease === null) return;
    const run = await workflow.createRun({ runId: ref.runId });
    if (task.status === "completed" || task.defaulted) {
      const result = await run.resume({ step: ref.stepId, resumeData: task.response });
      pass.resumed[ref.runId] = result.status;
    } else {
      await run.cancel();
      pass.cancelled[ref.runId] = task.status;
    }
    await release(this.#client, lease, "mastra");
    this.#settled.add(task.id);
  }

  #workflow(id: string): WorkflowLike | null {
    try {
      return this.#mastra.getWorkflowById(id) as WorkflowLike;
    } catch {
      return null;
    }
  }
}

/** The result of {@link runWorkflow}: Mastra's result of the last start or resume. */
export interface RunResult {
  status: string;
  [field: string]: unknown;
}

/**
 * Runs a workflow to its end in this process: starts it, and whenever it suspends on
 * {@link humanStep}s, waits (push-woken) for one of their tasks to end and resumes it (with
 * the same leases as a {@link Resumer}, so both may run at once). If this process dies, a
 * Resumer elsewhere picks the run up. Resolves to the last result (`success`, `failed`,
 * `canceled`, or `suspended` on steps inloop does not know).
 *
 * @example
 * ```ts
 * const out = await runWorkflow(mastra, "refund", { orderId: "A-1", amount: 42 }, { runId: "refund-A-1", client });
 * ```
 */
export async function runWorkflow(
  mastra: MastraLike,
  workflowId: string,
  inputData: unknown,
  options: ResumerOptions & { runId: string },
): Promise<RunResult> {
  const client = options.client ?? defaultClient();
  const resumer = new Resumer(mastra, { ...options, client });
  let workflow: WorkflowLike;
  try {
    workflow = mastra.getWorkflowById(workflowId) as WorkflowLike;
  } catch (e) {
    throw new InvalidArgument(`no workflow ${JSON.stringify(workflowId)} in this Mastra`, { cause: e });
  }
  const run = (await workflow.createRun({ runId: options.runId })) as RunLike & {
    start(p: { inputData: unknown }): Promise<RunResult>;
  };
  let result: RunResult = await run.start({ inputData });
  for (;;) {
    if (result.status !== "suspended") return result;
    const state = await workflow.getWorkflowRunById(options.runId);
    const steps = Object.keys(state?.suspendedPaths ?? {});
    const tasks: Task[] = [];
    for (const stepId of steps) {
      try {
        tasks.push(await client.getByKey(taskKey({ workflowId, runId: options.runId, stepId })));
      } catch {
        // a step that suspended without inloop
      }
    }
    if (tasks.length === 0) return result;
    const ac = new AbortController();
    let ended: Task;
    try {
      ended = await Promise.race(tasks.map((t) => client.wait(t.id, { signal: ac.signal })));
    } finally {
      ac.abort();
    }
    const done = await resumer.resumeTask(ended);
    if (done === null) {
      // Another resumer holds the lease: wait until the run moves on.
      let s = await workflow.getWorkflowRunById(options.runId);
      while (s !== null && s.status === "suspended" && steps.every((id) => id in (s?.suspendedPaths ?? {}))) {
        await new Promise((r) => setTimeout(r, 50));
        s = await workflow.getWorkflowRunById(options.runId);
      }
    }
    const now = await workflow.getWorkflowRunById(options.runId);
    result = { ...(now ?? {}), status: now?.status ?? "failed" };
  }
}
