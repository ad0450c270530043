// An MCP server on the SDK's own McpServer, over stdio, whose tools elicit from the client:
// the counterpart of the elicitation bridge test (mcp.test.ts).
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";

const server = new McpServer({ name: "elicit-test", version: "1.0.0" });

const shipping = {
  type: "object" as const,
  properties: {
    address: { type: "string" as const, title: "Address" },
    express: { type: "boolean" as const, title: "Express" },
  },
  required: ["address", "express"],
};

server.registerTool("ship", { description: "asks where to ship" }, async () => {
  const r = await server.server.elicitInput({ message: "Where should we ship order A-1?", requestedSchema: shipping });
  const text = r.action === "accept" ? `accept ${String(r.content?.["address"])} express=${String(r.content?.["express"])}` : r.action;
  return { content: [{ type: "text", text }] };
});

server.registerTool("ship_impatient", { description: "gives up on its elicitation after 300 ms" }, async () => {
  // The SDK (1.32.2) client ignores notifications/cancelled for request id 0 (a falsy-id
  // check), and this server's first request gets id 0: spend it on a ping.
  await server.server.ping();
  try {
    await server.server.elicitInput({ message: "Quick: where to?", requestedSchema: shipping }, { timeout: 300 });
    return { content: [{ type: "text", text: "answered" }] };
  } catch (e) {
    return { content: [{ type: "text", text: `gave up: ${e instanceof Error ? e.message : String(e)}` }] };
  }
});

await server.connect(new StdioServerTransport());
