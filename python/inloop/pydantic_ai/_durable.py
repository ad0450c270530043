"""The durable path: a run that ended with ``DeferredToolRequests`` waits for people in inloop,
and is resumed later, in this process or another."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults

from .._adapters import claim_stop, runs_namespace, wait_all
from ..client import Client, Timeout, default_client
from ..errors import NotFound
from ..types import Status, Task
from ._forms import build_results, create_tasks, tool_schemas

_REQUESTS = TypeAdapter(DeferredToolRequests)
_RECORD_SCHEMA: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class PendingRun:
    """A Pydantic AI run waiting for people: its history, its deferred calls, and the inloop
    task of each call. Stored in inloop (a record task in the namespace
    ``{namespace}.runs``, key ``pydantic-ai-run:{run_id}``), so any process can
    :meth:`load` it by run id.
    """

    run_id: str
    messages_json: str
    requests: DeferredToolRequests
    task_ids: dict[str, str]
    record_id: str
    client: Client

    def history(self) -> list[ModelMessage]:
        """The run's messages, for ``agent.run(message_history=...)``."""
        return ModelMessagesTypeAdapter.validate_json(self.messages_json)

    async def tasks(self) -> dict[str, Task]:
        """The current state of each call's task, by tool call id."""
        return {cid: await self.client.get(tid) for cid, tid in self.task_ids.items()}

    async def results(self, *, wait: bool = True) -> DeferredToolResults | None:
        """The ``DeferredToolResults`` once every task ended (waiting, push-woken, if ``wait``);
        ``None`` if ``wait=False`` and some are still pending.

        Example::

            results = await pending.results()
            out = await agent.run(message_history=pending.history(),
                                  deferred_tool_results=results)
        """
        if wait:
            ids = list(self.task_ids.items())
            ended = await wait_all(self.client, [tid for _, tid in ids])
            tasks = {cid: task for (cid, _), task in zip(ids, ended, strict=True)}
        else:
            tasks = await self.tasks()
            if any(t.status is Status.PENDING for t in tasks.values()):
                return None
        return build_results(self.requests, tasks)

    async def resume(
        self, agent: Agent[Any, Any], *, wait: bool = True, **run_kwargs: Any
    ) -> AgentRunResult[Any] | None:
        """Resumes the run with the people's decisions: at most once across all processes.

        Waits for the tasks (unless ``wait=False``: then ``None`` while some are pending), then
        claims the run (the record task is answered, compare-and-set in the core: a second
        resumer gets ``None``) and calls ``agent.run(message_history=..., deferred_tool_results=
        ..., **run_kwargs)``. Claiming first means a crash during that run is not retried: the
        approved tools never run twice.

        Example::

            pending = await PendingRun.load("order-A-1", client=client)
            result = await pending.resume(agent)
        """
        results = await self.results(wait=wait)
        if results is None:
            return None
        if not await claim_stop(self.client, self.record_id, "pydantic-ai"):
            return None
        return await agent.run(
            message_history=self.history(), deferred_tool_results=results, **run_kwargs
        )

    @classmethod
    async def load(
        cls, run_id: str, *, client: Client | None = None, record_namespace: str | None = None
    ) -> PendingRun:
        """The pending run stored by :func:`request_humans` under ``run_id`` (from any
        process on the same database); :class:`inloop.NotFound` if there is none.

        Example::

            pending = await PendingRun.load("order-A-1", client=client)
        """
        c = client or default_client()
        ns = runs_namespace(c, record_namespace)
        key = f"pydantic-ai-run:{run_id}"
        try:
            record: Task | None = await c.get_by_key(key, namespace=ns)
        except NotFound:
            record = None
        # Defensive: the record must be in the namespace asked for.
        if record is None or record.namespace != ns:
            raise NotFound(f"no pending Pydantic AI run {run_id!r} in namespace {ns}")
        return cls._from_record(record, c)

    @classmethod
    def _from_record(cls, record: Task, client: Client) -> PendingRun:
        p = record.payload
        return cls(
            run_id=p["run_id"],
            messages_json=json.dumps(p["messages"]),
            requests=_REQUESTS.validate_python(p["requests"]),
            task_ids=dict(p["tasks"]),
            record_id=record.id,
            client=client,
        )


async def request_humans(
    result: AgentRunResult[Any],
    *,
    agent: Agent[Any, Any] | None = None,
    run_id: str | None = None,
    client: Client | None = None,
    timeout: Timeout | None = None,
    record_namespace: str | None = None,
) -> PendingRun:
    """Hands a run that ended with ``DeferredToolRequests`` to people: one inloop task per
    deferred call (key ``pydantic-ai:{run_id}:{tool_call_id}``), plus a record holding the
    run's ``all_messages_json()`` and requests so any process can resume it.

    Approvals get an approve / deny / edit form (edits are checked against the tool's JSON
    Schema, from ``agent``); the approval is bound to the SHA-256 of the exact arguments shown.
    ``question``/``external`` calls get a typed answer form. Idempotent: calling it again for
    the same run returns the same tasks. ``run_id`` defaults to the run's own id; pass a stable
    one (an order id, a ticket) to find the run again by it.

    Example::

        result = await agent.run("refund order A-1", output_type=[str, DeferredToolRequests])
        if isinstance(result.output, DeferredToolRequests):
            pending = await request_humans(result, agent=agent, run_id="order-A-1")
            ...                                   # later, anywhere:
            done = await (await PendingRun.load("order-A-1")).resume(agent)
    """
    requests = result.output
    if not isinstance(requests, DeferredToolRequests):
        raise TypeError(
            "request_humans() takes a run whose output is DeferredToolRequests "
            "(put DeferredToolRequests in the agent's output_type)"
        )
    c = client or default_client()
    rid = run_id or result.run_id
    tasks = await create_tasks(c, rid, requests, tool_schemas(agent), timeout)
    record = await c.create(
        "Pydantic AI run waiting for people",
        payload={
            "run_id": rid,
            "messages": json.loads(result.all_messages_json()),
            "requests": _REQUESTS.dump_python(requests, mode="json"),
            "tasks": {cid: t.id for cid, t in tasks.items()},
        },
        response=_RECORD_SCHEMA,
        key=f"pydantic-ai-run:{rid}",
        namespace=runs_namespace(c, record_namespace),
    )
    return PendingRun._from_record(record, c)
