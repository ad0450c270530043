"""The LangGraph adapter with real graphs and real checkpointers (SqliteSaver next to the
SQLite database, PostgresSaver on the PostgreSQL one): every scenario runs on both."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from lg_graphs import Decision, checkpointer, parallel, sequential, single

from inloop import Client, InvalidAnswer, Status, Task
from inloop.langgraph import (
    Resumer,
    hitl_decisions,
    hitl_form,
    invoke,
    parse_task_key,
    resume_value,
    task_key,
)

HERE = Path(__file__).parent


def thread() -> str:
    return f"thread-{uuid.uuid4().hex[:8]}"


async def tasks_of(client: Client, n: int, timeout: float = 20) -> list[Task]:
    """Waits until `n` LangGraph tasks exist in this test's namespace; oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        page = await client.list(key_prefix="langgraph:")
        if len(page) >= n or time.monotonic() > deadline:
            return list(reversed(page))
        await asyncio.sleep(0.02)


def cfg(thread_id: str, client: Client) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "inloop_client": client}}


async def test_single_interrupt_in_process_invalid_answer_refused(
    client: Client, database_url: str
) -> None:
    calls: list[str] = []
    tid = thread()
    with checkpointer(database_url) as saver:
        graph = single(saver, calls)
        run = asyncio.ensure_future(
            asyncio.to_thread(
                invoke,
                graph,
                {"order_id": "A-1", "amount": 500.0},
                {"configurable": {"thread_id": tid}},
                client=client,
            )
        )
        [task] = await tasks_of(client, 1)
        assert task.title == "Approve this refund?"
        assert task.payload == {"order_id": "A-1", "amount": 500.0}
        assert task.key.startswith(f"langgraph:{tid}:")
        state = graph.get_state({"configurable": {"thread_id": tid}})
        [it] = state.interrupts
        assert task.key == task_key(tid, it.id)
        assert it.value["inloop"]["task_id"] == task.id
        assert it.value["payload"] == {"order_id": "A-1", "amount": 500.0}  # JSON, not a model
        assert it.response_schema == Decision.model_json_schema()

        # The core refuses a bad answer; it never reaches the graph.
        with pytest.raises(InvalidAnswer) as e:
            await client.answer(task.id, {"approved": "yes"}, by="mallory")
        assert [f.path for f in e.value.errors] == ["/approved"]
        await asyncio.sleep(0.2)
        assert not run.done()
        assert calls == ["before"]

        await client.answer(task.id, {"approved": True, "note": "ok"}, by="alice")
        out = await asyncio.wait_for(run, 20)
    assert out.value["approved"] is True and out.value["status"] == "decided"
    assert out.interrupts == ()
    assert calls == ["before", "before", "after: True"]


async def test_two_sequential_interrupts_in_one_node(client: Client, database_url: str) -> None:
    calls: list[str] = []
    tid = thread()
    with checkpointer(database_url) as saver:
        graph = single(saver, [])  # warm-up of the tables for PostgreSQL
        graph = sequential(saver, calls)
        run = asyncio.ensure_future(
            asyncio.to_thread(invoke, graph, {"order_id": "A-2"}, cfg(tid, client), client=client)
        )
        [first] = await tasks_of(client, 1)
        assert first.title == "First approval"
        await client.answer(first.id, {"approved": True}, by="alice")
        tasks = await tasks_of(client, 2)
        second = tasks[1]
        assert second.title == "Second approval" and second.payload["first"] is True
        await client.answer(second.id, {"approved": False}, by="bob")
        out = await asyncio.wait_for(run, 20)
    assert out.value["approved"] is True and out.value["second"] is False
    assert calls == ["before", "before", "between: True", "before", "between: True",
                     "after: False"]  # fmt: skip
    assert len(await client.list(key_prefix="langgraph:")) == 2
    assert first.key != second.key


