/**
 * LangGraph.js adapter (`inloop/langgraph`): people answer graph interrupts through inloop.
 *
 * Inside a node, {@link human} asks a person: the question becomes a durable, validated inloop
 * task and a LangGraph interrupt; the node gets the typed answer when the thread is resumed,
 * in this process ({@link invoke}) or by any worker with the graph's checkpointer
 * ({@link Resumer}).
 *
 * @example
 * ```ts
 * import { human, invoke } from "inloop/langgraph";
 * const graph = new StateGraph(State)
 *   .addNode("approve", async (s) => {
 *     const d = await human("Approve this refund?", { payload: s, responseSchema: Decision });
 *     return { approved: d.approved };
 *   })
 *   .addEdge(START, "approve").compile({ checkpointer });
 * const out = await invoke(graph, { orderId: "A-1" }, { configurable: { thread_id: "refund-A-1" } });
 * ```
 * @module
 */

import { Command, INTERRUPT, getConfig, interrupt, isGraphInterrupt, type Interrupt } from "@langchain/langgraph";
import { Client, defaultClient, type Timeout } from "./client.js";
import { Cancelled, InvalidArgument, TimedOut } from "./errors.js";
import { acquire, release } from "./lease.js";
import { parseAnswer, toJsonSchema, type Infer, type Schema } from "./schema.js";
import type { Task } from "./types.js";

/** Key prefix of the tasks behind LangGraph interrupts. */
export const KEY_PREFIX = "langgraph:";
/** `config.configurable[CLIENT_KEY]` may hold the `Client` that `human()` uses in nodes. */
export const CLIENT_KEY = "inloop_client";
const ENVELOPE = "inloop.outcome/v1";

/** The person answered. */
export interface Answered<T> {
  readonly status: "completed";
  readonly answer: T;
  readonly taskId: string | null;
  readonly answeredBy: string | null;
}

/** The task ended without an answer (a timeout is never a made-up denial). */
export interface NotAnswered {
  readonly status: "timed_out" | "cancelled";
  readonly taskId: string;
  readonly cancelledBy: string | null;
  readonly reason: string | null;
}

/** What {@link humanOutcome} returns: branch on `status`. */
export type Outcome<T> = Answered<T> | NotAnswered;

/** Options of {@link human} and {@link humanOutcome}. */
export interface HumanOptions<S extends Schema> {
  /** What the person looks at (JSON). */
  payload: unknown;
  /** The answer's schema: Zod 4, Zod 3 or JSON Schema. */
  responseSchema: S;
  payloadSchema?: Schema;
  timeout?: Timeout;
  notify?: readonly string[];
  assignTo?: readonly string[];
  namespace?: string;
  /** The client (default: `config.configurable.inloop_client`, else the process-wide one). */
  client?: Client;
}

/**
 * The inloop key of the task behind a LangGraph interrupt: LangGraph derives the interrupt id
 * from the node task's checkpoint namespace and the interrupt's slot, so re-runs of the node
 * get the same key.
 *
 * @example
 * ```ts
 * taskKey("thread-1", "b4a7d5f2493c39cea293bd999c1d9c85"); // "langgraph:thread-1:b4a7..."
 * ```
 */
export function taskKey(threadId: string, interruptId: string): string {
  const key = `${KEY_PREFIX}${threadId}:${interruptId}`;
  if (Buffer.byteLength(key) > 512) throw new InvalidArgument("the thread id is too long for an inloop key");
  return key;
}

/** `[threadId, interruptId]` of a key made by {@link taskKey}, else `null`. */
export function parseTaskKey(key: string): [string, string] | null {
  if (!key.startsWith(KEY_PREFIX)) return null;
  const rest = key.slice(KEY_PREFIX.length);
  const i = rest.lastIndexOf(":");
  if (i < 0 || rest.length - i - 1 !== 32) return null;
  return [rest.slice(0, i), rest.slice(i + 1)];
}

/**
 * The value a thread is resumed with for an ended task (JSON only).
 *
 * @example
 * ```ts
 * await graph.invoke(new Command({ resume: { [interruptId]: resumeValue(task) } }), config);
 * ```
 */
