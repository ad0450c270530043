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

import { hostname } from "node:os";
import { Command, INTERRUPT, getConfig, interrupt, isGraphInterrupt, type Interrupt } from "@langchain/langgraph";
import { Client, defaultClient, type Timeout } from "./client.js";
import { Cancelled, Conflict, InvalidArgument, TimedOut } from "./errors.js";
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

const holder = `resumer:${hostname()}:${process.pid}`;

async function acquire(client: Client, taskId: string, ns: string, ttl: Timeout): Promise<Task | null> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const lease = await client.create({
      title: "Resume the LangGraph thread waiting on this task",
      payload: { task_id: taskId, attempt },
      responseSchema: { type: "object" },
      key: `inloop-resume:${taskId}:${attempt}`,
      timeout: ttl,
      namespace: ns,
    });
    if (lease.created) return lease;
    if (lease.status === "completed") return null;
    if (lease.status === "pending" && (lease.deadline === null || lease.deadline.getTime() > Date.now())) return null;
  }
  throw new Error(`gave up leasing the resume of task ${taskId}`);
}

async function resumeEnded(
  graph: GraphLike,
  client: Client,
  config: Config,
  ended: Array<[Interrupt, Task]>,
  ns: string,
  ttl: Timeout,
): Promise<{ out: GraphResult | null; taskIds: string[] }> {
  const held: Array<[Interrupt, Task, Task]> = [];
  for (const [it, task] of ended) {
    const lease = await acquire(client, task.id, ns, ttl);
    if (lease !== null) held.push([it, task, lease]);
  }
  if (held.length === 0) return { out: null, taskIds: [] };
  const resume = Object.fromEntries(held.map(([it, task]) => [it.id as string, resumeValue(task)]));
  const out = split(await graph.invoke(new Command({ resume }), config));
  for (const [, , lease] of held) {
    try {
      await client.answer(lease.id, { resumed: true }, { by: holder, channel: "langgraph" });
    } catch (e) {
      if (!(e instanceof Conflict)) throw e;
    }
  }
  return { out, taskIds: held.map(([, t]) => t.id) };
}

/**
 * Runs a graph to the end, answering its inloop interrupts in this process: whenever it stops
 * on interrupts raised by {@link human}, waits (push-woken) until one of their tasks ends and
 * resumes with `Command({resume: {[interruptId]: outcome}})`. Resolves when the graph ends or
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
  let out = split(await graph.invoke(input, cfg));
  for (;;) {
    const refs = out.interrupts.flatMap((it) => {
      const id = taskIdOf(it);
      return id === null ? [] : [[it, id] as const];
    });
    if (refs.length === 0) return out;
    const ac = new AbortController();
    try {
      await Promise.race(refs.map(([, id]) => client.wait(id, { signal: ac.signal })));
    } finally {
      ac.abort();
    }
    const ended: Array<[Interrupt, Task]> = [];
    for (const [it, id] of refs) {
      const task = await client.get(id);
      if (task.status !== "pending") ended.push([it, task]);
    }
    const r = await resumeEnded(graph, client, cfg, ended, ns, ttl);
    if (r.out !== null) {
      out = r.out;
      continue;
    }
    const ids = new Set(ended.map(([it]) => it.id));
    while ((await pending(graph, cfg)).interrupts.some((it) => ids.has(it.id))) {
      await new Promise((res) => setTimeout(res, 50));
    }
    out = await pending(graph, cfg);
  }
}

/**
 * Resumes every thread whose inloop task ended, from any process with the graph and its
 * checkpointer. Several resumers may run at once: a lease per answer (an inloop task keyed
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
  readonly #settled = new Set<string>();

  constructor(graph: GraphLike, options: ResumeOptions = {}) {
    this.#graph = graph;
    this.#client = options.client ?? defaultClient();
    this.#ns = options.leaseNamespace ?? `${this.#client.namespace}.resumer`;
    this.#ttl = options.leaseTtl ?? "5m";
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
    {
      const cfg = withClient({ configurable: { thread_id: threadId } }, this.#client);
      const open = new Map((await pending(this.#graph, cfg)).interrupts.map((it) => [it.id, it]));
      const ended: Array<[Interrupt, Task]> = [];
      for (const t of tasks) {
        const it = open.get(parseTaskKey(t.key)?.[1]);
        if (it === undefined || taskIdOf(it) !== t.id) this.#settled.add(t.id);
        else ended.push([it, t]);
      }
      if (ended.length === 0) return [];
      const r = await resumeEnded(this.#graph, this.#client, cfg, ended, this.#ns, this.#ttl);
      for (const id of r.taskIds) this.#settled.add(id);
      return r.taskIds;
    }
  }
}
