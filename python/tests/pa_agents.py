"""A Pydantic AI agent for the adapter tests (imported by the tests and by child processes):
a scripted FunctionModel (no network) that calls the tools named in the prompt, then reports
what the tools returned."""

from __future__ import annotations

import json
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import CallDeferred
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests

from inloop.pydantic_ai import needs_human

EXECUTED: list[dict[str, Any]] = []


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = [
        p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)
    ]
    if returns:
        return ModelResponse(
            parts=[TextPart("; ".join(f"{p.tool_name}={p.content}" for p in returns))]
        )
    # The prompt is a JSON list of [tool_name, args, tool_call_id].
    prompt = next(
        p.content
        for m in messages
        for p in getattr(m, "parts", [])
        if getattr(p, "part_kind", "") == "user-prompt"
    )
    calls = json.loads(str(prompt))
    return ModelResponse(parts=[ToolCallPart(n, a, tool_call_id=i) for n, a, i in calls])


def make_agent(output_deferred: bool = True, **kwargs: Any) -> Agent[None, Any]:
    output: Any = [str, DeferredToolRequests] if output_deferred else str
    agent: Agent[None, Any] = Agent(FunctionModel(script), output_type=output, **kwargs)

    @agent.tool
    @needs_human("Approve this refund?", when=lambda order_id, amount: amount > 100)
    async def refund(ctx: RunContext[None], order_id: str, amount: float) -> str:
        """Refunds an order."""
        EXECUTED.append({"order_id": order_id, "amount": amount})
        return f"refunded {amount} on {order_id}"

    @agent.tool_plain
    def ask_human(question: str) -> str:
        """Asks a person."""
        raise CallDeferred(kind="question")

    return agent


def prompt(*calls: tuple[str, dict[str, Any], str]) -> str:
    return json.dumps([list(c) for c in calls])
