"""Pydantic AI adapter: people answer an agent's deferred tool calls through inloop.

Durable (the run ends, people answer, any process resumes)::

    result = await agent.run("refund A-1", output_type=[str, DeferredToolRequests])
    if isinstance(result.output, DeferredToolRequests):
        await request_humans(result, agent=agent, run_id="order-A-1")
    # later, in this process or another:
    out = await (await PendingRun.load("order-A-1")).resume(agent)

In-run (the agent waits inside one run)::

    review = HumanReview(timeout=timedelta(hours=1))
    agent = Agent(model, capabilities=[HandleDeferredToolCalls(handler=review.handler)])

Needs ``pip install 'inloop[pydantic-ai]'``. See docs/adapters.md.
"""

from __future__ import annotations

try:
    import pydantic_ai  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "inloop.pydantic_ai needs Pydantic AI: pip install 'inloop[pydantic-ai]'"
    ) from e

from .._adapters import ArgumentsChanged, args_digest
from ._durable import PendingRun, request_humans
from ._forms import (
    approval_schema,
    build_results,
    call_key,
    create_tasks,
    task_request,
    tool_schemas,
)
from ._inrun import HumanReview
from ._tools import ask_human_toolset, needs_human

__all__ = [
    "ArgumentsChanged",
    "HumanReview",
    "PendingRun",
    "approval_schema",
    "args_digest",
    "ask_human_toolset",
    "build_results",
    "call_key",
    "create_tasks",
    "needs_human",
    "request_humans",
    "task_request",
    "tool_schemas",
]
