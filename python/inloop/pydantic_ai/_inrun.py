"""The in-run path: the agent waits for its people inside one ``agent.run``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai import RunContext
from pydantic_ai.exceptions import UserError
from pydantic_ai.external_events import resolve_external_event
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults

from .._adapters import wait_all
from ..client import Client, Timeout, default_client
from ._forms import build_results, create_tasks, tool_schemas

log = logging.getLogger("inloop.pydantic_ai")
_RESULTS = TypeAdapter(DeferredToolResults)


class HumanReview:
    """Answers an agent's deferred tool calls with people, inside the run.

    ``handler`` is for Pydantic AI's ``HandleDeferredToolCalls`` capability: it creates one
    inloop task per pending call (key: the run id and the tool call id, so a retried run
    finds the same tasks), waits for them, push-woken, and returns the ``DeferredToolResults``.
    ``ask`` is for the ``RequestInput`` capability: it creates the tasks, returns at once, and
    resolves the run's external-event token when they have all ended (``RequestInput``'s own
    ``timeout`` then bounds the wait). Approvals, edits, denials, timeouts: as in
    :func:`inloop.pydantic_ai.build_results`.

    Example::

        review = HumanReview(client=client, timeout=timedelta(hours=1))
        agent = Agent(model, capabilities=[HandleDeferredToolCalls(handler=review.handler)])
        # or: capabilities=[RequestInput(ask=review.ask, timeout=timedelta(hours=1))]
    """

    def __init__(self, *, client: Client | None = None, timeout: Timeout | None = None) -> None:
        self.client = client or default_client()
        self.timeout = timeout
        self._background: set[asyncio.Task[None]] = set()

    async def _create(self, ctx: RunContext[Any], requests: DeferredToolRequests) -> list[str]:
        run_id = ctx.run_id or "run"
        tasks = await create_tasks(
            self.client, run_id, requests, tool_schemas(ctx.agent), self.timeout
        )
        return [tasks[c.tool_call_id].id for c in [*requests.approvals, *requests.calls]]

    async def _results(self, requests: DeferredToolRequests, ids: list[str]) -> DeferredToolResults:
        ended = await wait_all(self.client, ids)
        calls = [*requests.approvals, *requests.calls]
        return build_results(
            requests, {c.tool_call_id: t for c, t in zip(calls, ended, strict=True)}
        )

    async def handler(
        self, ctx: RunContext[Any], requests: DeferredToolRequests
    ) -> DeferredToolResults:
        """``HandleDeferredToolCalls(handler=review.handler)``: ask, wait, answer.

        Example::

            Agent(model, capabilities=[HandleDeferredToolCalls(handler=review.handler)])
        """
        return await self._results(requests, await self._create(ctx, requests))

    async def ask(self, ctx: RunContext[Any], requests: DeferredToolRequests, token: str) -> None:
        """``RequestInput(ask=review.ask)``: create the tasks; resolve ``token`` when they end.

        Example::

            Agent(model, capabilities=[RequestInput(ask=review.ask, timeout=timedelta(hours=1))])
        """
        ids = await self._create(ctx, requests)

        async def settle() -> None:
            try:
                results = await self._results(requests, ids)
                resolve_external_event(token, _RESULTS.dump_python(results, mode="json"))
            except UserError:
                pass  # the run stopped waiting (timed out or cancelled) meanwhile
            except Exception:
                log.exception("answering the deferred tool calls of token %s failed", token)

        job = asyncio.ensure_future(settle())
        self._background.add(job)
        job.add_done_callback(self._background.discard)
