"""An MCP server (the `mcp` package's own MCPServer, over stdio) whose tool elicits from the
client: the elicitation bridge test's counterpart."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

server: MCPServer[object] = MCPServer("elicit-test")


class Shipping(BaseModel):
    address: str
    express: bool


@server.tool()
async def ship(ctx: Context) -> str:
    result = await ctx.elicit("Where should we ship order A-1?", Shipping)
    if result.action == "accept":
        return f"accept {result.data.address} express={result.data.express}"
    return result.action


if __name__ == "__main__":
    server.run("stdio")
