"""A process running a Claude Agent SDK agent (the real SDK and its bundled CLI, against the
loopback fake Anthropic API) whose tool permissions a person gives through inloop:
`python ca_child.py <inloop-url> <namespace> <run-id> <fake-base-url> <effects-file>`; prints
the agent's final text as one JSON line. The tool `mcp__shop__refund` appends one JSON line to
the effects file each time it runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    TextBlock,
    create_sdk_mcp_server,
    query,
    tool,
)
from claude_env import cli_env

from inloop import Client
from inloop.claude_agent import HumanPermissions


async def main() -> None:
    url, namespace, run_id, base_url, effects = sys.argv[1:6]

    @tool("refund", "Refunds an order", {"order_id": str, "amount": float})
    async def refund(args: dict[str, Any]) -> dict[str, Any]:
        with open(effects, "a") as f:
            f.write(json.dumps(args) + "\n")
        text = f"refunded {args['amount']} on {args['order_id']}"
        return {"content": [{"type": "text", "text": text}]}

    client = Client(url, namespace=namespace)
    options = ClaudeAgentOptions(
        mcp_servers={"shop": create_sdk_mcp_server("shop", tools=[refund])},
        can_use_tool=HumanPermissions(run_id, client=client, tools={"mcp__shop__refund"}),
        env=cli_env(base_url, Path(effects).parent / "home"),
        model="claude-sonnet-4-5",
        max_turns=4,
        cwd=str(Path(effects).parent),
    )

    async def prompt() -> AsyncIterator[dict[str, Any]]:
        message = {"role": "user", "content": "Parcel A-1 arrived broken: refund 500."}
        yield {"type": "user", "message": message}

    texts: list[str] = []
    async for m in query(prompt=prompt(), options=options):
        if isinstance(m, AssistantMessage):
            texts += [b.text for b in m.content if isinstance(b, TextBlock)]
    print(json.dumps({"texts": texts, "pid": os.getpid()}), flush=True)
    await client.close()


asyncio.run(main())
