"""The CrewAI adapter with the real ``crewai`` (a scripted ``BaseLLM`` subclass, no network), on
SQLite and PostgreSQL: the ``ask_human`` tool and the review of a ``human_input=True`` task
answered through inloop (a revision round, then an approval; ``kickoff`` and the native async
``akickoff``), the SDK verifier on the question and the core's rules on the review, a crew
SIGKILLed while waiting on the question and again while waiting on the review, each time rerun
by a new process with the same run id (the person is asked once per question, the refund
happens once, counted in a file), unanswered requests, and bad input.

CrewAI's pins conflict with other adapters' (see python/requirements-crewai.txt): this file runs
in its own environment (scripts/test-crewai.sh). Elsewhere it skips, unless
``INLOOP_REQUIRE_CREWAI=1``."""

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

if os.environ.get("INLOOP_REQUIRE_CREWAI") != "1":
    pytest.importorskip("crewai", reason="crewai runs in its own environment: test-crewai.sh")

from crew_setup import EFFECTS, QUESTION, make_crew

from inloop import (
    Client,
    InvalidAnswer,
    InvalidArgument,
    Status,
    Task,
    VerificationRejected,
    verifiers,
)
from inloop.crewai import HumanReview, HumanTool, ask_key, review_schema

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _clear() -> None:
    EFFECTS.clear()


async def wait_task(client: Client, prefix: str, timeout: float = 60) -> Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.list(key_prefix=prefix, status="pending")
        if len(page) == 1:
            return page[0]
        assert len(page) < 2, [t.key for t in page]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no pending task with a key starting {prefix!r}")


async def test_tool_and_review_in_process(client: Client) -> None:
    crew = make_crew("c-ok", client)
    with HumanReview(run_id="c-ok", client=client, notify=["slack:#refunds"]) as review:
        job = asyncio.ensure_future(asyncio.to_thread(crew.kickoff))
    ask = await wait_task(client, "crewai:c-ok:ask:")
    assert ask.key == ask_key("c-ok", QUESTION, 0)
    assert ask.payload["question"] == QUESTION and ask.response_schema["required"] == ["answer"]
    assert EFFECTS == []
    await client.answer(ask.id, {"answer": "yes, go ahead"}, by="alice")
    first = await wait_task(client, "crewai:c-ok:review:refund-A-1:0:")
    assert first.notify == ["slack:#refunds"] and first.payload["round"] == 0
    assert first.payload["output"] == "Refunded 500.0 EUR on A-1"
    assert first.payload["task"] == "Refund order A-1 if a person approves it."
    with pytest.raises(InvalidAnswer):  # a revision needs feedback: the core's validation
        await client.answer(first.id, {"decision": "revise"}, by="bob")
    await client.answer(first.id, {"decision": "revise", "feedback": "name the order"}, by="bob")
    second = await wait_task(client, "crewai:c-ok:review:refund-A-1:1:")
    assert second.payload["output"] == "Refunded 500.0 EUR on A-1 (name the order)"
    await client.answer(second.id, {"decision": "approve"}, by="bob")
    out = await asyncio.wait_for(job, 60)
    assert out.raw == "Refunded 500.0 EUR on A-1 (name the order)"
    assert EFFECTS == [{"effect": "refunded", "order_id": "A-1", "amount": 500.0}]
    assert review.unreviewed == []


async def test_native_async_kickoff_uses_the_async_review(client: Client) -> None:
    crew = make_crew("c-async", client)
    with HumanReview(run_id="c-async", client=client):
        job = asyncio.ensure_future(crew.akickoff())
    ask = await wait_task(client, "crewai:c-async:ask:")
    await client.answer(ask.id, {"answer": "yes"}, by="erin")
    review = await wait_task(client, "crewai:c-async:review:refund-A-1:0:")
    await client.answer(review.id, {"decision": "revise", "feedback": "say when"}, by="erin")
    again = await wait_task(client, "crewai:c-async:review:refund-A-1:1:")
    await client.answer(again.id, {"decision": "approve"}, by="erin")
    out = await asyncio.wait_for(job, 60)
    assert out.raw == "Refunded 500.0 EUR on A-1 (say when)"
    assert EFFECTS == [{"effect": "refunded", "order_id": "A-1", "amount": 500.0}]


async def test_rejected_by_the_person_no_refund(client: Client) -> None:
    crew = make_crew("c-no", client, review=False)
    job = asyncio.ensure_future(asyncio.to_thread(crew.kickoff))
    ask = await wait_task(client, "crewai:c-no:ask:")
    await client.answer(ask.id, {"answer": "no, it was never shipped"}, by="carol")
    out = await asyncio.wait_for(job, 60)
    assert out.raw == "No refund: no, it was never shipped" and EFFECTS == []


async def test_sdk_verifier_sends_the_question_back(client: Client) -> None:
    """``verifier=`` on the tool: a bare "yes" is sent back to the person with the reason,
    the crew keeps waiting, and only the answer that passes reaches the agent."""

    def needs_a_reason(payload: dict[str, Any], answer: dict[str, Any]) -> verifiers.Verdict:
        if answer["answer"].strip().lower() == "yes":
            return verifiers.rejected("say why the refund is due")
        return verifiers.passed()

    crew = make_crew("c-sv", client, review=False, verifier=needs_a_reason)
    job = asyncio.ensure_future(asyncio.to_thread(crew.kickoff))
    ask = await wait_task(client, "crewai:c-sv:ask:")
    await client.answer(ask.id, {"answer": "yes"}, by="ivy")
    deadline = time.monotonic() + 20
    while not (await client.get(ask.id)).rejections:  # the verifier sent it back
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    again = await client.get(ask.id)
    assert again.status is Status.PENDING
    assert again.rejections[0]["verifier"] == "sdk:needs_a_reason"
    assert not job.done() and EFFECTS == []
    await client.answer(ask.id, {"answer": "yes, it arrived broken"}, by="ivy")
    out = await asyncio.wait_for(job, 60)
    assert out.raw == "Refunded 500.0 EUR on A-1"
    assert EFFECTS == [{"effect": "refunded", "order_id": "A-1", "amount": 500.0}]