export function resumeValue(task: Task): Record<string, unknown> {
  if (task.status === "pending") throw new InvalidArgument(`task ${task.id} has not ended yet`);
  return {
    [ENVELOPE]: true,
    task_id: task.id,
    status: task.status,
    response: task.response,
    answered_by: task.answeredBy,
    cancelled_by: task.cancelledBy,
    reason: task.cancelReason,
  };
}

function outcomeFromResume<S extends Schema>(schema: S, v: unknown): Outcome<Infer<S>> {
  if (typeof v !== "object" || v === null || (v as Record<string, unknown>)[ENVELOPE] !== true) {
    return { status: "completed", answer: parseAnswer(schema, v), taskId: null, answeredBy: null };
  }
  const e = v as Record<string, unknown>;
  const taskId = String(e["task_id"]);
  if (e["status"] === "completed") {
    return {
      status: "completed",
      answer: parseAnswer(schema, e["response"]),
      taskId,
      answeredBy: (e["answered_by"] as string | null) ?? null,
    };
  }
  return {
    status: e["status"] === "timed_out" ? "timed_out" : "cancelled",
    taskId,
    cancelledBy: (e["cancelled_by"] as string | null) ?? null,
    reason: (e["reason"] as string | null) ?? (e["status"] === "timed_out" || e["status"] === "cancelled" ? null : `task ended as ${String(e["status"])}`),
  };
}

/**
 * Asks a person from a graph node; resolves to `{status: "completed", answer}` or a
 * `NotAnswered` (timed out, cancelled) the node can branch on.
 *
 * The first time the node gets here the inloop task is created (key: {@link taskKey}) and the
 * graph stops on an interrupt whose value is `{title, payload, inloop: {task_id, key, ...}}`
 * with the response's JSON Schema as `response_schema`. On resume the node re-runs from its
 * first line: creation is then a no-op and this resolves to the outcome.
 *
 * @example
 * ```ts
 * const o = await humanOutcome("Approve?", { payload: s, responseSchema: Decision, timeout: "4h" });
 * if (o.status !== "completed") return { status: `escalated (${o.status})` };
 * return { approved: o.answer.approved };
 * ```
 */
export async function humanOutcome<S extends Schema>(title: string, options: HumanOptions<S>): Promise<Outcome<Infer<S>>> {
  const config = getConfig();
  const conf = (config.configurable ?? {}) as Record<string, unknown>;
  const threadId = conf["thread_id"];
  if (threadId === undefined || threadId === null) {
    throw new InvalidArgument("human() runs in a graph with a checkpointer, invoked with configurable.thread_id");
  }
  const configured = conf[CLIENT_KEY];
  const client = options.client ?? (configured instanceof Client ? configured : defaultClient(options.namespace));
  const schema = await toJsonSchema(options.responseSchema, "input", "responseSchema");
  const value: Record<string, unknown> = { title, payload: options.payload };
  let resumed: unknown;
  try {
    resumed = interrupt(value, { responseSchema: schema });
  } catch (e) {
    if (isGraphInterrupt(e) && e.interrupts.length === 1 && e.interrupts[0]?.id !== undefined) {
      const it = e.interrupts[0];
      const key = taskKey(String(threadId), it.id as string);
      const task = await client.create({ ...options, title, key });
      it.value = {
        ...value,
        inloop: {
          task_id: task.id,
          key,
          namespace: task.namespace,
          thread_id: String(threadId),
          checkpoint_ns: String(conf["checkpoint_ns"] ?? ""),
        },
      };
    }
    throw e;
  }
  return outcomeFromResume(options.responseSchema, resumed);
}

/**
 * Asks a person from a graph node and resolves to the typed answer; rejects with `TimedOut`
 * or `Cancelled` (in the node, where it can be caught) when the task ended without one.
 *
 * @example
 * ```ts
 * const d = await human("Approve this refund?", { payload: s, responseSchema: Decision });
 * ```
 */