async def test_parallel_interrupts_get_one_task_each(client: Client, database_url: str) -> None:
    calls: list[str] = []
    tid = thread()
    config = cfg(tid, client)
    with checkpointer(database_url) as saver:
        graph = parallel(saver, calls)
        out = await asyncio.to_thread(graph.invoke, {"log": []}, config, version="v2")
        assert len(out.interrupts) == 2
        tasks = await tasks_of(client, 2)
        assert {t.title for t in tasks} == {"Approve a?", "Approve b?"}
        assert {t.key for t in tasks} == {task_key(tid, it.id) for it in out.interrupts}

        # One answered: a resumer resumes that branch only; the other stays pending.
        a = next(t for t in tasks if t.title == "Approve a?")
        b = next(t for t in tasks if t.title == "Approve b?")
        await client.answer(a.id, {"approved": True}, by="alice")
        report = await Resumer(graph, client=client).run_once()
        assert report.resumed == {tid: [a.id]}
        state = graph.get_state(config)
        assert [it.id for it in state.interrupts] == [parse_task_key(b.key)[1]]  # type: ignore[index]

        await client.cancel(b.id, by="ops", reason="not needed")
        report = await Resumer(graph, client=client).run_once()
        assert report.resumed == {tid: [b.id]}
        final = graph.get_state(config)
    assert final.next == () and final.interrupts == ()
    assert sorted(final.values["log"]) == ["a: True", "b: cancelled"]
    assert len(await client.list(key_prefix="langgraph:")) == 2


async def test_no_duplicate_tasks_across_reruns(client: Client, database_url: str) -> None:
    calls: list[str] = []
    tid = thread()
    config = cfg(tid, client)
    with checkpointer(database_url) as saver:
        graph = single(saver, calls)
        first = await asyncio.to_thread(
            graph.invoke, {"order_id": "A-3", "amount": 5.0}, config, version="v2"
        )
        for _ in range(3):  # re-runs of the interrupted node (e.g. a restarted worker)
            again = await asyncio.to_thread(graph.invoke, None, config, version="v2")
            assert [i.id for i in again.interrupts] == [i.id for i in first.interrupts]
        [task] = await tasks_of(client, 1)
        assert calls == ["before"] * 4
        await client.answer(task.id, {"approved": False}, by="alice")
        # Resumed by hand with the outcome envelope: the node re-runs, creates nothing new.
        [it] = first.interrupts
        done = await asyncio.to_thread(
            graph.invoke,
            Command(resume={it.id: resume_value(await client.get(task.id))}),
            config,
            version="v2",
        )
    assert done.value["approved"] is False
    assert len(await client.list(limit=100)) == 1


async def test_timeout_and_cancel_reach_the_node_as_outcomes(
    client: Client, database_url: str
) -> None:
    calls: list[str] = []
    with checkpointer(database_url) as saver:
        out = await asyncio.to_thread(
            invoke, single(saver, calls, timeout=0.3), {"order_id": "A-4", "amount": 1.0},
            cfg(thread(), client), client=client,
        )  # fmt: skip
        assert out.value["status"] == "escalated (timed_out)"
        assert calls[-1] == "not answered: timed_out"
        [task] = await client.list(key_prefix="langgraph:")
        assert task.status is Status.TIMED_OUT

        # human() raises inloop.Cancelled in the node, which the node catches.
        tid = thread()
        graph = parallel(saver, [])
        run = asyncio.ensure_future(
            asyncio.to_thread(invoke, graph, {"log": []}, cfg(tid, client), client=client)
        )
        page = await tasks_of(client, 3)
        for t in page[1:]:
            await client.cancel(t.id, by="ops", reason="duplicate order")
        out = await asyncio.wait_for(run, 20)
    assert sorted(out.value["log"]) == ["a: cancelled", "b: cancelled"]


async def test_several_resumers_resume_each_answer_once(
    client: Client, database_url: str, namespace: str
) -> None:
    calls: list[str] = []
    tids = [thread() for _ in range(3)]
    with checkpointer(database_url) as saver:
        graph = single(saver, calls)
        for tid in tids:
            await asyncio.to_thread(
                graph.invoke, {"order_id": tid, "amount": 2.0}, cfg(tid, client), version="v2"
            )
        for t in await tasks_of(client, 3):
            await client.answer(t.id, {"approved": True}, by="alice")
        others = [Client(database_url, namespace=namespace) for _ in range(3)]
        try:
            reports = await asyncio.gather(
                *(Resumer(graph, client=c).run_once() for c in [client, *others])
            )
        finally:
            for c in others:
                await c.close()
        for tid in tids:
            assert graph.get_state(cfg(tid, client)).values["approved"] is True
    resumed = [tid for r in reports for tid in r.resumed]
    assert sorted(resumed) == sorted(tids)  # each thread by exactly one resumer
    assert calls.count("after: True") == 3
    assert not any(r.failed for r in reports)


