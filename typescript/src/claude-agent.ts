/**
 * Claude Agent SDK adapter (`inloop/claude-agent`): a person allows or denies the agent's tool
 * calls through inloop.
 *
 * {@link humanPermissions} returns a `canUseTool` callback for `@anthropic-ai/claude-agent-sdk`:
 * every permission request becomes an inloop task (key
 * `claude-agent:{runId}:{digest of tool and input}:{repeat}`) with a typed allow / deny form
 * (an optional edited input and a message), and the callback resolves to the SDK's
 * `PermissionResult`. The wait is durable: if the process dies while waiting, running the same
 * agent again with the same `runId` finds the same task (answered meanwhile, or still pending)
 * instead of asking again, so an allowed tool runs once.
 *
 * @example
 * ```ts
 * import { query } from "@anthropic-ai/claude-agent-sdk";
 * import { humanPermissions } from "inloop/claude-agent";
 *
 * const canUseTool = humanPermissions("ticket-4711", { timeout: "1h", notify: ["slack:#ops"] });
 * for await (const message of query({ prompt, options: { canUseTool, mcpServers: { shop } } })) {
 *   console.log(message);
 * }
 * ```
 * @module
 */

import type { CanUseTool, PermissionResult } from "@anthropic-ai/claude-agent-sdk";
import { argsDigest, checkRunId, noAnswer, waitEnded } from "./adapters.js";
import { Client, defaultClient, type Timeout } from "./client.js";
import { InvalidArgument } from "./errors.js";
import type { JsonSchema, Task } from "./types.js";
import type { Verification, Verifier } from "./verifiers.js";

export { argsDigest } from "./adapters.js";

/** Key prefix of the tasks behind permission requests. */
export const KEY_PREFIX = "claude-agent:";

/**
 * The idempotency key of the task for the `repeat`-th request (0 first) of this tool with this
 * input in the run `runId`.
 *
 * @example
 * ```ts
 * permissionKey("ticket-4711", "Bash", { command: "ls" }, 0); // "claude-agent:ticket-4711:<32 hex>:0"
 * ```
 */
export function permissionKey(runId: string, toolName: string, toolInput: Record<string, unknown>, repeat: number): string {
  const digest = argsDigest({ tool: toolName, input: toolInput });
  return `${KEY_PREFIX}${runId}:${digest.slice(0, 32)}:${repeat}`;
}

/**
 * The answer form: `{ behavior: "allow", updated_input?: {...}, message?: string }` or
 * `{ behavior: "deny", message?: string, interrupt?: boolean }`. `updated_input` replaces the
 * tool's input (offered when `allowEdit`); a denial's message is what the model reads;
 * `interrupt` stops the agent's turn.
 *
 * @example
 * ```ts
 * permissionSchema().oneOf[1].properties.behavior; // { const: "deny" }
 * ```
 */
export function permissionSchema(allowEdit = true): { oneOf: [JsonSchema & { properties: JsonSchema }, JsonSchema & { properties: JsonSchema }] } {
  const allow: JsonSchema = { behavior: { const: "allow" }, message: { type: "string" } };
  if (allowEdit) allow["updated_input"] = { type: "object", title: "Edited input" };
  return {
    oneOf: [
      { type: "object", title: "Allow", properties: allow, required: ["behavior"], additionalProperties: false },
      {
        type: "object",
        title: "Deny",
        properties: {
          behavior: { const: "deny" },
          message: { type: "string", maxLength: 10_000 },
          interrupt: { type: "boolean" },
        },
        required: ["behavior"],
        additionalProperties: false,
      },
    ],
  };
}

/**
 * The SDK's permission result for an ended task: `allow` with the edited input (else the input
 * the task showed) or `deny` with the person's message; a task that timed out, was cancelled or
 * exhausted its verification denies, saying so: never a silent allow.
 *
 * @example
 * ```ts
 * const result = permissionResult(await client.get(taskId));
 * ```
 */
export function permissionResult(task: Task): PermissionResult {
  if (task.status !== "completed") return { behavior: "deny", message: noAnswer(task) };
  const answer = (task.response ?? {}) as Record<string, unknown>;
  if (answer["behavior"] === "allow") {
    const edited = answer["updated_input"];
    const shown = ((task.payload ?? {}) as Record<string, unknown>)["input"];
    const input = (typeof edited === "object" && edited !== null ? edited : shown) as Record<string, unknown>;
    return { behavior: "allow", updatedInput: input };
  }
  const message = typeof answer["message"] === "string" && answer["message"] !== "" ? answer["message"] : null;
  return { behavior: "deny", message: message ?? "A person denied this tool call.", interrupt: answer["interrupt"] === true };
}