export async function human<S extends Schema>(title: string, options: HumanOptions<S>): Promise<Infer<S>> {
  const o = await humanOutcome(title, options);
  if (o.status === "completed") return o.answer;
  if (o.status === "timed_out") {
    throw new TimedOut(`nobody answered task ${o.taskId} before its deadline`, { details: { task_id: o.taskId } });
  }
  throw new Cancelled(`task ${o.taskId} was cancelled${o.reason ? `: ${o.reason}` : ""}`, {
    details: { task_id: o.taskId, by: o.cancelledBy, reason: o.reason },
  });
}

/** One tool call LangChain's `humanInTheLoopMiddleware` asks about (`ActionRequest`). */
export interface HitlActionRequest {
  name: string;
  args: Record<string, unknown>;
  description?: string;
}

/** What a reviewer may decide about one tool (`ReviewConfig` of LangChain.js). */
export interface HitlReviewConfig {
  actionName: string;
  allowedDecisions: Array<"approve" | "edit" | "reject">;
  /** JSON Schema of the arguments, for edits. */
  argsSchema?: Record<string, unknown>;
}

/** The interrupt value of LangChain.js's `humanInTheLoopMiddleware` (`HITLRequest`). */
export interface HitlRequest {
  actionRequests: HitlActionRequest[];
  reviewConfigs: HitlReviewConfig[];
}

/** One decision of a `HITLResponse`, as the middleware takes it. */
export type HitlDecision =
  | { type: "approve" }
  | { type: "edit"; editedAction: { name: string; args: Record<string, unknown> } }
  | { type: "reject"; message?: string };

/** What the middleware is resumed with (`HITLResponse`): one decision per action, in order. */
export interface HitlResponse {
  decisions: HitlDecision[];
}

/** The inloop task for a request: title, what the person sees, and the answer's schema. */
export interface HitlForm {
  title: string;
  payload: Record<string, unknown>;
  responseSchema: Record<string, unknown>;
}

/** Whether an interrupt value is LangChain.js's batched `HITLRequest`. */
export function isHitlRequest(value: unknown): value is HitlRequest {
  const v = value as Partial<HitlRequest> | null;
  return typeof v === "object" && v !== null && Array.isArray(v.actionRequests) && Array.isArray(v.reviewConfigs);
}

const TEXT = { type: "string", maxLength: 10_000 };

function decisionSchema(decision: string, argsSchema: Record<string, unknown> | undefined): Record<string, unknown> {
  const type = { const: decision };
  switch (decision) {
    case "approve":
      return { type: "object", properties: { type }, required: ["type"] };
    case "edit":
      return {
        type: "object",
        properties: { type, args: argsSchema ?? { type: "object" } },
        required: ["type", "args"],
        description: "Run the tool with these arguments instead",
      };
    case "reject":
      return {
        type: "object",
        properties: { type, message: TEXT },
        required: ["type"],
        description: "Do not run the tool; the message goes back to the model",
      };
    default:
      throw new InvalidArgument(`unknown HITL decision type ${JSON.stringify(decision)}`);
  }
}

function reviewConfig(request: HitlRequest, name: string): HitlReviewConfig | undefined {
  return request.reviewConfigs.find((c) => c.actionName === name);
}

/**
 * The inloop form for a `HITLRequest` of LangChain.js's `humanInTheLoopMiddleware`: the answer
 * is `{decisions: [d0, d1, ...]}`, exactly one decision per action request, in order, each one
 * of that action's `allowedDecisions` (`{type: "approve"}`, `{type: "edit", args}` with the
 * arguments checked against the review config's `argsSchema` when it has one, `{type:
 * "reject", message?}`); the core refuses anything else before it reaches the agent. The same
 * form as Python's `hitl_form`.
 *
 * @example
 * ```ts
 * const { title, payload, responseSchema } = hitlForm(interrupt.value as HitlRequest);
 * await client.create({ title, payload, responseSchema, key: taskKey(threadId, interrupt.id!) });
 * ```
 */
