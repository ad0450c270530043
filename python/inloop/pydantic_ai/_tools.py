"""One-line helpers for tools that need a person."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ApprovalRequired, CallDeferred
from pydantic_ai.toolsets import FunctionToolset

P = ParamSpec("P")
R = TypeVar("R")


def needs_human(
    title: str | None = None,
    *,
    when: Callable[..., bool] | None = None,
) -> Callable[
    [Callable[Concatenate[RunContext[Any], P], Awaitable[R]]],
    Callable[Concatenate[RunContext[Any], P], Awaitable[R]],
]:
    """Marks an async ``RunContext`` tool as needing a person's approval before it runs.

    Until the call is approved (``ctx.tool_call_approved``) it raises ``ApprovalRequired``
    (with ``title`` for the inloop task), so the run defers it; ``when(**args)`` limits that to
    the calls it returns ``True`` for. Combine with :class:`HumanReview` (in-run) or
    :func:`request_humans` (durable).

    Example::

        @agent.tool
        @needs_human("Approve this refund?", when=lambda order_id, amount: amount > 100)
        async def refund(ctx: RunContext[None], order_id: str, amount: float) -> str:
            return f"refunded {amount} on {order_id}"
    """

    def wrap(
        fn: Callable[Concatenate[RunContext[Any], P], Awaitable[R]],
    ) -> Callable[Concatenate[RunContext[Any], P], Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("@needs_human wraps an async def tool taking a RunContext first")

        @functools.wraps(fn)
        async def tool(ctx: RunContext[Any], /, *args: P.args, **kwargs: P.kwargs) -> R:
            if not ctx.tool_call_approved and (when is None or when(*args, **kwargs)):
                raise ApprovalRequired(metadata={"title": title} if title else None)
            return await fn(ctx, *args, **kwargs)

        return tool

    return wrap


def ask_human_toolset(
    name: str = "ask_human",
    description: str = "Ask a person a question and get their answer as text.",
) -> FunctionToolset[Any]:
    """A toolset with one tool the model calls to ask a person a question: the call is
    deferred as a ``question`` (answered through inloop by :class:`HumanReview` or
    :func:`request_humans`).

    Example::

        agent = Agent(model, toolsets=[ask_human_toolset()],
                      capabilities=[HandleDeferredToolCalls(handler=review.handler)])
    """

    def ask(question: str) -> str:
        raise CallDeferred(kind="question")

    toolset: FunctionToolset[Any] = FunctionToolset()
    toolset.add_function(ask, name=name, description=description)
    return toolset
