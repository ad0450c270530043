"""The Pydantic AI adapter with a scripted FunctionModel (no network), on SQLite and
PostgreSQL: approvals approved, denied and edited; questions; timeouts; resume in a new
process; approvals bound to the exact arguments; the in-run capabilities."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pa_agents import EXECUTED, make_agent, prompt
from pydantic_ai.capabilities import HandleDeferredToolCalls, RequestInput
from pydantic_ai.messages import ToolCallPart, ToolReturnPart
from pydantic_ai.tools import DeferredToolRequests

from inloop import Client, InvalidAnswer, KeyReused, Status, Task
from inloop.pydantic_ai import (
    ArgumentsChanged,
    HumanReview,
    PendingRun,
    args_digest,
    build_results,
    request_humans,
)

HERE = Path(__file__).parent
REFUND = ("refund", {"order_id": "A-1", "amount": 500.0}, "call_refund")
SMALL = ("refund", {"order_id": "A-2", "amount": 5.0}, "call_small")
QUESTION = ("ask_human", {"question": "Which plan?"}, "call_ask")


@pytest.fixture(autouse=True)
def _clear() -> None:
    EXECUTED.clear()


async def deferred(
    client: Client, run_id: str, *calls: tuple[str, dict[str, Any], str], **kw: Any
) -> PendingRun:
    agent = make_agent()
    result = await agent.run(prompt(*calls))
    assert isinstance(result.output, DeferredToolRequests)
    return await request_humans(result, agent=agent, run_id=run_id, client=client, **kw)


async def only_task(client: Client) -> Task:
    [task] = await client.list(key_prefix="pydantic-ai:")
    return task


def tool_returns(result: Any) -> dict[str, ToolReturnPart]:
    return {
        p.tool_call_id: p
        for m in result.all_messages()
        for p in getattr(m, "parts", [])
        if isinstance(p, ToolReturnPart)
    }


async def test_approval_approved_runs_the_exact_arguments_once(client: Client) -> None:
    agent = make_agent()
    first = await agent.run(prompt(REFUND, SMALL))
    pending = await request_humans(first, agent=agent, run_id="run-approve", client=client)
    assert EXECUTED == [{"order_id": "A-2", "amount": 5.0}]  # small refund: no approval needed
    task = await only_task(client)
    assert task.title == "Approve this refund?"
    assert task.key == "pydantic-ai:run-approve:call_refund"
    assert task.payload["args"] == {"order_id": "A-1", "amount": 500.0}
    assert task.payload["args_digest"] == args_digest({"order_id": "A-1", "amount": 500.0})
    # Idempotent: asking again for the same run creates nothing new.
    again = await request_humans(first, agent=agent, run_id="run-approve", client=client)
    assert again.task_ids == pending.task_ids and again.record_id == pending.record_id
    assert len(await client.list(key_prefix="pydantic-ai:")) == 1
    assert await pending.results(wait=False) is None

    await client.answer(task.id, {"decision": "approve"}, by="alice")
    result = await pending.resume(make_agent())
    assert result is not None
    assert "refunded 500.0 on A-1" in result.output
    assert EXECUTED[-1] == {"order_id": "A-1", "amount": 500.0}
    # At most once: a second resume (any process) gets nothing to do.
    assert await (await PendingRun.load("run-approve", client=client)).resume(make_agent()) is None
    assert len(EXECUTED) == 2


async def test_approval_denied(client: Client) -> None:
    pending = await deferred(client, "run-deny", REFUND)
    task = await only_task(client)
    await client.answer(task.id, {"decision": "deny", "message": "too much"}, by="bob")
    result = await pending.resume(make_agent())
    assert result is not None and result.output == "refund=too much"
    assert EXECUTED == []


async def test_approval_edited_and_edits_checked_against_the_tool_schema(client: Client) -> None:
    pending = await deferred(client, "run-edit", REFUND)
    task = await only_task(client)
    with pytest.raises(InvalidAnswer) as e:  # the tool's own schema: amount is a number
        await client.answer(
            task.id, {"decision": "edit", "args": {"order_id": "A-1", "amount": "lots"}}, by="b"
        )
    assert e.value.errors
    with pytest.raises(InvalidAnswer):  # not a decision the form offers
        await client.answer(task.id, {"decision": "maybe"}, by="bob")
    edited = {"order_id": "A-1", "amount": 250.0}
    await client.answer(task.id, {"decision": "edit", "args": edited}, by="bob")
    results = await pending.results()
    assert results is not None
    assert results.metadata["call_refund"]["args_digest"] == args_digest(edited)
    result = await pending.resume(make_agent())
    assert result is not None and "refunded 250.0 on A-1" in result.output
    assert EXECUTED == [edited]


async def test_question_answered(client: Client) -> None:
    pending = await deferred(client, "run-q", QUESTION)
    task = await only_task(client)
    assert task.title == "Which plan?" and task.response_schema == {"type": "string"}
    with pytest.raises(InvalidAnswer):
        await client.answer(task.id, 42, by="carol")
    await client.answer(task.id, "Pro plan", by="carol")
    result = await pending.resume(make_agent())
    assert result is not None and result.output == "ask_human=Pro plan"


async def test_timeout_becomes_tool_failed(client: Client) -> None:
    pending = await deferred(client, "run-timeout", QUESTION, REFUND, timeout=0.3)
    result = await pending.resume(make_agent())
    assert result is not None
    returns = tool_returns(result)
    assert returns["call_ask"].outcome == "failed"
    assert "timed out" in str(returns["call_ask"].content)
    assert returns["call_refund"].outcome == "denied" and "timed out" in str(
        returns["call_refund"].content
    )
    assert EXECUTED == []
    assert {t.status for t in await client.list(key_prefix="pydantic-ai:")} == {Status.TIMED_OUT}


async def test_resume_in_a_new_process(client: Client, database_url: str, namespace: str) -> None:
    await deferred(client, "run-xproc", REFUND)
    task = await only_task(client)
    await client.answer(task.id, {"decision": "approve"}, by="alice")
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(HERE / "pa_resume.py"), database_url, namespace, "run-xproc"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert "refunded 500.0 on A-1" in line["output"]
    assert line["executed"] == [{"order_id": "A-1", "amount": 500.0}]
    assert EXECUTED == []  # ran in the child, not here


async def test_approval_refused_when_the_arguments_changed(client: Client) -> None:
    pending = await deferred(client, "run-changed", REFUND)
    task = await only_task(client)
    await client.answer(task.id, {"decision": "approve"}, by="alice")
    # The same call id now carries other arguments: the approval does not carry over.
    changed = DeferredToolRequests(
        approvals=[ToolCallPart("refund", {"order_id": "A-1", "amount": 5000.0}, "call_refund")]
    )
    with pytest.raises(ArgumentsChanged):
        build_results(changed, {"call_refund": await client.get(task.id)})
    # And re-asking for the same run with other arguments is refused by the core's digest.
    with pytest.raises(KeyReused):
        await deferred(
            client, "run-changed", ("refund", {"order_id": "A-1", "amount": 5000.0}, "call_refund")
        )
    assert pending.task_ids == {"call_refund": task.id}
    assert EXECUTED == []


async def wait_task(client: Client, timeout: float = 20) -> Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.list(key_prefix="pydantic-ai:")
        if page:
            return page[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no task was created")


@pytest.mark.parametrize("capability", ["handler", "ask"])
async def test_in_run_waits_for_the_person(client: Client, capability: str) -> None:
    review = HumanReview(client=client, timeout=timedelta(minutes=5))
    cap: Any = (
        HandleDeferredToolCalls(handler=review.handler)
        if capability == "handler"
        else RequestInput(ask=review.ask, timeout=timedelta(seconds=30))
    )
    agent = make_agent(output_deferred=False, capabilities=[cap])
    run = asyncio.ensure_future(agent.run(prompt(REFUND, QUESTION)))
    await asyncio.sleep(0)
    while len(await client.list(key_prefix="pydantic-ai:")) < 2:
        await asyncio.sleep(0.02)
    assert not run.done() and EXECUTED == []
    for t in await client.list(key_prefix="pydantic-ai:"):
        answer: Any = {"decision": "approve"} if t.title.startswith("Approve") else "Basic"
        await client.answer(t.id, answer, by="dora")
    result = await asyncio.wait_for(run, 20)
    assert "refunded 500.0 on A-1" in result.output and "ask_human=Basic" in result.output
    assert EXECUTED == [{"order_id": "A-1", "amount": 500.0}]