async def test_cross_process_resume_after_sigkill(
    client: Client, database_url: str, namespace: str
) -> None:
    """The asking process is SIGKILLed while it waits; the answer comes while it is down; a
    Resumer in another process (this one) resumes the thread from the checkpointer."""
    tid = thread()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "lg_agent.py"), database_url, namespace, tid],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        [task] = await tasks_of(client, 1)
        # Let the checkpoint of the interrupt commit, then kill the waiting process.
        with checkpointer(database_url) as saver:
            graph = single(saver, [])
            deadline = time.monotonic() + 10
            while not graph.get_state(cfg(tid, client)).interrupts:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert proc.returncode == -signal.SIGKILL
            await client.answer(task.id, {"approved": True, "note": "while down"}, by="alice")
            calls: list[str] = []
            graph = single(saver, calls)
            report = await Resumer(graph, client=client).run_once()
            assert report.resumed == {tid: [task.id]}
            state = graph.get_state(cfg(tid, client))
            assert state.values["approved"] is True and state.next == ()
            assert calls == ["before", "after: True"]
            # A second pass finds nothing left to do.
            again = await Resumer(graph, client=client).run_once()
            assert again.resumed == {}
    finally:
        proc.kill()
    assert len(await client.list(key_prefix="langgraph:")) == 1