/** Options of {@link humanPermissions}. */
export interface HumanPermissionsOptions {
  /** Default: the process-wide client (`defaultClient()`). */
  client?: Client;
  /** The tool names that ask a person; the others are allowed without asking. Default: all. */
  tools?: Iterable<string>;
  /** After this long unanswered the task times out, which denies the call. */
  timeout?: Timeout;
  /** Delivery targets, for example `["slack:#ops"]`. */
  notify?: readonly string[];
  /** Who may answer. */
  assignTo?: readonly string[];
  /** Checked by the core on every answer (see `verifiers`). */
  verification?: Verification;
  /** Judged here (`verifier(payload, answer)`); a rejection sends the answer back to the person. */
  verifier?: Verifier;
  /** Offer `updated_input` in the form (default `true`). */
  allowEdit?: boolean;
  /** The task's title from the tool name and input (default `Allow {tool}?`). */
  title?: (toolName: string, input: Record<string, unknown>) => string;
}

/** The callback {@link humanPermissions} returns: a `CanUseTool`, plus {@link request}. */
export interface HumanPermissions extends CanUseTool {
  readonly runId: string;
  /**
   * Creates (or finds) the task for this request; the next identical request in this run
   * gets the next `repeat`.
   */
  request(toolName: string, input: Record<string, unknown>): Promise<Task>;
}

/**
 * A `canUseTool` callback that asks a person through inloop.
 *
 * `runId` names the agent run (a ticket, an order): the same run asking for the same tool
 * with the same input again (after a restart) finds the same task. `tools`, if given, are the
 * tool names that ask a person (others are allowed without asking); `timeout`, `notify`,
 * `assignTo`, `verification` (the core checks every answer) and `verifier` (run here; a
 * rejection sends the answer back to the person) go to each task. The SDK's abort signal
 * stops the wait (the task stays, for the next run to find).
 *
 * @example
 * ```ts
 * const canUseTool = humanPermissions("ticket-4711", { tools: ["mcp__shop__refund"], timeout: "1h" });
 * const q = query({ prompt, options: { canUseTool, mcpServers: { shop } } });
 * ```
 */
export function humanPermissions(runId: string, options: HumanPermissionsOptions = {}): HumanPermissions {
  const rid = checkRunId(runId);
  const tools = options.tools === undefined ? null : new Set(options.tools);
  const allowEdit = options.allowEdit ?? true;
  const title = options.title ?? ((name: string) => `Allow ${name}?`);
  const seen = new Map<string, number>();
  const client = (): Client => options.client ?? defaultClient();

  const request = async (toolName: string, input: Record<string, unknown>): Promise<Task> => {
    if (typeof toolName !== "string" || toolName === "") throw new InvalidArgument("the tool name must be a non-empty string");
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      throw new InvalidArgument(`tool input must be a JSON object, not ${Array.isArray(input) ? "an array" : typeof input}`);
    }
    const base = permissionKey(rid, toolName, input, 0).replace(/:0$/, "");
    const repeat = seen.get(base) ?? 0; // counted before any await: concurrent asks get their own
    seen.set(base, repeat + 1);
    return client().create({
      title: title(toolName, input),
      payload: { tool: toolName, input, input_digest: argsDigest(input), run_id: rid, repeat },
      responseSchema: permissionSchema(allowEdit),
      key: permissionKey(rid, toolName, input, repeat),
      timeout: options.timeout,
      notify: options.notify,
      assignTo: options.assignTo,
      verification: options.verification,
    });
  };

  const callback = async (toolName: string, input: Record<string, unknown>, ctx?: { signal?: AbortSignal }): Promise<PermissionResult> => {
    if (tools !== null && !tools.has(toolName)) return { behavior: "allow", updatedInput: input };
    const task = await request(toolName, input);
    return permissionResult(await waitEnded(client(), task.id, options.verifier, ctx?.signal));
  };
  return Object.assign(callback, { runId: rid, request }) as HumanPermissions;
}
