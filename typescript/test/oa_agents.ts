// An OpenAI Agents SDK agent for the adapter tests (imported by the tests and by child
// processes): the SDK's own ScriptedModel (no network) whose responder calls the tools named in
// the prompt, round by round, then reports what the tools returned. Every refund that runs is
// appended to EXECUTED and, if INLOOP_TEST_EFFECTS names a file, to that file (one JSON line
// per side effect, so a test counts them across processes).
import { appendFileSync } from "node:fs";
import { Agent, setTracingDisabled, tool } from "@openai/agents";
import { ScriptedModel, assistantMessage, functionCall, modelResponder, type RecordedModelCall } from "@openai/agents/testing";
import { z } from "zod";

setTracingDisabled(true);

export interface Effect {
  order_id: string;
  amount: number;
}
export const EXECUTED: Effect[] = [];

/** One tool call of the script: [tool name, args, call id]. */
export type Call = [string, Effect, string];

function responder(call: RecordedModelCall): ReturnType<typeof assistantMessage>[] | ReturnType<typeof functionCall>[] {
  const input = call.request.input;
  const items = (Array.isArray(input) ? input : [{ role: "user", content: input }]) as Record<string, unknown>[];
  const done = new Map<string, string>();
  for (const i of items) {
    if (i["type"] === "function_call_result") {
      const out = i["output"] as { text?: string } | string;
      done.set(String(i["callId"]), typeof out === "string" ? out : String(out?.text ?? JSON.stringify(out)));
    }
  }
  const user = items.find((i) => i["role"] === "user");
  const content = user?.["content"];
  const prompt = typeof content === "string" ? content : JSON.stringify(content);
  // The prompt is a JSON list of rounds, each a list of [tool name, args, call id].
  for (const round of JSON.parse(prompt) as Call[][]) {
    if (!round.every(([, , cid]) => done.has(cid))) {
      return round.map(([name, args, cid]) => functionCall(name, args as unknown as Record<string, unknown>, { callId: cid }));
    }
  }
  return [assistantMessage([...done.values()].join("; "))];
}

/** The refunds agent: `refund` needs approval above 100. */
export function makeAgent(): Agent {
  const refund = tool({
    name: "refund",
    description: "Refunds an order.",
    parameters: z.object({ order_id: z.string(), amount: z.number() }),
    needsApproval: async (_ctx, args) => args.amount > 100,
    execute: async ({ order_id, amount }) => {
      const effect = { order_id, amount };
      EXECUTED.push(effect);
      const path = process.env["INLOOP_TEST_EFFECTS"];
      if (path) appendFileSync(path, JSON.stringify(effect) + "\n");
      return `refunded ${amount} on ${order_id}`;
    },
  });
  const model = new ScriptedModel(Array.from({ length: 20 }, () => modelResponder(responder)));
  return new Agent({ name: "refunds", model, tools: [refund] });
}

/** The prompt for a script of rounds of calls. */
export function prompt(...rounds: Call[][]): string {
  return JSON.stringify(rounds);
}