async def test_core_verification_on_the_review(client: Client) -> None:
    """``verification=`` on the review (rules checked by the core at answer time): an approval
    without a note is refused, the review stays open, the approval with one ends it."""
    needs_note = verifiers.Verification(
        rules=[
            verifiers.Rule(
                name="an approval says what was checked",
                when={"==": [{"var": "/answer/decision"}, "approve"]},
                check={"nonempty": {"var": "/answer/feedback"}},
                message="say what you checked",
            )
        ]
    )
    crew = make_crew("c-cv", client)
    with HumanReview(run_id="c-cv", client=client, verification=needs_note):
        job = asyncio.ensure_future(asyncio.to_thread(crew.kickoff))
    ask = await wait_task(client, "crewai:c-cv:ask:")
    await client.answer(ask.id, {"answer": "yes"}, by="jon")
    review = await wait_task(client, "crewai:c-cv:review:refund-A-1:0:")
    with pytest.raises(VerificationRejected, match="say what you checked"):
        await client.answer(review.id, {"decision": "approve"}, by="jon")
    await asyncio.sleep(0.2)
    assert not job.done() and (await client.get(review.id)).status is Status.PENDING
    await client.answer(review.id, {"decision": "approve", "feedback": "receipt seen"}, by="jon")
    out = await asyncio.wait_for(job, 60)
    assert out.raw == "Refunded 500.0 EUR on A-1"
    assert EFFECTS == [{"effect": "refunded", "order_id": "A-1", "amount": 500.0}]


async def test_restarts_ask_once_and_refund_once(
    client: Client, database_url: str, namespace: str, tmp_path: Path
) -> None:
    """SIGKILL while the question waits, then while the review waits; each time a new process
    runs the crew again with the same run id and finds the same tasks."""
    effects = tmp_path / "effects.jsonl"
    env = {**os.environ, "INLOOP_TEST_EFFECTS": str(effects)}
    child = [sys.executable, str(HERE / "crew_child.py"), database_url, namespace, "c-x"]

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            child, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def kill(p: subprocess.Popen[str]) -> None:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert p.returncode == -signal.SIGKILL

    first = start()
    try:
        ask = await wait_task(client, "crewai:c-x:ask:")
        kill(first)
    finally:
        first.kill()
    await client.answer(ask.id, {"answer": "yes"}, by="dora")
    second = start()
    try:
        review = await wait_task(client, "crewai:c-x:review:")
        kill(second)
    finally:
        second.kill()
    assert [json.loads(x)["effect"] for x in effects.read_text().splitlines()] == ["refunded"]
    await client.answer(review.id, {"decision": "approve"}, by="dora")

    def rerun() -> dict[str, Any]:
        out = subprocess.run(child, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    done = await asyncio.to_thread(rerun)
    assert done["output"] == "Refunded 500.0 EUR on A-1", done
    assert done["effects"] == []  # the refund was recorded by the second process: replayed
    tasks = list(await client.list(key_prefix="crewai:c-x:"))
    assert sorted(t.key.split(":")[2] for t in tasks) == ["ask", "review"]  # asked once each
    assert all(t.status is Status.COMPLETED for t in tasks)
    lines = [json.loads(x) for x in effects.read_text().splitlines()]
    assert lines == [{"effect": "refunded", "order_id": "A-1", "amount": 500.0}]


async def test_unanswered_question_and_review_are_never_invented(client: Client) -> None:
    crew = make_crew("c-t", client, timeout=0.3)
    with HumanReview(run_id="c-t", client=client, timeout=0.3) as review:
        out = await asyncio.wait_for(asyncio.to_thread(crew.kickoff), 60)
    assert out.raw == (
        "No refund: No answer from a person: the question timed out. Do not assume an answer."
    )
    assert EFFECTS == []
    assert [t.status for t in review.unreviewed] == [Status.TIMED_OUT]


async def test_the_example_answered_from_another_process(tmp_path: Path) -> None:
    """examples/crewai_refund.py as a user runs it, on the default database under its working
    directory; a second process answers the question and the review."""
    env = {**os.environ, "INLOOP_DATABASE_URL": f"sqlite://{tmp_path / 'inloop.db'}"}
    example = HERE.parent.parent / "examples" / "crewai_refund.py"
    proc = subprocess.Popen(
        [sys.executable, str(example)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    person = Client(env["INLOOP_DATABASE_URL"])
    try:
        ask = await wait_task(person, "crewai:refund-order-A-1:ask:")
        await person.answer(ask.id, {"answer": "yes"}, by="alice")
        review = await wait_task(person, "crewai:refund-order-A-1:review:")
        await person.answer(review.id, {"decision": "approve"}, by="alice")
        out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        proc.kill()
        await person.close()
    assert proc.returncode == 0, err
    assert "agent: Refunded 500.0 EUR on order A-1" in out, out + err


async def test_bad_input(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="run_id"):
        HumanTool(run_id="", client=client)
    with pytest.raises(InvalidArgument, match="run_id"):
        HumanReview(run_id=" ", client=client)
    with pytest.raises(InvalidArgument, match="non-empty question"):
        HumanTool(run_id="c-b", client=client).ask("  ")
    assert review_schema()["required"] == ["decision"]
