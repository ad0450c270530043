// The MCP elicitation bridge (inloop/mcp) driven by the SDK's own client, talking over stdio
// to a real MCP server (the SDK's McpServer in another process) whose tools elicit: the
// person's accept / decline, a cancelled task, and a server that gives up on its request.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client as McpClient } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Client, Task } from "../src/index.js";
import { REQUESTED_BY, elicitationHandler } from "../src/mcp.js";
import { scenario, sleep } from "./helpers.js";

const SERVER = fileURLToPath(new URL("./mcp_elicit_server.js", import.meta.url));
/** The Python SDK's counterpart (python/tests/mcp_elicit_server.py), for the cross-SDK case. */
const PY_SERVER = fileURLToPath(new URL("../../../python/tests/mcp_elicit_server.py", import.meta.url));
const PYTHON = process.env["INLOOP_PYTHON"] || "python3";

async function connect(
  inloop: Client,
  command: string = process.execPath,
  args: string[] = [SERVER],
  key?: () => string,
): Promise<McpClient> {
  const mcp = new McpClient({ name: "inloop-test", version: "1.0.0" }, { capabilities: { elicitation: {} } });
  mcp.setRequestHandler(ElicitRequestSchema, elicitationHandler({ client: inloop, timeout: "10m", ...(key ? { key } : {}) }));
  await mcp.connect(new StdioClientTransport({ command, args, stderr: "ignore" }));
  return mcp;
}

async function onePending(inloop: Client): Promise<Task> {
  for (let i = 0; i < 400; i++) {
    const page = await inloop.list({ status: "pending" });
    if (page.items.length > 0) {
      assert.equal(page.items.length, 1);
      return page.items[0]!;
    }
    await sleep(25);
  }
  throw new Error("the bridge created no task");
}

function text(r: unknown): string {
  const c = (r as CallToolResult).content[0];
  assert.ok(c !== undefined && c.type === "text");
  return c.text;
}

for (const choice of ["accept", "decline", "cancel"] as const) {
  scenario(`mcp elicitation bridge: ${choice}`, async (env) => {
    const inloop = env.client();
    const mcp = await connect(inloop);
    try {
      const call = mcp.callTool({ name: "ship", arguments: {} });
      const task = await onePending(inloop);
      assert.equal(task.title, "Where should we ship order A-1?");
      assert.equal(task.requestedBy, REQUESTED_BY);
      assert.deepEqual(task.payload, { message: "Where should we ship order A-1?" });
      const schema = task.responseSchema as { properties: { content: { properties: Record<string, unknown> } } };
      assert.deepEqual(Object.keys(schema.properties.content.properties).sort(), ["address", "express"]);
      if (choice === "accept") {
        // The core checks the content against the server's schema before anyone sees it.
        await assert.rejects(inloop.answer(task.id, { action: "accept", content: { address: 1 } }, { by: "alice" }), {
          name: "InvalidAnswer",
        });
        await inloop.answer(task.id, { action: "accept", content: { address: "1 Main St", express: true } }, { by: "alice" });
      } else if (choice === "decline") {
        await inloop.answer(task.id, { action: "decline" }, { by: "alice" });
      } else {
        await inloop.cancel(task.id, { by: "alice", reason: "not mine" });
      }
      const expected = { accept: "accept 1 Main St express=true", decline: "decline", cancel: "cancel" }[choice];
      assert.equal(text(await call), expected);
    } finally {
      await mcp.close();
    }
  });
}

scenario("mcp elicitation bridge: the server gives up, the task is cancelled", async (env) => {
  const inloop = env.client();
  const mcp = await connect(inloop);
  try {
    const call = mcp.callTool({ name: "ship_impatient", arguments: {} });
    const task = await onePending(inloop);
    assert.match(text(await call), /^gave up: .*timed out/i);
    let ended = await inloop.get(task.id);
    for (let i = 0; i < 200 && ended.status === "pending"; i++) {
      await sleep(25);
      ended = await inloop.get(task.id);
    }
    assert.equal(ended.status, "cancelled");
    assert.equal(ended.cancelledBy, REQUESTED_BY);
  } finally {
    await mcp.close();
  }
});

scenario("mcp elicitation bridge: a key makes a repeated elicitation return the first answer", async (env) => {
  const inloop = env.client();
  const first = await connect(inloop, process.execPath, [SERVER], () => "ship-A-1");
  try {
    const call = first.callTool({ name: "ship", arguments: {} });
    const task = await onePending(inloop);
    assert.equal(task.key, "ship-A-1");
    await inloop.answer(task.id, { action: "accept", content: { address: "2 Side St", express: false } }, { by: "alice" });
    assert.equal(text(await call), "accept 2 Side St express=false");
  } finally {
    await first.close();
  }
  // A new session (a restarted agent) asks again: the same task answers, nobody is asked twice.
  const again = await connect(inloop, process.execPath, [SERVER], () => "ship-A-1");
  try {
    assert.equal(text(await again.callTool({ name: "ship", arguments: {} })), "accept 2 Side St express=false");
    assert.equal((await inloop.list({})).items.length, 1);
  } finally {
    await again.close();
  }
});

if (spawnSync(PYTHON, ["-c", "import mcp.server.mcpserver"]).status === 0) {
  scenario("mcp elicitation bridge: accept, against the Python SDK's server", async (env) => {
    const inloop = env.client();
    const mcp = await connect(inloop, PYTHON, [PY_SERVER]);
    try {
      const call = mcp.callTool({ name: "ship", arguments: {} });
      const task = await onePending(inloop);
      assert.equal(task.title, "Where should we ship order A-1?");
      await inloop.answer(task.id, { action: "accept", content: { address: "1 Main St", express: true } }, { by: "alice" });
      assert.equal(text(await call), "accept 1 Main St express=True");
    } finally {
      await mcp.close();
    }
  });
} else {
  test("mcp elicitation bridge: accept, against the Python SDK's server", { skip: `${PYTHON} has no mcp package` }, () => undefined);
}
