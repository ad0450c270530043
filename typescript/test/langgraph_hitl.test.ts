// LangChain.js's humanInTheLoopMiddleware on a real createAgent with a scripted chat model (no
// network), answered through inloop: the batched request becomes a task whose form offers
// exactly each tool's allowed decisions; the answer goes back as the middleware's decisions.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { BaseChatModel } from "@langchain/core/language_models/chat_models";
import { AIMessage, ToolMessage, type BaseMessage } from "@langchain/core/messages";
import type { ChatResult } from "@langchain/core/outputs";
import { MemorySaver } from "@langchain/langgraph";
import { createAgent, humanInTheLoopMiddleware, tool } from "langchain";
import { z } from "zod";
import { InvalidAnswer, type Client, type Task } from "../src/index.js";
import { Resumer, hitlDecisions, hitlForm, invoke, parseTaskKey, type HitlRequest } from "../src/langgraph.js";
import { scenario, sleep } from "./helpers.js";

/** Calls the tools of its script on the first turn; says "done" once tool results are in. */
class Scripted extends BaseChatModel {
  constructor(private readonly calls: Array<{ name: string; args: Record<string, unknown>; id: string }>) {
    super({});
  }
  _llmType(): string {
    return "scripted";
  }
  override bindTools(): this {
    return this;
  }
  async _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const done = messages.some((m) => ToolMessage.isInstance(m));
    const message = done
      ? new AIMessage("done")
      : new AIMessage({ content: "", tool_calls: this.calls.map((c) => ({ ...c, type: "tool_call" as const })) });
    return { generations: [{ message, text: done ? "done" : "" }] };
  }
}

const thread = (): string => `thread-${randomBytes(6).toString("hex")}`;

async function tasksOf(client: Client, n: number): Promise<Task[]> {
  const until = Date.now() + 20_000;
  for (;;) {
    const { items } = await client.list({ keyPrefix: "langgraph:" });
    if (items.length >= n || Date.now() > until) return items.reverse();
    await sleep(20);
  }
}

type Allowed = Array<"approve" | "edit" | "reject">;

function agent(ran: string[], emailAllowed: Allowed = ["approve", "edit"]) {
  const sendEmail = tool(
    async ({ to, body }: { to: string; body: string }) => {
      ran.push(`send_email ${to} ${body}`);
      return `sent to ${to}`;
    },
    { name: "send_email", description: "Sends an email.", schema: z.object({ to: z.string(), body: z.string() }) },
  );
  const lookup = tool(
    async ({ q }: { q: string }) => {
      ran.push(`lookup ${q}`);
      return `found ${q}`;
    },
    { name: "lookup", description: "Looks something up.", schema: z.object({ q: z.string() }) },
  );
  return createAgent({
    model: new Scripted([
      { name: "send_email", args: { to: "a@x.io", body: "hi" }, id: "c1" },
      { name: "lookup", args: { q: "order A-1" }, id: "c2" },
    ]),
    tools: [sendEmail, lookup],
    middleware: [
      humanInTheLoopMiddleware({
        interruptOn: {
          send_email: {
            allowedDecisions: emailAllowed,
            argsSchema: { type: "object", properties: { to: { type: "string" }, body: { type: "string" } }, required: ["to", "body"] },
          },
          lookup: { allowedDecisions: ["approve", "reject"] },
        },
      }),
    ],
    checkpointer: new MemorySaver(),
  });
}

