"""Verification from Python, on both backends: an agent-side verifier (sync and async; reject
then pass; an exception is inconclusive), core rules with the reason raised to the person,
exhaustion raised to the agent, and the LLM helpers building the core's spec."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from inloop import (
    Client,
    InvalidArgument,
    Status,
    VerificationExhausted,
    VerificationRejected,
    await_human,
    verifiers,
)


class Refund(BaseModel):
    order_id: str
    amount: float


class Decision(BaseModel):
    approved: bool
    amount: float = 0.0
    reason: str | None = None


async def pending_with_attempts(c: Client, attempts: int) -> str:
    """The id of the first pending task once it has ``attempts`` rejected answers."""
    for _ in range(1000):
        page = await c.list(status="pending")
        if page and page[0].attempts == attempts:
            return page[0].id
        await asyncio.sleep(0.01)
    raise AssertionError(f"no pending task with {attempts} attempts appeared")


async def test_sdk_verifier_reject_then_pass(client: Client, other: Client) -> None:
    calls: list[Decision] = []

    def within_order(refund: Refund, d: Decision) -> verifiers.Verdict:  # sync: runs in a thread
        assert isinstance(refund, Refund) and isinstance(d, Decision)
        calls.append(d)
        if d.amount > refund.amount:
            return verifiers.rejected(f"at most {refund.amount} can be refunded")
        return verifiers.passed()

    async def human() -> list[dict[str, object]]:
        tid = await pending_with_attempts(other, 0)
        await other.answer(tid, {"approved": True, "amount": 900}, by="alice")
        tid = await pending_with_attempts(other, 1)
        task = await other.get(tid)
        await other.answer(tid, {"approved": True, "amount": 400}, by="alice")
        return task.rejections

    h = asyncio.create_task(human())
    out = await asyncio.wait_for(
        await_human(
            "Refund?",
            payload=Refund(order_id="A-1", amount=500),
            response=Decision,
            key="r-1",
            client=client,
            verifier=within_order,
        ),
        20,
    )
    rejections = await h
    assert out == Decision(approved=True, amount=400)
    assert [c.amount for c in calls] == [900, 400]
    # The person saw why: the reason is on the task and in the audit trail.
    assert rejections[0]["reason"] == "at most 500.0 can be refunded"
    assert rejections[0]["verifier"] == "sdk:within_order"
    task = (await client.list())[0]
    assert (task.status, task.attempts) == (Status.COMPLETED, 1)
    kinds = [e.kind for e in await client.audit(task.id)]
    assert kinds == [
        "created",
        "answer_accepted",
        "verification_rejected",
        "answer_reopened",
        "answer_accepted",
        "verification_passed",
    ]


async def test_exception_in_verifier_is_inconclusive(client: Client, other: Client) -> None:
    seen = 0

    async def flaky(refund: Refund, d: Decision) -> verifiers.Verdict:  # async verifier
        nonlocal seen
        seen += 1
        if seen == 1:
            raise RuntimeError("the fraud service is down")
        return verifiers.passed()

    async def human() -> None:
        tid = await pending_with_attempts(other, 0)
        await other.answer(tid, {"approved": False, "reason": "dup"}, by="bob")
        # fail-closed (the default): the task comes back, no attempt counted.
        for _ in range(1000):
            t = await other.get(tid)
            if t.status is Status.PENDING and t.answered_by is None and seen >= 1:
                break
            await asyncio.sleep(0.01)
        await other.answer(tid, {"approved": False, "reason": "dup"}, by="bob")

    h = asyncio.create_task(human())
    out = await asyncio.wait_for(
        await_human(
            "Refund?",
            payload=Refund(order_id="A-2", amount=5),
            response=Decision,
            client=client,
            verifier=flaky,
        ),
        20,
    )
    await h
    assert out.reason == "dup" and seen == 2
    task = (await client.list())[0]
    assert task.attempts == 0
    rows = [e for e in await client.audit(task.id) if e.kind == "verification_inconclusive"]
    assert "RuntimeError: the fraud service is down" in rows[0].data["reason"]
    assert rows[0].data["policy"] == "fail_closed"


async def test_rules_reject_the_person_and_exhaust_the_agent(client: Client, other: Client) -> None:
    spec = verifiers.Verification(
        rules=[
            verifiers.Rule(
                "cap",
                {"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]},
                "at most the order amount",
            )
        ],
        max_attempts=2,
    )

    async def human() -> None:
        tid = await pending_with_attempts(other, 0)
        with pytest.raises(VerificationRejected) as e:
            await other.answer(tid, {"approved": True, "amount": 600}, by="carol")
        assert e.value.reason == "at most the order amount"
        assert e.value.details["attempts_left"] == 1
        with pytest.raises(VerificationExhausted):
            await other.answer(tid, {"approved": True, "amount": 700}, by="carol")

    h = asyncio.create_task(human())
    with pytest.raises(VerificationExhausted) as e:
        await asyncio.wait_for(
            await_human(
                "Refund?",
                payload=Refund(order_id="A-3", amount=500),
                response=Decision,
                client=client,
                verification=spec,
            ),
            20,
        )
    await h
    assert e.value.reasons == ["at most the order amount", "at most the order amount"]
    assert (await client.list())[0].status is Status.VERIFICATION_EXHAUSTED


async def test_llm_helpers_build_the_core_spec(client: Client) -> None:
    spec = verifiers.azure_openai(
        "verifier-deploy", api_version="2024-10-21", instructions="Check it.", timeout=5
    )
    assert spec.to_json() == {
        "rules": [],
        "max_attempts": 3,
        "on_inconclusive": "fail_closed",
        "llm": {
            "provider": "azure_openai",
            "model": "verifier-deploy",
            "timeout_ms": 5000,
            "instructions": "Check it.",
            "api": "chat",
            "api_version": "2024-10-21",
        },
    }
    for s in (
        verifiers.claude("claude-sonnet-4-6", api="tool"),
        verifiers.openai("gpt-4.1-mini", api="responses"),
        verifiers.gemini("gemini-2.5-flash", on_inconclusive="fail_open"),
    ):
        t = await client.create("Refund?", payload={"a": 1}, response=Decision, verification=s)
        assert t.verification is not None
        assert t.verification["llm"]["provider"] == s.to_json()["llm"]["provider"]
    # The core checks the spec: a precise invalid_argument.
    with pytest.raises(InvalidArgument, match=r"verification\.max_attempts must be 1\.\.=20"):
        await client.create(
            "Refund?",
            payload={},
            response=Decision,
            verification=verifiers.gemini("g", max_attempts=0),
        )
    with pytest.raises(InvalidArgument, match="needs a reason"):
        verifiers.rejected("")
