/**
 * OpenAI Agents SDK adapter (`inloop/openai-agents`): a person approves or rejects the tool
 * calls that need approval.
 *
 * Tools with `needsApproval` interrupt a run; each interruption becomes an inloop task (key
 * `openai-agents:{runId}:{callId}`) and the run's serialized `RunState` is stored in inloop (a
 * record task), so the process that asked may exit or die: any process resumes the run once
 * people answered, and an approved tool runs once.
 *
 * @example
 * ```ts
 * import { Agent, tool } from "@openai/agents";
 * import { z } from "zod";
 * import { run } from "inloop/openai-agents";
 *
 * const refund = tool({
 *   name: "refund", description: "Refunds an order",
 *   parameters: z.object({ order_id: z.string(), amount: z.number() }),
 *   needsApproval: async (_ctx, { amount }) => amount > 100,
 *   execute: async ({ order_id, amount }) => `refunded ${amount} on ${order_id}`,
 * });
 * const agent = new Agent({ name: "refunds", tools: [refund] });
 * const result = await run(agent, "Refund order A-1", { runId: "order-A-1", timeout: "4h" });
 * console.log(result?.finalOutput);
 * // if that process died while waiting, any other one continues the run:
 * await run(agent, null, { runId: "order-A-1" });
 * ```
 * @module
 */

import { hostname } from "node:os";
import {
  RunState,
  run as sdkRun,
  type Agent,
  type AgentInputItem,
  type NonStreamRunOptions,
  type RunResult,
  type RunToolApprovalItem,
} from "@openai/agents";
import { ArgumentsChanged, argsDigest, checkRunId, noAnswer, waitAll } from "./adapters.js";
import { Client, defaultClient, type Timeout } from "./client.js";
import { Conflict, InvalidArgument, NotFound } from "./errors.js";
import type { JsonSchema, Task } from "./types.js";
import type { Verification, Verifier } from "./verifiers.js";

export { ArgumentsChanged, argsDigest } from "./adapters.js";

/** Key prefix of the tasks behind tool calls. */
export const KEY_PREFIX = "openai-agents:";
/** Key prefix of the record tasks holding a stopped run's `RunState`. */
export const RECORD_PREFIX = "openai-agents-run:";
const RECORD_SCHEMA: JsonSchema = { type: "object" };
const MAX_ROUNDS = 1000;

// Any agent, any context: the adapter only moves the state between processes.
type AnyAgent = Agent<any, any>;
type AnyResult = RunResult<any, AnyAgent>;
type AnyState = RunState<any, AnyAgent>;
/** Options passed on to the SDK's `run(agent, input, options)` (not streamed). */
export type SdkRunOptions = NonStreamRunOptions<any, AnyAgent>;

/**
 * The idempotency key of the task for one tool call of one run.
 *
 * @example
 * ```ts
 * callKey("order-A-1", "call_9"); // "openai-agents:order-A-1:call_9"
 * ```
 */
export function callKey(runId: string, callId: string): string {
  return `${KEY_PREFIX}${runId}:${callId}`;
}

/**
 * The key of the record task holding the run's `RunState` for its `round`-th stop.
 *
 * @example
 * ```ts
 * recordKey("order-A-1", 1); // "openai-agents-run:order-A-1:1"
 * ```
 */
export function recordKey(runId: string, round: number): string {
  return `${RECORD_PREFIX}${runId}:${round}`;
}

/**
 * The form of an approval: approve or reject, each with an optional reason. A rejection's
 * reason is what the model reads as the tool's result.
 *
 * @example
 * ```ts
 * approvalSchema().properties.decision; // { enum: ["approve", "reject"], title: "Decision" }
 * ```
 */
export function approvalSchema(): {
  type: "object";
  properties: { decision: JsonSchema; reason: JsonSchema };
  required: string[];
  additionalProperties: false;
} {
  return {
    type: "object",
    properties: {
      decision: { enum: ["approve", "reject"], title: "Decision" },
      reason: { type: "string", maxLength: 10_000, title: "Reason" },
    },
    required: ["decision"],
    additionalProperties: false,
  };
}

function recordNamespace(client: Client, override: string | undefined): string {
  return override ?? `${client.namespace}.runs`;
}

function argumentsOf(item: RunToolApprovalItem): unknown {
  const raw = item.arguments;
  if (raw === undefined || raw === null || raw === "") return {};
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw; // not JSON: shown as the text the model produced
  }
}

