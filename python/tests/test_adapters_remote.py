"""The adapters in remote mode: every inloop call goes through a real `inloop serve` with an
API key bound to one namespace (started as in test_remote.py), on SQLite and PostgreSQL.

The key sees and writes its own namespace only, so the side records (LangGraph resume leases,
Pydantic AI and LlamaIndex run records) are put there with `lease_namespace=` /
`record_namespace=`, and `PendingRun.load` finds its record by key (`Client.get_by_key`), not
by a listing across namespaces."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from lg_graphs import checkpointer, single
from pa_agents import EXECUTED, make_agent, prompt
from pydantic_ai.tools import DeferredToolRequests
from test_remote import Server

from inloop import Client, InloopError, InvalidAnswer, NotFound, Status
from inloop.langgraph import Resumer, task_key
from inloop.pydantic_ai import PendingRun, request_humans


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    s = Server(database_url, tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture
async def remote(server: Server, namespace: str) -> AsyncIterator[Client]:
    c = Client(namespace=namespace, url=server.url, api_key=server.apikey(namespace))
    assert c.remote
    yield c
    await c.close()


async def test_langgraph_human_and_resumer_through_the_server(
    remote: Client, namespace: str, tmp_path: Path
) -> None:
    tid = f"thread-{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {"configurable": {"thread_id": tid, "inloop_client": remote}}
    calls: list[str] = []
    with checkpointer(f"sqlite://{tmp_path / 'graph.db'}") as saver:
        graph = single(saver, calls)
        out = await asyncio.to_thread(
            graph.invoke, {"order_id": "A-1", "amount": 500.0}, config, version="v2"
        )
        [it] = out.interrupts
        task = await remote.get_by_key(task_key(tid, it.id))
        assert task.namespace == namespace and task.status is Status.PENDING
        assert it.value["inloop"]["task_id"] == task.id
        with pytest.raises(InvalidAnswer):
            await remote.answer(task.id, {"approved": "yes"}, by="mallory")
        await remote.answer(task.id, {"approved": True, "note": "ok"}, by="alice")

        # The default lease namespace ("<ns>.resumer") is outside the key's namespace: the
        # server refuses it, and nothing is resumed.
        refused = await Resumer(graph, client=remote).run_once()
        assert list(refused.failed) == [tid] and refused.resumed == {}
        assert calls == ["before"]

        report = await Resumer(graph, client=remote, lease_namespace=namespace).run_once()
        assert report.resumed == {tid: [task.id]} and not report.failed
        state = graph.get_state(config)
        assert state.values["approved"] is True and state.next == ()
        assert calls == ["before", "before", "after: True"]
        again = await Resumer(graph, client=remote, lease_namespace=namespace).run_once()
        assert again.resumed == {}
    assert len(await remote.list(key_prefix="langgraph:")) == 1


async def test_pydantic_ai_pending_run_loads_by_key_through_the_server(
    remote: Client, namespace: str
) -> None:
    EXECUTED.clear()
    agent = make_agent()
    result = await agent.run(prompt(("refund", {"order_id": "A-1", "amount": 500.0}, "c1")))
    assert isinstance(result.output, DeferredToolRequests)
    pending = await request_humans(
        result, agent=agent, run_id="run-remote", client=remote, record_namespace=namespace
    )
    [task] = await remote.list(key_prefix="pydantic-ai:")
    await remote.answer(task.id, {"decision": "approve"}, by="alice")

    loaded = await PendingRun.load("run-remote", client=remote, record_namespace=namespace)
    assert loaded.record_id == pending.record_id and loaded.task_ids == pending.task_ids
    with pytest.raises(NotFound):
        await PendingRun.load("no-such-run", client=remote, record_namespace=namespace)
    # The default record namespace ("<ns>.runs") is not the key's: the server refuses it.
    with pytest.raises(InloopError) as refused:
        await PendingRun.load("run-remote", client=remote)
    assert refused.value.code == "forbidden"

    done = await loaded.resume(make_agent())
    assert done is not None and "refunded 500.0 on A-1" in done.output
    assert EXECUTED == [{"order_id": "A-1", "amount": 500.0}]
    again = await PendingRun.load("run-remote", client=remote, record_namespace=namespace)
    assert await again.resume(make_agent()) is None


async def test_llamaindex_run_stops_and_resumes_through_the_server(
    remote: Client, namespace: str
) -> None:
    from li_flows import EFFECTS, RESPONSES, RefundFlow

    from inloop import llamaindex

    EFFECTS.clear()
    job = asyncio.ensure_future(
        llamaindex.run(RefundFlow(timeout=30), run_id="li-remote", response=RESPONSES,
                       client=remote, start={"order_id": "A-1", "amount": 20.0},
                       record_namespace=namespace)
    )  # fmt: skip
    for _ in range(600):
        tasks = await remote.list(key_prefix="llamaindex:", status="pending")
        if tasks:
            break
        await asyncio.sleep(0.05)
    [task] = tasks
    loaded = await llamaindex.PendingRun.load(
        "li-remote", client=remote, record_namespace=namespace
    )
    assert loaded.task_ids == [task.id] and loaded.context["is_running"] is True
    await remote.answer(task.id, {"decision": "approve"}, by="alice")
    assert await asyncio.wait_for(job, 30) == {"order_id": "A-1", "refunded": True, "reason": None}
    assert [e["effect"] for e in EFFECTS] == ["prepared", "refunded"]
