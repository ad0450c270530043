"""A Claude Agent SDK agent whose refund tool needs a person's permission (`can_use_tool`).

Run it with `ANTHROPIC_API_KEY` set (or `ANTHROPIC_BASE_URL` pointing at a compatible server),
then answer from a second terminal:

    .venv/bin/inloop tasks list
    .venv/bin/inloop tasks answer ID '{"behavior": "allow"}'
    #   or '{"behavior": "allow", "updated_input": {"order_id": "A-1", "amount": 250}}'
    #   or '{"behavior": "deny", "message": "not eligible"}'   (the model reads the message)

Kill it while it waits and run it again: the same request finds the same task (answered
meanwhile, or still waiting), so the person is asked once and the refund runs once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    TextBlock,
    create_sdk_mcp_server,
    query,
    tool,
)

from inloop.claude_agent import HumanPermissions


@tool("refund", "Refunds an order", {"order_id": str, "amount": float})
async def refund(args: dict[str, Any]) -> dict[str, Any]:
    text = f"refunded {args['amount']} EUR on order {args['order_id']}"
    return {"content": [{"type": "text", "text": text}]}


async def prompt() -> AsyncIterator[dict[str, Any]]:
    text = "Customer says parcel A-1 arrived broken; refund 500 EUR with the refund tool."
    yield {"type": "user", "message": {"role": "user", "content": text}}


async def main() -> None:
    options = ClaudeAgentOptions(
        mcp_servers={"shop": create_sdk_mcp_server("shop", tools=[refund])},
        can_use_tool=HumanPermissions(
            "refund-order-A-1", tools={"mcp__shop__refund"}, timeout=timedelta(hours=4)
        ),
        max_turns=4,
    )
    print("agent: refunding order A-1; a person allows it with")
    print("         .venv/bin/inloop tasks list")
    print('         .venv/bin/inloop tasks answer ID \'{"behavior": "allow"}\'', flush=True)
    async for message in query(prompt=prompt(), options=options):
        if isinstance(message, AssistantMessage):
            for block in message.content:
                if isinstance(block, TextBlock):
                    print(f"agent: {block.text}")


if __name__ == "__main__":
    asyncio.run(main())
