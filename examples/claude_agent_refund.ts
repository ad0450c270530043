// A Claude Agent SDK (@anthropic-ai/claude-agent-sdk) agent whose refund tool needs a person's
// permission (`canUseTool`). Build with `cd typescript && npm run build`, run
// `node typescript/dist/examples/claude_agent_refund.js` with ANTHROPIC_API_KEY set (or
// ANTHROPIC_BASE_URL pointing at a compatible server), then answer from a second terminal:
//   .venv/bin/inloop tasks list
//   .venv/bin/inloop tasks answer ID '{"behavior": "allow"}'
//   #   or '{"behavior": "allow", "updated_input": {"order_id": "A-1", "amount": 250}}'
//   #   or '{"behavior": "deny", "message": "not eligible"}'   (the model reads the message)
// Kill it while it waits and run it again: the same request finds the same task (answered
// meanwhile, or still waiting), so the person is asked once and the refund runs once.
import { createSdkMcpServer, query, tool, type SDKUserMessage } from "@anthropic-ai/claude-agent-sdk";
import { z } from "zod";
import { humanPermissions } from "inloop/claude-agent";

const refund = tool("refund", "Refunds an order", { order_id: z.string(), amount: z.number() }, async (args) => ({
  content: [{ type: "text", text: `refunded ${args.amount} EUR on order ${args.order_id}` }],
}));

async function* prompt(): AsyncIterable<SDKUserMessage> {
  const text = "Customer says parcel A-1 arrived broken; refund 500 EUR with the refund tool.";
  yield { type: "user", message: { role: "user", content: text }, parent_tool_use_id: null };
}

console.log("agent: refunding order A-1; a person allows it with");
console.log("         .venv/bin/inloop tasks list");
console.log("         .venv/bin/inloop tasks answer ID '{\"behavior\": \"allow\"}'");
for await (const message of query({
  prompt: prompt(),
  options: {
    mcpServers: { shop: createSdkMcpServer({ name: "shop", tools: [refund] }) },
    canUseTool: humanPermissions("refund-order-A-1", { tools: ["mcp__shop__refund"], timeout: "4h" }),
    maxTurns: 4,
  },
})) {
  if (message.type === "assistant") {
    for (const block of message.message.content) if (block.type === "text") console.log(`agent: ${block.text}`);
  }
}
process.exit(0);