export function hitlForm(request: HitlRequest): HitlForm {
  const items = request.actionRequests.map((a) => {
    const config = reviewConfig(request, a.name);
    const allowed = config?.allowedDecisions?.length ? config.allowedDecisions : ["approve", "reject"];
    return { oneOf: [...new Set(allowed)].map((d) => decisionSchema(d, config?.argsSchema)) };
  });
  const responseSchema = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    properties: {
      decisions: { type: "array", prefixItems: items, items: false, minItems: items.length, maxItems: items.length },
    },
    required: ["decisions"],
  };
  const payload = {
    actions: request.actionRequests.map((a) => ({
      name: a.name,
      args: a.args ?? {},
      description: a.description ?? null,
      allowed_decisions: reviewConfig(request, a.name)?.allowedDecisions ?? null,
    })),
  };
  const names = request.actionRequests.map((a) => a.name).join(", ");
  return { title: `Review tool call${request.actionRequests.length > 1 ? "s" : ""}: ${names}`, payload, responseSchema };
}

/**
 * The `HITLResponse` for an accepted answer to {@link hitlForm}'s form: an edit becomes
 * `editedAction` with the same tool name (an edit cannot switch tools).
 *
 * @example
 * ```ts
 * await graph.invoke(new Command({ resume: { [it.id!]: hitlDecisions(it.value, task.response) } }), config);
 * ```
 */
export function hitlDecisions(request: HitlRequest, answer: unknown): HitlResponse {
  const given = (answer as { decisions?: unknown } | null)?.decisions;
  if (!Array.isArray(given) || given.length !== request.actionRequests.length) {
    throw new InvalidArgument(`the answer needs ${request.actionRequests.length} decision(s)`);
  }
  return {
    decisions: request.actionRequests.map((action, i): HitlDecision => {
      const d = given[i] as { type: string; args?: Record<string, unknown>; message?: string };
      if (d.type === "edit") return { type: "edit", editedAction: { name: action.name, args: d.args ?? {} } };
      if (d.type === "reject") return d.message === undefined ? { type: "reject" } : { type: "reject", message: d.message };
      if (d.type === "approve") return { type: "approve" };
      throw new InvalidArgument(`unknown HITL decision type ${JSON.stringify(d.type)}`);
    }),
  };
}

/** The `HITLResponse` when the review task ended without an answer: every action is rejected
 * with `why` as the message (a timeout is never an approval). */
export function hitlUnanswered(request: HitlRequest, why: string): HitlResponse {
  return { decisions: request.actionRequests.map(() => ({ type: "reject", message: why })) };
}

type Kind = "human" | "hitl";

/** A pending interrupt and the inloop task that answers it. */
interface Ref {
  it: Interrupt;
  taskId: string;
  kind: Kind;
}

/** The task behind `it`: the one `human()` created, or (for a `HITLRequest`) one created here,
 * idempotently, with the same key rule; `null` for an interrupt inloop does not know. */
async function ensureTask(client: Client, threadId: string, it: Interrupt, timeout: Timeout | undefined): Promise<Ref | null> {
  const id = taskIdOf(it);
  if (id !== null) return { it, taskId: id, kind: "human" };
  if (it.id === undefined || !isHitlRequest(it.value)) return null;
  const form = hitlForm(it.value);
  const task = await client.create({ ...form, key: taskKey(threadId, it.id), ...(timeout !== undefined ? { timeout } : {}) });
  return { it, taskId: task.id, kind: "hitl" };
}

function resumeFor(ref: Ref, task: Task): unknown {
  if (ref.kind === "human") return resumeValue(task);
  const request = ref.it.value as HitlRequest;
  if (task.status === "completed") return hitlDecisions(request, task.response);
  return hitlUnanswered(request, `No decision: the review task ${task.status}${task.cancelReason ? ` (${task.cancelReason})` : ""}`);
}

/** The part of a compiled LangGraph graph the helpers use. */
export interface GraphLike {
  invoke(input: unknown, options?: Record<string, unknown>): Promise<unknown>;
  getState(config: Record<string, unknown>): Promise<{ values: unknown; tasks: ReadonlyArray<{ interrupts: Interrupt[] }> }>;
}

/** A graph run's result: the state, and the interrupts it stopped on. */
export interface GraphResult {
  value: Record<string, unknown>;
  interrupts: Interrupt[];
}

/** Options of {@link invoke} and {@link Resumer}. */
export interface ResumeOptions {
  client?: Client;
  /** Namespace of the resume leases (default `<client namespace>.resumer`). */
  leaseNamespace?: string;
  /** How long a lease holds before another resumer may take over (default 5 minutes). */
  leaseTtl?: Timeout;
  /** Deadline of the review tasks created for `humanInTheLoopMiddleware` requests. */
  reviewTimeout?: Timeout;
}

