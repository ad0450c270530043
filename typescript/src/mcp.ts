/**
 * MCP elicitation bridge (`inloop/mcp`): an MCP server's `elicitation/create` request, sent to
 * a client built on `@modelcontextprotocol/sdk`, is answered by a person through inloop.
 *
 * The server's message becomes the task's title and its requested schema the answer's
 * `content`; the person answers `{"action": "accept", "content": {...}}` or
 * `{"action": "decline"}` (the core validates the answer against that schema). A task that is
 * cancelled or times out returns `cancel`. The same form as Python's
 * `inloop.mcp.elicitation_handler`; the MCP server with the `ask_human` tool is `inloop mcp`.
 *
 * @example
 * ```ts
 * import { Client as McpClient } from "@modelcontextprotocol/sdk/client/index.js";
 * import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
 * import { elicitationHandler } from "inloop/mcp";
 *
 * const mcp = new McpClient({ name: "agent", version: "1.0.0" }, { capabilities: { elicitation: {} } });
 * mcp.setRequestHandler(ElicitRequestSchema, elicitationHandler({ timeout: "10m" }));
 * ```
 * @module
 */

import { ErrorCode, McpError, type ElicitRequest, type ElicitResult } from "@modelcontextprotocol/sdk/types.js";
import { Client, defaultClient, type Timeout } from "./client.js";
import { InloopError } from "./errors.js";

/** `requested_by` of the tasks the bridge creates. */
export const REQUESTED_BY = "mcp-elicitation";

/** The params of an `elicitation/create` request (form or URL mode). */
export type ElicitParams = ElicitRequest["params"];

/** Options of {@link elicitationHandler}. */
export interface ElicitationOptions {
  /** The inloop client (default: the process-wide one for `namespace`). */
  client?: Client;
  /** Namespace of the tasks when `client` is not given. */
  namespace?: string;
  /** Deadline of each task; when it passes the server gets `cancel`. */
  timeout?: Timeout;
  /** Channels to notify (`email:...`, `slack:...`, webhook URLs). */
  notify?: readonly string[];
  /** Who may answer (people or groups). */
  assignTo?: readonly string[];
  /** An idempotency key for a request (default: none, a new task each time). */
  key?: (params: ElicitParams) => string | undefined;
}

/** The extra argument the SDK passes to request handlers: only its abort signal is used. */
export interface HandlerExtra {
  signal?: AbortSignal;
}

/**
 * The inloop form for an elicitation: title, payload and the answer's JSON Schema (the same
 * one Python's bridge builds).
 *
 * @example
 * ```ts
 * elicitationForm({ message: "Where to?", requestedSchema: { type: "object", properties: {} } });
 * // { title: "Where to?", payload: { message: "Where to?" }, responseSchema: { type: "object", ... } }
 * ```
 */
export function elicitationForm(params: ElicitParams): {
  title: string;
  payload: Record<string, unknown>;
  responseSchema: Record<string, unknown>;
} {
  if (typeof params?.message !== "string" || params.message.trim() === "") {
    throw new McpError(ErrorCode.InvalidParams, "elicitation/create needs a non-empty message");
  }
  const requested = "requestedSchema" in params ? params.requestedSchema : undefined;
  const content: Record<string, unknown> =
    typeof requested === "object" && requested !== null && !Array.isArray(requested)
      ? { ...(requested as Record<string, unknown>) }
      : { type: "object" };
  const payload: Record<string, unknown> = { message: params.message };
  if ("url" in params && typeof params.url === "string") payload["url"] = params.url;
  return {
    title: params.message,
    payload,
    responseSchema: {
      type: "object",
      properties: {
        action: { type: "string", enum: ["accept", "decline"] },
        content,
      },
      required: ["action"],
    },
  };
}

/**
 * A handler for `elicitation/create` requests, for `mcpClient.setRequestHandler(ElicitRequestSchema, ...)`:
 * creates the inloop task, waits (push-woken) for the person and returns the elicitation
 * result. An inloop error (a schema the core refuses, a database problem) becomes a JSON-RPC
 * `InvalidParams` error; if the server cancels its request, the task is cancelled too.
 *
 * @example
 * ```ts
 * mcp.setRequestHandler(ElicitRequestSchema, elicitationHandler({ client, timeout: "10m", notify: ["email:ops@example.com"] }));
 * ```
 */
export function elicitationHandler(
  options: ElicitationOptions = {},
): (request: ElicitRequest, extra?: HandlerExtra) => Promise<ElicitResult> {
  return async (request, extra) => {
    const params = request.params;
    const form = elicitationForm(params);
    const client = options.client ?? defaultClient(options.namespace);
    const key = options.key?.(params);
    let taskId: string | undefined;
    try {
      const created = await client.create({
        ...form,
        requestedBy: REQUESTED_BY,
        ...(key !== undefined ? { key } : {}),
        ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
        ...(options.notify !== undefined ? { notify: options.notify } : {}),
        ...(options.assignTo !== undefined ? { assignTo: options.assignTo } : {}),
      });
      taskId = created.id;
      const task = await client.wait(created.id, extra?.signal ? { signal: extra.signal } : {});
      if (task.status !== "completed") return { action: "cancel" };
      const answer = (task.response ?? {}) as { action?: string; content?: Record<string, unknown> };
      if (answer.action !== "accept") return { action: "decline" };
      const urlMode = "url" in params && typeof params.url === "string";
      return urlMode || answer.content === undefined
        ? { action: "accept" }
        : { action: "accept", content: answer.content as ElicitResult["content"] };
    } catch (e) {
      if (extra?.signal?.aborted && taskId !== undefined) {
        // The server gave up on its request: nobody needs the answer any more.
        await client.cancel(taskId, { by: REQUESTED_BY, reason: "the MCP server cancelled the elicitation" }).catch(() => undefined);
        throw e;
      }
      if (e instanceof InloopError) throw new McpError(ErrorCode.InvalidParams, `${e.name}: ${e.message}`);
      throw e;
    }
  };
}
