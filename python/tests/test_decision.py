"""Approval bound to the action: ``await_decision`` returns the answer with what it approved,
and ``verify`` refuses any payload other than the approved one (on both backends)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from inloop import (
    Client,
    Decision,
    DigestMismatch,
    InvalidArgument,
    TimedOut,
    await_decision,
    await_human,
    verifiers,
)


class ToolCall(BaseModel):
    tool: str
    args: dict[str, float | str]


class Approval(BaseModel):
    approved: bool
    note: str = ""


async def answer_first_pending(c: Client, response: object, by: str = "alice") -> None:
    for _ in range(2000):
        page = await c.list(status="pending")
        if page:
            await c.answer(page[0].id, response, by=by)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no pending task appeared")


async def test_await_decision_returns_what_was_approved(client: Client, other: Client) -> None:
    call = ToolCall(tool="refund", args={"order": "A-1", "amount": 12.5})
    waiting = asyncio.create_task(
        await_decision("Run this tool?", payload=call, response=Approval, key="t-1", client=client)
    )
    await answer_first_pending(other, {"approved": True, "note": "fine"}, by="alice")
    d = await asyncio.wait_for(waiting, 10)
    assert isinstance(d, Decision)
    assert d.answer == Approval(approved=True, note="fine")
    assert d.answered_by == "alice" and d.answered_via == "python"
    assert d.digest == d.task.digest and len(d.digest) == 64
    assert d.task.key == "t-1"
    assert d.votes == [] and d.defaulted is False
    # the approved call, as a model or as JSON in any key order: fine
    d.verify(call)
    d.verify({"args": {"amount": 12.5, "order": "A-1"}, "tool": "refund"})
    assert d.task.digest_for(call) == d.digest
    # an edited argument is not what was approved
    edited = ToolCall(tool="refund", args={"order": "A-1", "amount": 1250})
    with pytest.raises(DigestMismatch) as caught:
        d.verify(edited)
    e = caught.value
    assert e.code == "digest_mismatch"
    assert e.expected == d.digest and e.actual == d.task.digest_for(edited)
    assert e.actual != e.expected
    assert e.details["task_id"] == d.task.id
    with pytest.raises(InvalidArgument):
        d.verify({"x": float("nan")})
    # replaying the same key returns the same decision without waiting
    again = await await_decision(
        "Run this tool?", payload=call, response=Approval, key="t-1", client=client
    )
    assert again.answer == d.answer and again.digest == d.digest
    # await_human on the same key agrees
    assert (
        await await_human(
            "Run this tool?", payload=call, response=Approval, key="t-1", client=client
        )
        == d.answer
    )


async def test_digest_covers_the_verification_spec(client: Client, other: Client) -> None:
    spec = verifiers.Verification(
        rules=[verifiers.Rule("positive", {">": [{"var": "/answer/amount"}, 0]}, "must be > 0")]
    )
    waiting = asyncio.create_task(
        await_decision(
            "How much?",
            payload={"order": "A-2"},
            response={
                "type": "object",
                "properties": {"amount": {"type": "number"}},
                "required": ["amount"],
            },
            key="v-1",
            client=client,
            verification=spec,
        )
    )
    await answer_first_pending(other, {"amount": 3})
    d = await asyncio.wait_for(waiting, 10)
    assert d.answer == {"amount": 3}
    d.verify({"order": "A-2"})
    with pytest.raises(DigestMismatch):
        d.verify({"order": "A-3"})


async def test_await_decision_with_an_agent_verifier(client: Client, other: Client) -> None:
    seen: list[Approval] = []

    def check(payload: object, answer: Approval) -> verifiers.Verdict:
        seen.append(answer)
        return verifiers.passed()

    waiting = asyncio.create_task(
        await_decision(
            "Deploy?", payload={"v": "1.2"}, response=Approval, client=client, verifier=check
        )
    )
    await answer_first_pending(other, {"approved": False, "note": "not today"})
    d = await asyncio.wait_for(waiting, 10)
    assert d.answer == Approval(approved=False, note="not today") == seen[0]
    assert d.task.status.value == "completed"
    d.verify({"v": "1.2"})


async def test_await_decision_raises_like_await_human(client: Client) -> None:
    with pytest.raises(TimedOut):
        await await_decision(
            "Anyone?", payload={}, response={"type": "boolean"}, timeout=0.05, client=client
        )