type Config = Record<string, unknown> & { configurable?: Record<string, unknown> };

function withClient(config: Config, client: Client): Config {
  return { ...config, configurable: { [CLIENT_KEY]: client, ...(config.configurable ?? {}) } };
}

function split(out: unknown): GraphResult {
  const o = (out ?? {}) as Record<string, unknown>;
  const { [INTERRUPT]: its, ...value } = o;
  return { value, interrupts: Array.isArray(its) ? (its as Interrupt[]) : [] };
}

async function pending(graph: GraphLike, config: Config): Promise<GraphResult> {
  const s = await graph.getState(config);
  return { value: (s.values ?? {}) as Record<string, unknown>, interrupts: s.tasks.flatMap((t) => t.interrupts) };
}

function taskIdOf(it: Interrupt): string | null {
  const v = it.value as { inloop?: { task_id?: unknown } } | undefined;
  return typeof v?.inloop?.task_id === "string" ? v.inloop.task_id : null;
}

async function resumeEnded(
  graph: GraphLike,
  client: Client,
  config: Config,
  ended: Array<[Ref, Task]>,
  ns: string,
  ttl: Timeout,
): Promise<{ out: GraphResult | null; taskIds: string[] }> {
  const held: Array<[Ref, Task, Task]> = [];
  for (const [ref, task] of ended) {
    const lease = await acquire(client, task.id, ns, ttl, "Resume the LangGraph thread waiting on this task");
    if (lease !== null) held.push([ref, task, lease]);
  }
  if (held.length === 0) return { out: null, taskIds: [] };
  const resume = Object.fromEntries(held.map(([ref, task]) => [ref.it.id as string, resumeFor(ref, task)]));
  const out = split(await graph.invoke(new Command({ resume }), config));
  for (const [, , lease] of held) await release(client, lease, "langgraph");
  return { out, taskIds: held.map(([, t]) => t.id) };
}

/**
 * Runs a graph to the end, answering its inloop interrupts in this process: whenever it stops
 * on interrupts raised by {@link human} (or by LangChain.js's `humanInTheLoopMiddleware`, whose
 * review tasks are created here, see {@link hitlForm}, with `reviewTimeout`), waits
 * (push-woken) until one of their tasks ends and resumes with
 * `Command({resume: {[interruptId]: outcome}})`. Resolves when the graph ends or
 * stops only on interrupts inloop does not know. If this process dies meanwhile, a
 * {@link Resumer} picks the thread up.
 *
 * @example
 * ```ts
 * const { value } = await invoke(graph, { orderId: "A-1" }, { configurable: { thread_id: "t-1" } });
 * ```
 */
export async function invoke(
  graph: GraphLike,
  input: unknown,
  config: Config,
  options: ResumeOptions = {},
): Promise<GraphResult> {
  const client = options.client ?? defaultClient();
  const ns = options.leaseNamespace ?? `${client.namespace}.resumer`;
  const ttl = options.leaseTtl ?? "5m";
  const cfg = withClient(config, client);
  const threadId = cfg.configurable?.["thread_id"];
  if (threadId === undefined || threadId === null) {
    throw new InvalidArgument("invoke() needs config.configurable.thread_id (and a graph with a checkpointer)");
  }
  let out = split(await graph.invoke(input, cfg));
  for (;;) {
    const refs: Ref[] = [];
    for (const it of out.interrupts) {
      const ref = await ensureTask(client, String(threadId), it, options.reviewTimeout);
      if (ref !== null) refs.push(ref);
    }
    if (refs.length === 0) return out;
    const ac = new AbortController();
    try {
      await Promise.race(refs.map((ref) => client.wait(ref.taskId, { signal: ac.signal })));
    } finally {
      ac.abort();
    }
    const ended: Array<[Ref, Task]> = [];
    for (const ref of refs) {
      const task = await client.get(ref.taskId);
      if (task.status !== "pending") ended.push([ref, task]);
    }
    const r = await resumeEnded(graph, client, cfg, ended, ns, ttl);
    if (r.out !== null) {
      out = r.out;
      continue;
    }
    const ids = new Set(ended.map(([ref]) => ref.it.id));
    while ((await pending(graph, cfg)).interrupts.some((it) => ids.has(it.id))) {
      await new Promise((res) => setTimeout(res, 50));
    }
    out = await pending(graph, cfg);
  }
}