async def test_hitl_middleware_requests_map_to_a_decisions_form(
    client: Client, database_url: str
) -> None:
    """LangChain's HumanInTheLoopMiddleware on a real agent (a scripted chat model): the
    batched request becomes a task offering exactly the allowed decisions; an edit runs the
    edited arguments."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import HumanInTheLoopMiddleware
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    sent: list[dict[str, Any]] = []

    def send_email(to: str, body: str) -> str:
        """Sends an email."""
        sent.append({"to": to, "body": body})
        return f"sent to {to}"

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    model = Model(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "send_email", "args": {"to": "a@x.io", "body": "hi"}, "id": "c1"}
                    ],
                ),
                AIMessage(content="done"),
            ]
        )
    )
    tid = thread()
    with checkpointer(database_url) as saver:
        agent = create_agent(
            model,
            tools=[send_email],
            middleware=[
                HumanInTheLoopMiddleware(
                    interrupt_on={"send_email": {"allowed_decisions": ["approve", "edit"]}}
                )
            ],
            checkpointer=saver,
        )
        run = asyncio.ensure_future(
            asyncio.to_thread(
                invoke, agent, {"messages": [{"role": "user", "content": "mail a"}]},
                cfg(tid, client), client=client,
            )
        )  # fmt: skip
        [task] = await tasks_of(client, 1)
        assert task.title == "Review tool call: send_email"
        assert task.payload["actions"][0]["args"] == {"to": "a@x.io", "body": "hi"}
        # "reject" is not allowed for this tool: the core refuses it.
        with pytest.raises(InvalidAnswer):
            await client.answer(task.id, {"decisions": [{"type": "reject"}]}, by="bob")
        with pytest.raises(InvalidAnswer):  # one decision per action, no more
            await client.answer(
                task.id, {"decisions": [{"type": "approve"}, {"type": "approve"}]}, by="bob"
            )
        await client.answer(
            task.id,
            {"decisions": [{"type": "edit", "args": {"to": "b@x.io", "body": "hello"}}]},
            by="bob",
        )
        out = await asyncio.wait_for(run, 20)
    assert sent == [{"to": "b@x.io", "body": "hello"}]
    assert out.value["messages"][-1].content == "done"


async def test_hitl_middleware_per_call_uses_the_interrupts_own_schema(
    client: Client, database_url: str
) -> None:
    """``interrupt_mode="per_call"``: one ``ToolApprovalRequest`` interrupt per gated tool
    call, each its own task whose form is the interrupt's ``response_schema`` (the decisions
    that tool allows; an edit pinned to the same tool). The answer goes back as is."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import HumanInTheLoopMiddleware
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, ToolMessage

    ran: list[str] = []

    def send_email(to: str, body: str) -> str:
        """Sends an email."""
        ran.append(f"send_email {to} {body}")
        return f"sent to {to}"

    def delete_file(path: str) -> str:
        """Deletes a file."""
        ran.append(f"delete_file {path}")
        return f"deleted {path}"

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    model = Model(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "send_email", "args": {"to": "a@x.io", "body": "hi"}, "id": "c1"},
                        {"name": "delete_file", "args": {"path": "/etc/passwd"}, "id": "c2"},
                    ],
                ),
                AIMessage(content="done"),
            ]
        )
    )
    tid = thread()
    with checkpointer(database_url) as saver:
        agent = create_agent(
            model,
            tools=[send_email, delete_file],
            middleware=[
                HumanInTheLoopMiddleware(
                    interrupt_on={
                        "send_email": {"allowed_decisions": ["approve", "edit"]},
                        "delete_file": {"allowed_decisions": ["approve", "reject"]},
                    },
                    interrupt_mode="per_call",
                )
            ],
            checkpointer=saver,
        )
        run = asyncio.ensure_future(
            asyncio.to_thread(
                invoke, agent, {"messages": [{"role": "user", "content": "mail a, delete"}]},
                cfg(tid, client), client=client,
            )
        )  # fmt: skip
        tasks = {t.title: t for t in await tasks_of(client, 2)}
        assert set(tasks) == {"Review tool call: send_email", "Review tool call: delete_file"}
        mail, delete = tasks["Review tool call: send_email"], tasks["Review tool call: delete_file"]
        assert mail.payload["args"] == {"to": "a@x.io", "body": "hi"}
        assert mail.payload["tool_call_id"] == "c1"
        assert delete.payload["args"] == {"path": "/etc/passwd"}
        assert parse_task_key(mail.key) is not None and parse_task_key(delete.key) is not None
        # Each form offers exactly that tool's decisions; an edit cannot switch tools.
        with pytest.raises(InvalidAnswer):
            await client.answer(mail.id, {"type": "reject", "message": "no"}, by="bob")
        with pytest.raises(InvalidAnswer):
            await client.answer(
                mail.id,
                {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "/"}}},
                by="bob",
            )
        with pytest.raises(InvalidAnswer):
            await client.answer(delete.id, {"type": "edit", "edited_action": {}}, by="bob")
        await asyncio.sleep(0.2)
        assert ran == [] and not run.done()
        edited = {"name": "send_email", "args": {"to": "b@x.io", "body": "hello"}}
        await client.answer(mail.id, {"type": "edit", "edited_action": edited}, by="bob")
        await client.answer(delete.id, {"type": "reject", "message": "never"}, by="bob")
        out = await asyncio.wait_for(run, 20)
    assert ran == ["send_email b@x.io hello"]
    tool_messages = {m.tool_call_id: m for m in out.value["messages"] if isinstance(m, ToolMessage)}
    assert "sent to b@x.io" in str(tool_messages["c1"].content)
    assert "never" in str(tool_messages["c2"].content)
    assert out.value["messages"][-1].content == "done"
    assert len(await client.list(key_prefix="langgraph:")) == 2


def test_hitl_form_round_trip() -> None:
    request = {
        "action_requests": [
            {"name": "refund", "args": {"amount": 5}, "description": "Refund?"},
            {"name": "email", "args": {"to": "a"}},
        ],
        "review_configs": [
            {"action_name": "refund", "allowed_decisions": ["approve", "reject"]},
            {"action_name": "email", "allowed_decisions": ["edit", "respond"]},
        ],
    }
    title, _, schema = hitl_form(request)
    assert title == "Review tool calls: refund, email"
    items = schema["properties"]["decisions"]["prefixItems"]
    assert [[b["properties"]["type"]["const"] for b in i["oneOf"]] for i in items] == [
        ["approve", "reject"],
        ["edit", "respond"],
    ]
    answer = {
        "decisions": [
            {"type": "reject", "message": "too much"},
            {"type": "edit", "args": {"to": "b"}},
        ]
    }
    assert hitl_decisions(request, answer) == {
        "decisions": [
            {"type": "reject", "message": "too much"},
            {"type": "edit", "edited_action": {"name": "email", "args": {"to": "b"}}},
        ]
    }
    assert json.loads(json.dumps(schema)) == schema