function callIdOf(item: RunToolApprovalItem): string {
  const raw = item.rawItem as { callId?: unknown; id?: unknown };
  const cid = typeof raw.callId === "string" && raw.callId !== "" ? raw.callId : raw.id;
  if (typeof cid !== "string" || cid === "") {
    throw new InvalidArgument(`the interruption for tool ${JSON.stringify(item.name)} has no call id`);
  }
  return cid;
}

function toolOf(item: RunToolApprovalItem): string {
  return item.toolName ?? item.name ?? "tool";
}

/**
 * Applies ended tasks to the run's pending interruptions: an accepted `approve` approves the
 * call, `reject` rejects it with the person's reason as the message the model reads, and a
 * task that ended without an answer (timed out, cancelled, verification exhausted) rejects it
 * saying so: never a silent approval. Throws {@link ArgumentsChanged} if a call's arguments are
 * not the ones its task showed, `NotFound` if an interruption has no task.
 *
 * @example
 * ```ts
 * const state = await RunState.fromString(agent, text);
 * decide(state, { call_9: await client.get(taskId) });
 * const result = await run(agent, state);
 * ```
 */
export function decide(state: AnyState, tasks: Readonly<Record<string, Task>>): void {
  for (const item of state.getInterruptions()) {
    const cid = callIdOf(item);
    const task = Object.prototype.hasOwnProperty.call(tasks, cid) ? tasks[cid] : undefined;
    if (task === undefined) throw new NotFound(`no inloop task for the tool call ${cid} (${toolOf(item)})`);
    const args = argumentsOf(item);
    const payload = (task.payload ?? {}) as Record<string, unknown>;
    const shown = payload["args_digest"];
    if (shown !== argsDigest(args) || argsDigest(payload["args"] ?? null) !== argsDigest(args)) {
      throw new ArgumentsChanged(
        `tool call ${cid} (${toolOf(item)}) has other arguments than the ones task ${task.id} asked about; the decision does not apply`,
        { details: { task_id: task.id, approved_digest: shown } },
      );
    }
    const response = (task.response ?? {}) as Record<string, unknown>;
    if (task.status === "completed" && response["decision"] === "approve") {
      state.approve(item);
    } else if (task.status === "completed") {
      const reason = typeof response["reason"] === "string" && response["reason"] !== "" ? response["reason"] : null;
      state.reject(item, { message: reason ?? "A person rejected this tool call." });
    } else {
      state.reject(item, { message: noAnswer(task) });
    }
  }
}

/** Options of {@link PendingRun.resume}. */
export interface ResumeOptions {
  /** Wait for the people's decisions (default). `false`: resolve `null` while some are pending. */
  wait?: boolean;
  /** Judges each answer here (`verifier(payload, answer)`); a rejection goes back to the person. */
  verifier?: Verifier;
  /** Passed on to the SDK's `run`. */
  runOptions?: SdkRunOptions;
}

/**
 * A run stopped on interruptions: its serialized `RunState`, its round (1 for the first stop,
 * 2 for the next, ...) and the inloop task of each call, by call id. Stored in a record task
 * (key `openai-agents-run:{runId}:{round}`, namespace `{namespace}.runs`), so any process can
 * {@link PendingRun.load} it by run id.
 *
 * @example
 * ```ts
 * const pending = await PendingRun.load("order-A-1", { client });
 * const result = await pending.resume(agent);
 * ```
 */
export class PendingRun {
  constructor(
    readonly runId: string,
    readonly round: number,
    /** The serialized `RunState` (`JSON.parse(state.toString())`). */
    readonly state: unknown,
    /** Each call's task id, by call id. */
    readonly taskIds: Readonly<Record<string, string>>,
    /** The id of the record task. */
    readonly recordId: string,
    readonly client: Client,
  ) {}

  /** The current state of each call's task, by call id. */
  async tasks(): Promise<Record<string, Task>> {
    const out: Record<string, Task> = {};
    for (const [cid, id] of Object.entries(this.taskIds)) out[cid] = await this.client.get(id);
    return out;
  }

  /**
   * Waits, push-woken, until every task ended (judging answers with `verifier` if given);
   * returns them by call id.
   */
  async wait(options: { verifier?: Verifier } = {}): Promise<Record<string, Task>> {
    const entries = Object.entries(this.taskIds);
    const ended = await waitAll(
      this.client,
      entries.map(([, id]) => id),
      options.verifier,
    );
    return Object.fromEntries(entries.map(([cid], i) => [cid, ended[i] as Task]));
  }

