"""The OpenAI Agents SDK adapter with the SDK's own ScriptedModel (no network), on SQLite and
PostgreSQL: approvals approved and rejected with reasons, two stops in one run, a resume in
another process after the asking one was SIGKILLed (the refund happens exactly once, counted in
a file), the core's verification and an SDK verifier sending answers back, timeouts, and bad
input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agents import Runner, RunState
from oa_agents import EXECUTED, make_agent, prompt

from inloop import (
    Client,
    Conflict,
    InvalidAnswer,
    InvalidArgument,
    NotFound,
    Status,
    Task,
    VerificationRejected,
    verifiers,
)
from inloop.openai_agents import (
    ArgumentsChanged,
    PendingRun,
    args_digest,
    decide,
    record_key,
    request_approvals,
    run,
)

HERE = Path(__file__).parent
BIG = ("refund", {"order_id": "A-1", "amount": 500.0}, "call_big")
SMALL = ("refund", {"order_id": "A-2", "amount": 5.0}, "call_small")
SECOND = ("refund", {"order_id": "A-3", "amount": 700.0}, "call_second")


@pytest.fixture(autouse=True)
def _clear() -> None:
    EXECUTED.clear()


async def pending_tasks(client: Client, n: int = 1, timeout: float = 20) -> list[Task]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.list(key_prefix="openai-agents:", status="pending")
        if len(page) >= n:
            return list(page)
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} pending tasks were created")


async def test_approved_runs_once_and_unapproved_calls_run_at_once(client: Client) -> None:
    agent = make_agent()
    job = asyncio.ensure_future(
        run(agent, prompt([BIG, SMALL]), run_id="run-ok", client=client, notify=["slack:#ops"])
    )
    [task] = await pending_tasks(client)
    assert task.key == "openai-agents:run-ok:call_big"
    assert task.title == "Approve refund?" and task.notify == ["slack:#ops"]
    assert task.payload["args"] == {"order_id": "A-1", "amount": 500.0}
    assert task.payload["args_digest"] == args_digest({"order_id": "A-1", "amount": 500.0})
    # The SDK runs the calls that need no approval at once; the big one waits.
    assert not job.done() and EXECUTED == [{"order_id": "A-2", "amount": 5.0}]
    with pytest.raises(InvalidAnswer):  # not a decision the form offers
        await client.answer(task.id, {"decision": "maybe"}, by="alice")
    await client.answer(task.id, {"decision": "approve", "reason": "ok"}, by="alice")
    result = await asyncio.wait_for(job, 20)
    assert result is not None
    assert "refunded 500.0 on A-1" in result.final_output
    assert "refunded 5.0 on A-2" in result.final_output
    assert sorted(e["order_id"] for e in EXECUTED) == ["A-1", "A-2"]
    # The stop was claimed: starting the same run id again is refused, nothing runs twice.
    with pytest.raises(Conflict):
        await run(make_agent(), prompt([BIG]), run_id="run-ok", client=client)
    with pytest.raises(NotFound):
        await PendingRun.load("run-ok", client=client)
    assert len(EXECUTED) == 2


async def test_rejected_with_a_reason_the_model_reads(client: Client) -> None:
    job = asyncio.ensure_future(run(make_agent(), prompt([BIG]), run_id="run-no", client=client))
    [task] = await pending_tasks(client)
    await client.answer(task.id, {"decision": "reject", "reason": "over the limit"}, by="bob")
    result = await asyncio.wait_for(job, 20)
    assert result is not None and result.final_output == "over the limit"
    assert EXECUTED == []


async def test_two_stops_in_one_run_are_two_rounds(client: Client, namespace: str) -> None:
    job = asyncio.ensure_future(
        run(make_agent(), prompt([BIG], [SECOND]), run_id="run-2", client=client)
    )
    [first] = await pending_tasks(client)
    await client.answer(first.id, {"decision": "approve"}, by="carol")
    second = next(
        t for t in await pending_tasks(client) if t.key == "openai-agents:run-2:call_second"
    )
    await client.answer(second.id, {"decision": "reject"}, by="carol")
    result = await asyncio.wait_for(job, 20)
    assert result is not None
    assert "refunded 500.0 on A-1" in result.final_output
    assert "A person rejected this tool call." in result.final_output
    assert EXECUTED == [{"order_id": "A-1", "amount": 500.0}]
    for n in (1, 2):
        rec = await client.get_by_key(record_key("run-2", n), namespace=f"{namespace}.runs")
        assert rec.status is Status.COMPLETED and rec.payload["round"] == n


async def test_resume_in_another_process_after_sigkill(
    client: Client, database_url: str, namespace: str, tmp_path: Path
) -> None:
    """The asking process is SIGKILLed while it waits; the answer comes while it is down; a
    new process continues the run from the stored RunState; the refund happens once."""
    effects = tmp_path / "effects.jsonl"
    env = {**os.environ, "INLOOP_TEST_EFFECTS": str(effects)}
    child = [sys.executable, str(HERE / "oa_child.py"), database_url, namespace, "run-x"]
    asker = subprocess.Popen(
        [*child, prompt([BIG])], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )  # fmt: skip
    try:
        [task] = await pending_tasks(client)
        deadline = time.monotonic() + 20
        while True:  # the record (the serialized RunState) is written right after the tasks
            try:
                await PendingRun.load("run-x", client=client)
                break
            except NotFound:
                assert time.monotonic() < deadline, "no record"
                await asyncio.sleep(0.02)
        asker.send_signal(signal.SIGKILL)
        asker.wait(10)
        assert asker.returncode == -signal.SIGKILL
    finally:
        asker.kill()
    await client.answer(task.id, {"decision": "approve"}, by="alice")

    def resume() -> dict[str, Any]:
        out = subprocess.run([*child, "-"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    first = await asyncio.to_thread(resume)
    assert first["output"] == "refunded 500.0 on A-1", first
    again = await asyncio.to_thread(resume)  # a second resumer: nothing left to do
    assert again["error"] == "Conflict" and again["executed"] == []
    lines = effects.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"order_id": "A-1", "amount": 500.0}]
    assert EXECUTED == []  # it ran in the child


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
        run(make_agent(), prompt([BIG]), run_id="run-v", client=client, verification=needs_reason)
    )
    [task] = await pending_tasks(client)
    assert task.verification is not None
    with pytest.raises(VerificationRejected):
        await client.answer(task.id, {"decision": "reject"}, by="dora")
    await asyncio.sleep(0.2)
    assert not job.done() and (await client.get(task.id)).status is Status.PENDING
    await client.answer(task.id, {"decision": "reject", "reason": "duplicate"}, by="dora")
    result = await asyncio.wait_for(job, 20)
    assert result is not None and result.final_output == "duplicate"


async def test_sdk_verifier_rejects_then_accepts(client: Client) -> None:
    def big_needs_reason(payload: dict[str, Any], answer: dict[str, Any]) -> verifiers.Verdict:
        if payload["args"]["amount"] > 400 and not answer.get("reason"):
            return verifiers.rejected("refunds over 400 need a reason")
        return verifiers.passed()

    job = asyncio.ensure_future(
        run(make_agent(), prompt([BIG]), run_id="run-sv", client=client, verifier=big_needs_reason)
    )
    [task] = await pending_tasks(client)
    await client.answer(task.id, {"decision": "approve"}, by="erin")
    deadline = time.monotonic() + 20
    while not (await client.get(task.id)).rejections:  # the verifier sent it back
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    again = await client.get(task.id)
    assert again.status is Status.PENDING and again.rejections[0]["verifier"] == (
        "sdk:big_needs_reason"
    )
    assert not job.done() and EXECUTED == []
    await client.answer(task.id, {"decision": "approve", "reason": "VIP"}, by="erin")
    result = await asyncio.wait_for(job, 20)
    assert result is not None and result.final_output == "refunded 500.0 on A-1"
    assert len(EXECUTED) == 1


async def test_timeout_is_a_rejection_never_an_approval(client: Client) -> None:
    result = await run(make_agent(), prompt([BIG]), run_id="run-t", client=client, timeout=0.3)
    assert result is not None and "timed out" in result.final_output
    assert EXECUTED == []
    [task] = await client.list(key_prefix="openai-agents:")
    assert task.status is Status.TIMED_OUT


async def test_bad_input_and_changed_arguments(client: Client) -> None:
    with pytest.raises(InvalidArgument):
        await run(make_agent(), "x", run_id="", client=client)
    with pytest.raises(NotFound):
        await run(make_agent(), None, run_id="never-started", client=client)
    agent = make_agent()
    done = await Runner.run(agent, prompt([SMALL]))
    with pytest.raises(InvalidArgument):  # it did not stop on interruptions
        await request_approvals(done, run_id="run-bad", client=client)
    stopped = await Runner.run(agent, prompt([BIG]))
    pending = await request_approvals(stopped, run_id="run-bad", client=client)
    again = await request_approvals(stopped, run_id="run-bad", client=client)
    assert again.record_id == pending.record_id and again.round == 1  # idempotent
    task = await client.get(pending.task_ids["call_big"])
    await client.answer(task.id, {"decision": "approve"}, by="fred")
    # The stored state now carries other arguments for the same call: the approval does not
    # apply to them.
    forged = json.loads(json.dumps(pending.state).replace("500.0", "5000.0"))
    state = await RunState.from_json(agent, forged)
    with pytest.raises(ArgumentsChanged):
        decide(state, {"call_big": await client.get(task.id)})
    assert EXECUTED == [{"order_id": "A-2", "amount": 5.0}]  # only the run that needed none
