"""The LlamaIndex workflows adapter with real ``llama_index.core.workflow`` workflows (plain
steps, no LLM), on SQLite and PostgreSQL: an approval answered through inloop, a rejection with
a reason, two stops in one run, two requests in one stop, a run SIGKILLed while waiting and
continued by a new process from the serialized Context (each side effect happens once, counted
in a file; a third process is refused), ``ctx.wait_for_event`` with the plain event pair, the
core's verification sending an answer back, an SDK verifier doing the same, a timeout, and bad
input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from li_flows import (
    EFFECTS,
    RESPONSES,
    AskRefund,
    ItemAnswer,
    ManagerDecision,
    PairFlow,
    RefundDecision,
    RefundFlow,
    ShipFlow,
)
from llama_index.core.workflow import Context, HumanResponseEvent

from inloop import (
    Client,
    Conflict,
    InvalidAnswer,
    InvalidArgument,
    NotFound,
    Status,
    Task,
    TimedOut,
    VerificationRejected,
    verifiers,
)
from inloop.llamaindex import (
    PendingRun,
    record_key,
    request_input,
    request_payload,
    response_event,
    response_schema,
    run,
)

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _clear() -> None:
    EFFECTS.clear()


async def pending_tasks(client: Client, n: int = 1, timeout: float = 30) -> list[Task]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.list(key_prefix="llamaindex:", status="pending")
        if len(page) >= n:
            return list(page)
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} pending tasks were created")


def kinds() -> list[str]:
    return [e["effect"] for e in EFFECTS]


async def test_approved_in_process_and_a_rerun_is_refused(client: Client) -> None:
    job = asyncio.ensure_future(
        run(RefundFlow(timeout=30), run_id="r-ok", response=RESPONSES, client=client,
            start={"order_id": "A-1", "amount": 50.0}, notify=["slack:#refunds"])
    )  # fmt: skip
    [task] = await pending_tasks(client)
    assert task.key == "llamaindex:r-ok:1:0"
    assert task.title == "Refund A-1?" and task.notify == ["slack:#refunds"]
    assert task.payload["request"] == {"order_id": "A-1", "amount": 50.0, "prefix": "Refund A-1?"}
    assert task.payload["response_event"] == "li_flows.RefundDecision"
    # order_id is carried over from the request: the form asks only for the decision.
    assert set(task.response_schema["properties"]) == {"decision", "reason"}
    assert task.response_schema["required"] == ["decision"]
    assert not job.done() and kinds() == ["prepared"]
    with pytest.raises(InvalidAnswer):  # not a decision the form offers
        await client.answer(task.id, {"decision": "maybe"}, by="alice")
    await client.answer(task.id, {"decision": "approve", "reason": "ok"}, by="alice")
    result = await asyncio.wait_for(job, 30)
    assert result == {"order_id": "A-1", "refunded": True, "reason": "ok"}
    assert kinds() == ["prepared", "refunded"]
    with pytest.raises(Conflict):  # the stop was claimed: nothing runs twice
        await run(RefundFlow(), run_id="r-ok", response=RESPONSES, client=client,
                  start={"order_id": "A-1", "amount": 50.0})  # fmt: skip
    with pytest.raises(NotFound):
        await PendingRun.load("r-ok", client=client)
    assert kinds() == ["prepared", "refunded"]


async def test_rejected_with_a_reason(client: Client) -> None:
    job = asyncio.ensure_future(
        run(RefundFlow(timeout=30), run_id="r-no", response=RESPONSES, client=client,
            start={"order_id": "A-2", "amount": 80.0})
    )  # fmt: skip
    [task] = await pending_tasks(client)
    await client.answer(task.id, {"decision": "reject", "reason": "duplicate"}, by="bob")
    result = await asyncio.wait_for(job, 30)
    assert result == {"order_id": "A-2", "refunded": False, "reason": "duplicate"}
    assert kinds() == ["prepared"]


async def test_two_stops_in_one_run_are_two_rounds(client: Client, namespace: str) -> None:
    job = asyncio.ensure_future(
        run(RefundFlow(timeout=30), run_id="r-2", response=RESPONSES, client=client,
            start={"order_id": "A-3", "amount": 5000.0})
    )  # fmt: skip
    [first] = await pending_tasks(client)
    await client.answer(first.id, {"decision": "approve"}, by="carol")
    deadline = time.monotonic() + 30
    while True:
        second = [t for t in await pending_tasks(client) if t.key == "llamaindex:r-2:2:0"]
        if second:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert second[0].title == "Input needed: AskManager"
    assert set(second[0].response_schema["properties"]) == {"approved"}
    await client.answer(second[0].id, {"approved": True}, by="dave")
    result = await asyncio.wait_for(job, 30)
    assert result == {"order_id": "A-3", "refunded": True}
    assert kinds() == ["prepared", "refunded"]
    for n in (1, 2):
        rec = await client.get_by_key(record_key("r-2", n), namespace=f"{namespace}.runs")
        assert rec.status is Status.COMPLETED and rec.payload["round"] == n


async def test_two_requests_in_one_stop_are_one_round(client: Client) -> None:
    job = asyncio.ensure_future(
        run(PairFlow(timeout=30), run_id="r-pair", response=ItemAnswer, client=client,
            start={"items": ["lamp", "desk"]})
    )  # fmt: skip
    tasks = await pending_tasks(client, 2)
    by_key = {t.key: t for t in tasks}
    assert set(by_key) == {"llamaindex:r-pair:1:0", "llamaindex:r-pair:1:1"}
    assert [by_key[f"llamaindex:r-pair:1:{i}"].payload["request"]["item"] for i in (0, 1)] == [
        "lamp",
        "desk",
    ]
    assert set(tasks[0].response_schema["properties"]) == {"keep"}  # item is carried over
    await client.answer(by_key["llamaindex:r-pair:1:0"].id, {"keep": True}, by="ivy")
    await asyncio.sleep(0.2)
    assert not job.done()  # the run resumes when both are answered
    await client.answer(by_key["llamaindex:r-pair:1:1"].id, {"keep": False}, by="ivy")
    assert await asyncio.wait_for(job, 30) == ["lamp"]
    assert EFFECTS == [{"effect": "kept", "items": ["lamp"]}]


async def wait_record(client: Client, run_id: str) -> PendingRun:
    deadline = time.monotonic() + 60
    while True:  # the record (the serialized Context) is written right after the task
        try:
            return await PendingRun.load(run_id, client=client)
        except NotFound:
            assert time.monotonic() < deadline, "no record"
            await asyncio.sleep(0.05)


async def test_resume_in_another_process_after_sigkill(
    client: Client, database_url: str, namespace: str, tmp_path: Path
) -> None:
    """The asking process is SIGKILLed while it waits; the answer comes while it is down; a new
    process restores the Context from inloop and finishes the run; every step ran once."""
    effects = tmp_path / "effects.jsonl"
    env = {**os.environ, "INLOOP_TEST_EFFECTS": str(effects)}
    child = [sys.executable, str(HERE / "li_child.py"), database_url, namespace, "r-x"]
    start = json.dumps({"order_id": "A-9", "amount": 70.0})
    asker = subprocess.Popen(
        [*child, start], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        pending = await wait_record(client, "r-x")
        assert pending.round == 1 and len(pending.task_ids) == 1
        assert pending.context["is_running"] is True  # a snapshot of a live run
        asker.send_signal(signal.SIGKILL)
        asker.wait(10)
        assert asker.returncode == -signal.SIGKILL
    finally:
        asker.kill()
    [task] = await pending_tasks(client)
    await client.answer(task.id, {"decision": "approve", "reason": "fine"}, by="alice")

    def resume() -> dict[str, Any]:
        out = subprocess.run([*child, "-"], env=env, capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    first = await asyncio.to_thread(resume)
    assert first["result"] == {"order_id": "A-9", "refunded": True, "reason": "fine"}, first
    assert [e["effect"] for e in first["effects"]] == ["refunded"]  # prepare did not rerun
    again = await asyncio.to_thread(resume)  # a second resumer: nothing left to do
    assert again["error"] == "Conflict" and again["effects"] == []
    lines = [json.loads(x) for x in effects.read_text().splitlines()]
    assert lines == [
        {"effect": "prepared", "order_id": "A-9"},
        {"effect": "refunded", "order_id": "A-9", "amount": 70.0},
    ]
    assert EFFECTS == []  # it all ran in the children


async def test_low_level_stop_and_resume_from_a_fresh_workflow(client: Client) -> None:
    """request_input / PendingRun with a hand-driven handler: the asking side stops the run
    and exits; a fresh workflow instance resumes it; a second claim gets None."""
    flow = RefundFlow(timeout=30)
    handler = flow.run(order_id="A-5", amount=20.0)
    async for ev in handler.stream_events():
        if isinstance(ev, AskRefund):
            await handler.cancel_run()
            break
    assert request_payload(ev) == {"order_id": "A-5", "amount": 20.0, "prefix": "Refund A-5?"}
    pending = await request_input(
        handler.ctx.to_dict(), [ev], RESPONSES, run_id="r-low", client=client
    )
    again = await request_input(
        handler.ctx.to_dict(), [ev], RESPONSES, run_id="r-low", client=client
    )
    assert again.record_id == pending.record_id and again.task_ids == pending.task_ids
    assert await pending.resume(RefundFlow(), RESPONSES, wait=False) is None  # unanswered
    await client.answer(pending.task_ids[0], {"decision": "approve"}, by="erin")
    with pytest.raises(InvalidArgument, match="not among the response classes"):
        await pending.resume(RefundFlow(), ManagerDecision)
    resumed = await pending.resume(RefundFlow(timeout=30), RESPONSES)
    assert resumed is not None
    assert await asyncio.wait_for(resumed, 30) == {
        "order_id": "A-5",
        "refunded": True,
        "reason": None,
    }
    assert await pending.resume(RefundFlow(), RESPONSES) is None  # claimed already
    assert kinds() == ["prepared", "refunded"]
    task = await client.get(pending.task_ids[0])
    ev2 = response_event(task, RefundDecision)
    assert isinstance(ev2, RefundDecision) and ev2.order_id == "A-5"
    assert isinstance(Context.from_dict(RefundFlow(), pending.context), Context)


async def test_wait_for_event_with_the_plain_event_pair(client: Client) -> None:
    job = asyncio.ensure_future(
        run(ShipFlow(timeout=30), run_id="r-ship", client=client, start={"parcel": "P-7"})
    )
    [task] = await pending_tasks(client)
    assert task.title == "Ship parcel P-7?"
    assert task.response_schema["required"] == ["response"]  # HumanResponseEvent(response=...)
    await client.answer(task.id, {"response": "leave at the door"}, by="fay")
    assert await asyncio.wait_for(job, 30) == "shipped P-7: leave at the door"
    # wait_for_event re-runs its step from the first line on resume (LlamaIndex's semantics).
    assert kinds() == ["ship-step-started", "ship-step-started", "shipped"]


async def test_core_verification_sends_an_answer_back(client: Client) -> None:
    needs_reason = verifiers.Verification(
        rules=[
            verifiers.Rule(
                name="a rejection needs a reason",
                when={"==": [{"var": "/answer/decision"}, "reject"]},
                check={"nonempty": {"var": "/answer/reason"}},
                message="say why you reject it",
            )
        ]
    )
    job = asyncio.ensure_future(
        run(RefundFlow(timeout=30), run_id="r-v", response=RESPONSES, client=client,
            start={"order_id": "A-6", "amount": 10.0}, verification=needs_reason)
    )  # fmt: skip
    [task] = await pending_tasks(client)
    with pytest.raises(VerificationRejected):
        await client.answer(task.id, {"decision": "reject"}, by="gil")
    await asyncio.sleep(0.2)
    assert not job.done() and (await client.get(task.id)).status is Status.PENDING
    await client.answer(task.id, {"decision": "reject", "reason": "fraud"}, by="gil")
    result = await asyncio.wait_for(job, 30)
    assert result == {"order_id": "A-6", "refunded": False, "reason": "fraud"}


async def test_sdk_verifier_rejects_then_accepts(client: Client) -> None:
    def big_needs_reason(payload: dict[str, Any], answer: dict[str, Any]) -> verifiers.Verdict:
        if payload["request"]["amount"] > 400 and not answer.get("reason"):
            return verifiers.rejected("refunds over 400 need a reason")
        return verifiers.passed()

    job = asyncio.ensure_future(
        run(RefundFlow(timeout=30), run_id="r-sv", response=RESPONSES, client=client,
            start={"order_id": "A-4", "amount": 500.0}, verifier=big_needs_reason)
    )  # fmt: skip
    [task] = await pending_tasks(client)
    await client.answer(task.id, {"decision": "approve"}, by="hal")
    deadline = time.monotonic() + 20
    while not (await client.get(task.id)).rejections:  # the verifier sent it back
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    again = await client.get(task.id)
    assert again.status is Status.PENDING
    assert again.rejections[0]["verifier"] == "sdk:big_needs_reason"
    assert not job.done() and kinds() == ["prepared"]
    await client.answer(task.id, {"decision": "approve", "reason": "VIP"}, by="hal")
    result = await asyncio.wait_for(job, 30)
    assert result == {"order_id": "A-4", "refunded": True, "reason": "VIP"}
    assert kinds() == ["prepared", "refunded"]


async def test_a_timeout_ends_the_run_without_an_answer(client: Client) -> None:
    with pytest.raises(TimedOut, match="nobody answered"):
        await asyncio.wait_for(
            run(RefundFlow(timeout=30), run_id="r-t", response=RESPONSES, client=client,
                start={"order_id": "A-7", "amount": 10.0}, timeout=timedelta(milliseconds=300)),
            30,
        )  # fmt: skip
    assert kinds() == ["prepared"]  # no refund, and the run is over:
    with pytest.raises(Conflict):
        await run(RefundFlow(), run_id="r-t", response=RESPONSES, client=client)


async def test_bad_input_gets_clear_errors(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="run_id"):
        await run(RefundFlow(), run_id="", client=client, start={})
    with pytest.raises(NotFound, match="no start"):
        await run(RefundFlow(), run_id="r-none", client=client)
    with pytest.raises(InvalidArgument, match=r"workflows\.Workflow"):
        await run("not a workflow", run_id="r-bad", client=client, start={})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="start must be"):
        await run(RefundFlow(), run_id="r-bad", client=client, start=[1])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="HumanResponseEvent subclass"):
        response_schema(dict)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="InputRequiredEvent"):
        request_payload(HumanResponseEvent(response="x"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="no response event class for AskRefund"):
        await run(RefundFlow(timeout=30), run_id="r-map", client=client,
                  response={}, start={"order_id": "A-8", "amount": 1.0})  # fmt: skip
    with pytest.raises(InvalidArgument, match="at least one"):
        await request_input({}, [], RESPONSES, run_id="r-empty", client=client)