/**
 * Resumes every thread whose inloop task ended (tasks of {@link human} and of
 * `humanInTheLoopMiddleware` reviews), from any process with the graph and its checkpointer. Several resumers may run at once: a lease per answer (an inloop task keyed
 * `inloop-resume:<task id>:<attempt>`, expiring after `leaseTtl`) lets exactly one of them
 * resume the thread for it.
 *
 * @example
 * ```ts
 * const resumer = new Resumer(graph, { client });
 * setInterval(() => void resumer.runOnce(), 1000);
 * ```
 */
export class Resumer {
  readonly #graph: GraphLike;
  readonly #client: Client;
  readonly #ns: string;
  readonly #ttl: Timeout;
  readonly #reviewTimeout: Timeout | undefined;
  readonly #settled = new Set<string>();

  constructor(graph: GraphLike, options: ResumeOptions = {}) {
    this.#graph = graph;
    this.#client = options.client ?? defaultClient();
    this.#ns = options.leaseNamespace ?? `${this.#client.namespace}.resumer`;
    this.#ttl = options.leaseTtl ?? "5m";
    this.#reviewTimeout = options.reviewTimeout;
  }

  /**
   * One pass: resumes each thread whose ended tasks' interrupts are still pending. Resolves
   * to `resumed` (thread id -> the task ids it resumed for) and `failed` (thread id -> the
   * error its resume threw; its leases expire and it is retried after `leaseTtl`).
   *
   * @example
   * ```ts
   * const { resumed, failed } = await new Resumer(graph, { client }).runOnce();
   * ```
   */
  async runOnce(): Promise<{ resumed: Record<string, string[]>; failed: Record<string, string> }> {
    const byThread = new Map<string, Task[]>();
    for (const status of ["completed", "timed_out", "cancelled"] as const) {
      let cursor: string | undefined;
      do {
        const page = await this.#client.list({ status, keyPrefix: KEY_PREFIX, limit: 500, ...(cursor ? { cursor } : {}) });
        for (const t of page.items) {
          const parsed = parseTaskKey(t.key);
          if (parsed !== null && !this.#settled.has(t.id)) byThread.set(parsed[0], [...(byThread.get(parsed[0]) ?? []), t]);
        }
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
    }
    const resumed: Record<string, string[]> = {};
    const failed: Record<string, string> = {};
    for (const [threadId, tasks] of byThread) {
      try {
        const ids = await this.#resumeThread(threadId, tasks);
        if (ids.length > 0) resumed[threadId] = ids;
      } catch (e) {
        failed[threadId] = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      }
    }
    return { resumed, failed };
  }

  async #resumeThread(threadId: string, tasks: Task[]): Promise<string[]> {
    const cfg = withClient({ configurable: { thread_id: threadId } }, this.#client);
    const open = new Map((await pending(this.#graph, cfg)).interrupts.map((it) => [it.id, it]));
    const ended: Array<[Ref, Task]> = [];
    for (const t of tasks) {
      const it = open.get(parseTaskKey(t.key)?.[1]);
      const ref = it === undefined ? null : await ensureTask(this.#client, threadId, it, this.#reviewTimeout);
      if (ref === null || ref.taskId !== t.id) this.#settled.add(t.id); // resumed already, or not ours
      else ended.push([ref, t]);
    }
    if (ended.length === 0) return [];
    const r = await resumeEnded(this.#graph, this.#client, cfg, ended, this.#ns, this.#ttl);
    for (const id of r.taskIds) this.#settled.add(id);
    // New humanInTheLoopMiddleware requests the resume stopped on get their tasks now.
    for (const it of r.out?.interrupts ?? []) await ensureTask(this.#client, threadId, it, this.#reviewTimeout);
    return r.taskIds;
  }
}