  /**
   * Continues the run with the people's decisions: at most once across all processes.
   *
   * Waits for the tasks (`wait: false`: `null` while some are pending), claims this round
   * (answers the record task: compare-and-set in the core, so a second resumer gets `null`),
   * applies the decisions ({@link decide}) and calls the SDK's `run(agent, state, runOptions)`.
   * Claiming first means a crash during that run is not retried: approved tools never run
   * twice. The result may stop on new interruptions: hand it to {@link requestApprovals}
   * ({@link run} does all of this in a loop).
   *
   * @example
   * ```ts
   * const pending = await PendingRun.load("order-A-1");
   * const result = await pending.resume(agent);
   * ```
   */
  async resume(agent: AnyAgent, options: ResumeOptions = {}): Promise<AnyResult | null> {
    let tasks: Record<string, Task>;
    if (options.wait ?? true) {
      tasks = await this.wait({ verifier: options.verifier });
    } else {
      tasks = await this.tasks();
      if (Object.values(tasks).some((t) => t.status === "pending")) return null;
    }
    const state = await RunState.fromString(agent, JSON.stringify(this.state));
    decide(state, tasks);
    const holder = `${hostname()}:${process.pid}`;
    try {
      await this.client.answer(this.recordId, { resumed_by: holder }, { by: holder, channel: "openai-agents" });
    } catch (e) {
      if (e instanceof Conflict) return null;
      throw e;
    }
    return sdkRun(agent, state, options.runOptions);
  }

  /**
   * The newest stop of the run `runId` that nobody resumed yet (from any process on the same
   * database or server); `NotFound` if there is none.
   *
   * @example
   * ```ts
   * const pending = await PendingRun.load("order-A-1", { client });
   * ```
   */
  static async load(runId: string, options: { client?: Client; recordNamespace?: string } = {}): Promise<PendingRun> {
    const c = options.client ?? defaultClient();
    const found = await latest(c, checkRunId(runId), options.recordNamespace);
    if (found === null || found.status !== "pending") {
      const ns = recordNamespace(c, options.recordNamespace);
      throw new NotFound(`no OpenAI Agents run ${JSON.stringify(runId)} waiting in namespace ${ns}`);
    }
    return PendingRun.fromRecord(found, c);
  }

  /** @internal */
  static fromRecord(record: Task, client: Client): PendingRun {
    const p = record.payload as { run_id: string; round: number; state: unknown; tasks: Record<string, string> };
    return new PendingRun(p.run_id, p.round, p.state, { ...p.tasks }, record.id, client);
  }
}

/** The record of the run's newest round, or `null` (rounds are 1, 2, ...). */
async function latest(client: Client, runId: string, override: string | undefined): Promise<Task | null> {
  const ns = recordNamespace(client, override);
  let found: Task | null = null;
  for (let n = 1; n <= MAX_ROUNDS; n++) {
    let record: Task;
    try {
      record = await client.getByKey(recordKey(runId, n), ns);
    } catch (e) {
      if (e instanceof NotFound) return found;
      throw e;
    }
    if (record.namespace !== ns) return found; // remote mode looks in the key's namespace only
    found = record;
  }
  return found;
}

/** What each task gets: options of {@link requestApprovals} and {@link run}. */
export interface ApprovalOptions {
  /** The run (a ticket, an order): names its tasks and its record. */
  runId: string;
  /** Default: the process-wide client (`defaultClient()`). */
  client?: Client;
  /** After this long unanswered a task times out, which rejects the call (never approves it). */
  timeout?: Timeout;
  /** Delivery targets, for example `["slack:#refunds"]`. */
  notify?: readonly string[];
  /** Who may answer. */
  assignTo?: readonly string[];
  /** Checked by the core on every answer (see `verifiers`). */
  verification?: Verification;
  /** The records' namespace (default `{client.namespace}.runs`). */
  recordNamespace?: string;
}

function requestOf(runId: string, item: RunToolApprovalItem): { title: string; payload: Record<string, unknown> } {
  const args = argumentsOf(item);
  const tool = toolOf(item);
  const payload = {
    tool,
    args,
    args_digest: argsDigest(args),
    call_id: callIdOf(item),
    agent: item.agent.name,
    run_id: runId,
  };
  return { title: `Approve ${tool}?`, payload };
}

/**
 * Hands a run that stopped on interruptions to people: one task per tool call (key
 * `openai-agents:{runId}:{callId}`, an approve / reject form bound to the SHA-256 of the exact
 * arguments shown) and a record of the serialized `RunState` so any process can resume it.
 * `timeout`, `notify`, `assignTo` and `verification` go to each task. Idempotent: asking again
 * for the same stop returns the same tasks and record.
 *
 * @example
 * ```ts
 * const result = await run(agent, "Refund order A-1"); // the SDK's run
 * if (result.interruptions.length > 0) {
 *   const pending = await requestApprovals(result, { runId: "order-A-1" });
 * }
 * ```
 */