scenario("langgraph hitl: humanInTheLoopMiddleware requests become a decisions form; an edit runs the edited arguments", async (env) => {
  const client = env.client();
  const ran: string[] = [];
  const graph = agent(ran);
  const tid = thread();
  const run = invoke(graph, { messages: [{ role: "user", content: "mail a, look up A-1" }] }, { configurable: { thread_id: tid } }, { client });
  const [task] = await tasksOf(client, 1);
  assert.ok(task);
  assert.equal(task.title, "Review tool calls: send_email, lookup");
  assert.equal(parseTaskKey(task.key)?.[0], tid);
  const actions = (task.payload as { actions: Array<{ name: string; args: unknown; allowed_decisions: unknown }> }).actions;
  assert.deepEqual(
    actions.map((a) => [a.name, a.args, a.allowed_decisions]),
    [
      ["send_email", { to: "a@x.io", body: "hi" }, ["approve", "edit"]],
      ["lookup", { q: "order A-1" }, ["approve", "reject"]],
    ],
  );
  // Only the decisions each tool allows, one per action, edits checked against argsSchema.
  const refused = [
    { decisions: [{ type: "reject" }, { type: "approve" }] }, // reject is not allowed for send_email
    { decisions: [{ type: "approve" }, { type: "edit", args: { q: "x" } }] }, // nor edit for lookup
    { decisions: [{ type: "approve" }] }, // one decision short
    { decisions: [{ type: "approve" }, { type: "approve" }, { type: "approve" }] },
    { decisions: [{ type: "edit", args: { to: 1 } }, { type: "approve" }] }, // args against argsSchema
    { decisions: [{ type: "respond", message: "x" }, { type: "approve" }] }, // no "respond" in LangChain.js
  ];
  for (const answer of refused) await assert.rejects(client.answer(task.id, answer, { by: "mallory" }), InvalidAnswer);
  await sleep(150);
  assert.deepEqual(ran, []);
  await client.answer(
    task.id,
    { decisions: [{ type: "edit", args: { to: "b@x.io", body: "hello" } }, { type: "approve" }] },
    { by: "bob" },
  );
  const out = await run;
  assert.deepEqual([...ran].sort(), ["lookup order A-1", "send_email b@x.io hello"]);
  const messages = out.value["messages"] as BaseMessage[];
  assert.equal(messages.at(-1)?.content, "done");
  assert.equal((await client.list({ keyPrefix: "langgraph:" })).items.length, 1);
});

interface Stateful {
  getState(config: unknown): Promise<{ tasks: Array<{ name: string; error?: { message?: string }; interrupts: unknown[] }> }>;
}

scenario("langgraph hitl: a timed-out or cancelled review rejects, never approves", async (env) => {
  const client = env.client();
  const ran: string[] = [];
  const graph = agent(ran, ["approve", "edit", "reject"]);
  const config = { configurable: { thread_id: thread() } };
  const run = invoke(graph, { messages: [{ role: "user", content: "go" }] }, config, { client });
  const [task] = await tasksOf(client, 1);
  assert.ok(task);
  await client.cancel(task.id, { by: "ops", reason: "out of hours" });
  const out = await run;
  assert.deepEqual(ran, []);
  const messages = out.value["messages"] as BaseMessage[];
  const rejected = messages.filter((m) => ToolMessage.isInstance(m)).map((m) => String(m.content));
  assert.equal(rejected.length, 2);
  for (const m of rejected) assert.match(m, /No decision: the review task cancelled \(out of hours\)/);
  assert.equal(messages.at(-1)?.content, "done");
  assert.deepEqual((await new Resumer(graph, { client }).runOnce()).resumed, {});

  // A tool whose review does not allow "reject": LangChain.js refuses the rejection, so the
  // thread stays stopped and nothing runs (never an approval).
  const strict = agent(ran, ["approve", "edit"]);
  const cfg2 = { configurable: { thread_id: thread() } };
  const run2 = invoke(strict, { messages: [{ role: "user", content: "go" }] }, cfg2, { client, reviewTimeout: "200ms" });
  await assert.rejects(run2, /not allowed for tool 'send_email'/);
  assert.deepEqual(ran, []);
  const [stuck] = (await (strict as unknown as Stateful).getState(cfg2)).tasks;
  assert.equal(stuck?.name, "HumanInTheLoopMiddleware.after_model");
  assert.match(String(stuck?.error?.message), /not allowed for tool 'send_email'/);
  assert.equal(stuck?.interrupts.length, 1); // still pending
});

test("langgraph hitl: form and decisions round trip (pure)", () => {
  const request: HitlRequest = {
    actionRequests: [
      { name: "refund", args: { amount: 5 }, description: "Refund?" },
      { name: "email", args: { to: "a" } },
    ],
    reviewConfigs: [
      { actionName: "refund", allowedDecisions: ["approve", "reject"] },
      { actionName: "email", allowedDecisions: ["edit", "reject"] },
    ],
  };
  const form = hitlForm(request);
  assert.equal(form.title, "Review tool calls: refund, email");
  const items = (form.responseSchema["properties"] as { decisions: { prefixItems: Array<{ oneOf: Array<{ properties: { type: { const: string } } }> }> } }).decisions.prefixItems;
  assert.deepEqual(items.map((i) => i.oneOf.map((b) => b.properties.type.const)), [["approve", "reject"], ["edit", "reject"]]);
  assert.deepEqual(hitlDecisions(request, { decisions: [{ type: "reject", message: "too much" }, { type: "edit", args: { to: "b" } }] }), {
    decisions: [
      { type: "reject", message: "too much" },
      { type: "edit", editedAction: { name: "email", args: { to: "b" } } },
    ],
  });
  assert.deepEqual(JSON.parse(JSON.stringify(form.responseSchema)), form.responseSchema);
});
