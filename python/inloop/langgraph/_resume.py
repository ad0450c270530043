"""Resuming graphs whose inloop tasks ended: in the process that runs the graph
(:func:`invoke`, :func:`ainvoke`), or from any worker (:class:`Resumer`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import Command, GraphOutput, Interrupt

from .._sync import run_sync
from ..client import Client, Timeout, default_client
from ..types import Status, Task
from . import _lease
from ._human import CLIENT_KEY, KEY_PREFIX, parse_task_key
from ._interrupts import TaskRef, ensure_task, resume_for

log = logging.getLogger("inloop.langgraph")

DEFAULT_LEASE_TTL = timedelta(minutes=5)


def _holder() -> str:
    return f"resumer:{socket.gethostname()}:{os.getpid()}"


class _Graph:
    """A compiled graph driven from async code: sync graphs (sync checkpointers such as
    ``SqliteSaver``, ``PostgresSaver``) run in a worker thread, async ones are awaited."""

    def __init__(self, graph: Pregel[Any, Any, Any, Any], use_async: bool) -> None:
        self.graph = graph
        self.use_async = use_async

    async def invoke(self, input: Any, config: RunnableConfig) -> GraphOutput[Any]:
        if self.use_async:
            return await self.graph.ainvoke(input, config, version="v2")
        return await asyncio.to_thread(self.graph.invoke, input, config, version="v2")

    async def pending(self, config: RunnableConfig) -> tuple[Interrupt, ...]:
        if self.use_async:
            state = await self.graph.aget_state(config)
        else:
            state = await asyncio.to_thread(self.graph.get_state, config)
        return tuple(state.interrupts)

    async def snapshot(self, config: RunnableConfig) -> GraphOutput[Any]:
        if self.use_async:
            state = await self.graph.aget_state(config)
        else:
            state = await asyncio.to_thread(self.graph.get_state, config)
        return GraphOutput(state.values, tuple(state.interrupts))


def _with_client(config: RunnableConfig, client: Client) -> RunnableConfig:
    configurable = dict(config.get("configurable") or {})
    configurable.setdefault(CLIENT_KEY, client)
    return {**config, "configurable": configurable}


def _thread(config: RunnableConfig) -> str:
    thread_id = (config.get("configurable") or {}).get("thread_id")
    if thread_id is None:
        raise ValueError('config needs {"configurable": {"thread_id": ...}}')
    return str(thread_id)


async def _resume_ended(
    graph: _Graph,
    client: Client,
    config: RunnableConfig,
    ended: Sequence[tuple[TaskRef, Task]],
    lease_ns: str,
    lease_ttl: Timeout,
) -> tuple[GraphOutput[Any] | None, list[str]]:
    """Resumes the thread for the ended tasks this caller can lease. Returns the graph's
    output (``None`` when another resumer holds every lease) and the ids of the tasks it
    resumed for."""
    held: list[tuple[TaskRef, Task, Task]] = []
    for ref, task in ended:
        lease = await _lease.acquire(client, task.id, lease_ns, lease_ttl)
        if lease is not None:
            held.append((ref, task, lease))
    if not held:
        return None, []
    command: Command[Any] = Command(
        resume={
            ref.interrupt.id: resume_for(ref.kind, ref.interrupt, task) for ref, task, _ in held
        }
    )
    out = await graph.invoke(command, config)
    for _, _, lease in held:
        await _lease.release(client, lease, _holder())
    return out, [task.id for _, task, _ in held]


async def _drive(
    graph: _Graph,
    input: Any,
    config: RunnableConfig,
    client: Client,
    review_timeout: Timeout | None,
    lease_namespace: str | None,
    lease_ttl: Timeout,
) -> GraphOutput[Any]:
    config = _with_client(config, client)
    thread_id = _thread(config)
    lease_ns = _lease.lease_namespace(client, lease_namespace)
    out = await graph.invoke(input, config)
    while out.interrupts:
        refs = [
            ref
            for it in out.interrupts
            if (ref := await ensure_task(client, thread_id, it, review_timeout)) is not None
        ]
        if not refs:
            return out  # only interrupts inloop does not answer: the caller's
        waits = {asyncio.ensure_future(client.wait(ref.task_id)): ref for ref in refs}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        ended = []
        for ref in refs:
            task = await client.get(ref.task_id)
            if task.status is not Status.PENDING:
                ended.append((ref, task))
        resumed, _ = await _resume_ended(graph, client, config, ended, lease_ns, lease_ttl)
        if resumed is None:
            # Another resumer (a Resumer worker) holds the leases: let it finish, then go on
            # from the thread's state.
            await _wait_released(graph, config, {ref.interrupt.id for ref, _ in ended})
            out = await graph.snapshot(config)
        else:
            out = resumed
    return out


async def _wait_released(graph: _Graph, config: RunnableConfig, ids: set[str]) -> None:
    while ids & {it.id for it in await graph.pending(config)}:
        await asyncio.sleep(0.05)


def invoke(
    graph: Pregel[Any, Any, Any, Any],
    input: Any,
    config: RunnableConfig,
    *,
    client: Client | None = None,
    review_timeout: Timeout | None = None,
    lease_namespace: str | None = None,
    lease_ttl: Timeout = DEFAULT_LEASE_TTL,
) -> GraphOutput[Any]:
    """Runs a graph to the end, answering its inloop interrupts in this process.

    Invokes ``graph`` (``version="v2"``); whenever it stops on interrupts raised by
    :func:`human` (or by LangChain's ``HumanInTheLoopMiddleware``, whose tasks are created
    here, with ``review_timeout``), it waits, push-woken, until one of their tasks ends and
    resumes the thread with ``Command(resume={interrupt_id: outcome})``, until the graph ends
    or stops only on interrupts inloop does not know (the returned ``GraphOutput`` then lists
    them). If this process dies while waiting, a :class:`Resumer` picks the thread up, or
    ``invoke(graph, None, config)`` waits again where it stopped. ``client`` is also the one
    ``human()`` uses in the graph's nodes. For graphs with an async checkpointer use
    :func:`ainvoke`.

    Example::

        with SqliteSaver.from_conn_string("checkpoints.db") as saver:
            graph = builder.compile(checkpointer=saver)
            out = inloop.langgraph.invoke(graph, {"order_id": "A-1"},
                                          {"configurable": {"thread_id": "refund-A-1"}})
            print(out.value)
    """
    c = client or default_client()
    return run_sync(
        _drive(_Graph(graph, False), input, config, c, review_timeout, lease_namespace, lease_ttl)
    )


async def ainvoke(
    graph: Pregel[Any, Any, Any, Any],
    input: Any,
    config: RunnableConfig,
    *,
    client: Client | None = None,
    review_timeout: Timeout | None = None,
    lease_namespace: str | None = None,
    lease_ttl: Timeout = DEFAULT_LEASE_TTL,
) -> GraphOutput[Any]:
    """:func:`invoke` for async graphs (``AsyncSqliteSaver``, ``AsyncPostgresSaver``, async
    nodes using :func:`ahuman`).

    Example::

        out = await inloop.langgraph.ainvoke(graph, {"order_id": "A-1"}, config)
    """
    c = client or default_client()
    return await _drive(
        _Graph(graph, True), input, config, c, review_timeout, lease_namespace, lease_ttl
    )


@dataclass
class ResumeReport:
    """What one :meth:`Resumer.run_once` pass did."""

    resumed: dict[str, list[str]] = field(default_factory=dict)
    """thread id -> the task ids it was resumed for."""
    skipped: list[str] = field(default_factory=list)
    """Ended tasks another resumer holds, or whose interrupt is no longer pending."""
    failed: dict[str, str] = field(default_factory=dict)
    """thread id -> the error its resume raised (its leases expire; retried after lease_ttl)."""


class Resumer:
    """Resumes every thread whose inloop task ended, from any process with the graph and its
    checkpointer: the process that asked may have exited or crashed meanwhile.

    Each pass lists the ended tasks of ``human()`` interrupts (keys ``langgraph:...``) in the
    client's namespace, reads each thread's pending interrupts from the checkpointer, and
    resumes the thread with the outcomes of the ended tasks whose interrupts are still
    pending. Several resumers may run at once (and next to :func:`invoke`): a lease per answer
    (see ``docs/adapters.md``) lets exactly one of them resume the thread for it; a resumer that
    dies holding one lets it expire after ``lease_ttl``. After a resume the graph may stop on
    new HITL middleware interrupts: their tasks are created here (with ``review_timeout``).

    ``use_async=True`` drives the graph with ``ainvoke``/``aget_state`` (async checkpointers);
    by default the sync API runs in a worker thread.

    Example (a worker)::

        with PostgresSaver.from_conn_string(DB) as saver:
            graph = builder.compile(checkpointer=saver)
            await inloop.langgraph.Resumer(graph, client=inloop.Client(DB)).run_forever()
    """

    def __init__(
        self,
        graph: Pregel[Any, Any, Any, Any],
        *,
        client: Client | None = None,
        config: RunnableConfig | None = None,
        use_async: bool = False,
        review_timeout: Timeout | None = None,
        lease_namespace: str | None = None,
        lease_ttl: Timeout = DEFAULT_LEASE_TTL,
    ) -> None:
        self.graph = _Graph(graph, use_async)
        self.client = client or default_client()
        self.base_config: RunnableConfig = config or {}
        self.review_timeout = review_timeout
        self.lease_ns = _lease.lease_namespace(self.client, lease_namespace)
        self.lease_ttl = lease_ttl
        self._settled: set[str] = set()

    def _config(self, thread_id: str) -> RunnableConfig:
        configurable = {**(self.base_config.get("configurable") or {}), "thread_id": thread_id}
        return _with_client({**self.base_config, "configurable": configurable}, self.client)

    async def _ended(self) -> dict[str, list[Task]]:
        by_thread: dict[str, list[Task]] = {}
        for status in (Status.COMPLETED, Status.TIMED_OUT, Status.CANCELLED):
            cursor: str | None = None
            while True:
                page = await self.client.list(
                    status=status, key_prefix=KEY_PREFIX, limit=500, cursor=cursor
                )
                for task in page:
                    parsed = parse_task_key(task.key)
                    if parsed is not None and task.id not in self._settled:
                        by_thread.setdefault(parsed[0], []).append(task)
                cursor = page.next_cursor
                if not cursor:
                    break
        return by_thread

    async def resume_thread(
        self, thread_id: str, tasks: Sequence[Task]
    ) -> tuple[GraphOutput[Any] | None, list[str]]:
        """Resumes ``thread_id`` for those of ``tasks`` (ended) whose interrupts are pending and
        whose leases this resumer gets. Returns the graph's output (``None`` if it did not
        resume) and the ids of the tasks it resumed for. Call it from a completion hook to
        resume one task without a polling pass.

        Example::

            out, task_ids = await resumer.resume_thread("refund-A-1", [await client.get(id)])
        """
        config = self._config(thread_id)
        pending = {it.id: it for it in await self.graph.pending(config)}
        ended: list[tuple[TaskRef, Task]] = []
        for task in tasks:
            parsed = parse_task_key(task.key)
            it = pending.get(parsed[1]) if parsed else None
            ref = (
                await ensure_task(self.client, thread_id, it, self.review_timeout)
                if it is not None
                else None
            )
            if ref is None or ref.task_id != task.id:
                self._settled.add(task.id)  # resumed already (by anyone), or not ours
                continue
            ended.append((ref, task))
        if not ended:
            return None, []
        out, resumed = await _resume_ended(
            self.graph, self.client, config, ended, self.lease_ns, self.lease_ttl
        )
        self._settled.update(resumed)
        if out is not None:
            for it in out.interrupts:  # new HITL requests get their tasks now
                await ensure_task(self.client, thread_id, it, self.review_timeout)
        return out, resumed

    async def run_once(self) -> ResumeReport:
        """One pass over the ended tasks; returns what it did.

        Example::

            report = await Resumer(graph, client=client).run_once()
            print(report.resumed)
        """
        report = ResumeReport()
        for thread_id, tasks in (await self._ended()).items():
            try:
                _, resumed = await self.resume_thread(thread_id, tasks)
            except Exception as e:  # one broken thread must not stop the others
                log.exception("resuming thread %s failed", thread_id)
                report.failed[thread_id] = f"{type(e).__name__}: {e}"
                continue
            if resumed:
                report.resumed[thread_id] = resumed
            report.skipped.extend(t.id for t in tasks if t.id not in resumed)
        return report

    async def run_forever(self, interval: float = 1.0) -> None:
        """Runs :meth:`run_once` every ``interval`` seconds until cancelled.

        Example::

            asyncio.run(Resumer(graph).run_forever())
        """
        while True:
            await self.run_once()
            await asyncio.sleep(interval)