export async function requestApprovals(result: AnyResult, options: ApprovalOptions): Promise<PendingRun> {
  const rid = checkRunId(options?.runId);
  const interruptions = result.interruptions ?? [];
  if (interruptions.length === 0) {
    throw new InvalidArgument("requestApprovals() takes a run that stopped on interruptions");
  }
  const c = options.client ?? defaultClient();
  const taskIds: Record<string, string> = {};
  for (const item of interruptions) {
    const { title, payload } = requestOf(rid, item);
    const cid = payload["call_id"] as string;
    const task = await c.create({
      title,
      payload,
      responseSchema: approvalSchema(),
      key: callKey(rid, cid),
      timeout: options.timeout,
      notify: options.notify,
      assignTo: options.assignTo,
      verification: options.verification,
    });
    taskIds[cid] = task.id;
  }
  const last = await latest(c, rid, options.recordNamespace);
  if (last !== null && sameTasks((last.payload as { tasks?: unknown }).tasks, taskIds)) {
    return PendingRun.fromRecord(last, c); // this very stop, recorded before
  }
  const round = last === null ? 1 : Number((last.payload as { round: number }).round) + 1;
  const record = await c.create({
    title: "OpenAI Agents run waiting for people",
    payload: { run_id: rid, round, state: JSON.parse(result.state.toString()) as unknown, tasks: taskIds },
    responseSchema: RECORD_SCHEMA,
    key: recordKey(rid, round),
    namespace: recordNamespace(c, options.recordNamespace),
  });
  return PendingRun.fromRecord(record, c);
}

function sameTasks(stored: unknown, ids: Record<string, string>): boolean {
  if (typeof stored !== "object" || stored === null) return false;
  const s = stored as Record<string, unknown>;
  const a = Object.keys(s).sort();
  const b = Object.keys(ids).sort();
  return a.length === b.length && a.every((k, i) => k === b[i] && s[k] === ids[k]);
}

/** Options of {@link run}. */
export interface RunOptions extends ApprovalOptions {
  /** Judges each answer here (`verifier(payload, answer)`); a rejection goes back to the person. */
  verifier?: Verifier;
  /** Passed on to the SDK's `run` (not streamed). */
  runOptions?: SdkRunOptions;
}

/**
 * Runs the agent until it ends, asking people through inloop whenever tools need approval.
 *
 * If the run `runId` is waiting (it stopped earlier, in this process or one that exited or
 * died), it continues from there and `input` is ignored (pass `null`); if its last stop was
 * already resumed it throws `Conflict` (a new run needs a new `runId`); otherwise it starts
 * with the SDK's `run(agent, input, runOptions)`. At every stop on interruptions it calls
 * {@link requestApprovals}, waits, push-woken, for the people's decisions (an answer the
 * core's `verification` or your `verifier` rejects goes back to the person and the run keeps
 * waiting) and resumes ({@link PendingRun.resume}). Resolves to the final `RunResult`, or
 * `null` if another process resumed this run meanwhile.
 *
 * @example
 * ```ts
 * const result = await run(agent, "Refund order A-1", {
 *   runId: "order-A-1", timeout: "4h", notify: ["slack:#refunds"],
 * });
 * ```
 */
export async function run(
  agent: AnyAgent,
  input: string | AgentInputItem[] | null,
  options: RunOptions,
): Promise<AnyResult | null> {
  const rid = checkRunId(options?.runId);
  const c = options.client ?? defaultClient();
  const opts = { ...options, client: c };
  const last = await latest(c, rid, options.recordNamespace);
  let result: AnyResult | null;
  if (last !== null && last.status === "pending") {
    result = await PendingRun.fromRecord(last, c).resume(agent, opts);
  } else if (last !== null) {
    // Its last stop was claimed: the run went on (or is going on) elsewhere. Starting it again
    // could repeat approved side effects, so this is refused.
    throw new Conflict(
      `the OpenAI Agents run ${JSON.stringify(rid)} was already resumed after its stop ` +
        `${String((last.payload as { round?: unknown }).round)}; use a new runId for a new run`,
      { details: { record_id: last.id, resumed_by: last.answeredBy } },
    );
  } else if (input === null || input === undefined) {
    throw new NotFound(`no OpenAI Agents run ${JSON.stringify(rid)} is waiting, and no input to start one`);
  } else {
    result = await sdkRun(agent, input, options.runOptions);
  }
  while (result !== null && result.interruptions.length > 0) {
    const pending = await requestApprovals(result, opts);
    result = await pending.resume(agent, opts);
  }
  return result;
}
