// A process running a Claude Agent SDK agent (the real SDK and its bundled CLI, against the
// loopback fake Anthropic API of tests/fakes/anthropic_messages.py) whose tool permissions a
// person gives through inloop:
// `node ca_child.js <inloop-url> <namespace> <run-id> <fake-base-url> <effects-file>`; prints
// the agent's final texts as one JSON line. The tool `mcp__shop__refund` appends one JSON line
// to the effects file each time it runs.
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { createSdkMcpServer, query, tool, type SDKUserMessage } from "@anthropic-ai/claude-agent-sdk";
import { z } from "zod";
import { Client } from "../src/index.js";
import { humanPermissions } from "../src/claude-agent.js";

const [url, namespace, runId, baseUrl, effects] = process.argv.slice(2);
if (url === undefined || namespace === undefined || runId === undefined || baseUrl === undefined || effects === undefined) {
  console.error("usage: ca_child.js <inloop-url> <namespace> <run-id> <fake-base-url> <effects-file>");
  process.exit(2);
}

/** What the bundled CLI needs to talk to the fake only (no other traffic, its own HOME). */
export function cliEnv(base: string, home: string): Record<string, string> {
  mkdirSync(home, { recursive: true });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("ANTHROPIC_") && !k.startsWith("CLAUDE")) env[k] = v;
  }
  return {
    ...env,
    ANTHROPIC_BASE_URL: base,
    ANTHROPIC_API_KEY: "sk-ant-test",
    HOME: home,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    DISABLE_TELEMETRY: "1",
    DISABLE_AUTOUPDATER: "1",
    ENABLE_TOOL_SEARCH: "false", // the MCP tool is offered directly, not deferred
  };
}

const refund = tool("refund", "Refunds an order", { order_id: z.string(), amount: z.number() }, async (args) => {
  appendFileSync(effects, JSON.stringify(args) + "\n");
  return { content: [{ type: "text", text: `refunded ${args.amount} on ${args.order_id}` }] };
});

async function* prompt(): AsyncIterable<SDKUserMessage> {
  yield {
    type: "user",
    message: { role: "user", content: "Parcel A-1 arrived broken: refund 500." },
    parent_tool_use_id: null,
  };
}

const client = new Client({ databaseUrl: url, namespace });
const dir = dirname(effects);
const texts: string[] = [];
for await (const m of query({
  prompt: prompt(),
  options: {
    mcpServers: { shop: createSdkMcpServer({ name: "shop", tools: [refund] }) },
    canUseTool: humanPermissions(runId, { client, tools: ["mcp__shop__refund"] }),
    env: cliEnv(baseUrl, join(dir, "home")),
    model: "claude-sonnet-4-5",
    maxTurns: 4,
    cwd: dir,
  },
})) {
  if (m.type === "assistant") {
    for (const b of m.message.content) if (b.type === "text") texts.push(b.text);
  }
}
process.stdout.write(JSON.stringify({ texts, pid: process.pid }) + "\n");
await client.close();
