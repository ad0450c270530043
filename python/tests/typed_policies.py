"""Type-checked by test_typing.py (mypy --strict), never run: the policy parameters accept what
the docs say and refuse the rest. An expected error carries a `type: ignore[...]`; strict mode
warns about an unused ignore, so an error that goes away fails the check too."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from inloop import Approvers, Client, Escalation, Task, Timer, Vote, await_human, await_human_sync


class Approval(BaseModel):
    approved: bool
    comment: str = ""


async def accepted(client: Client) -> None:
    a: Approval = await await_human(
        "Wire?",
        payload={},
        response=Approval,
        requested_by="agent-7",
        approvers=Approvers(any_of=["alice", "bob"], required=2, reject_on="majority"),
        reminders=[timedelta(minutes=30), 7200],
        escalate=[Escalation(after=timedelta(hours=4), notify=["slack:@cfo"])],
        timeout=timedelta(hours=8),
        on_timeout=Approval(approved=False),
    )
    b: Approval = await_human_sync("Wire?", payload={}, response=Approval, on_timeout="raise")
    c = await await_human("W", payload={}, response={"type": "boolean"}, on_timeout={"x": 1})
    t: Task = await client.create(
        "W", payload={}, response=Approval, on_timeout={"approved": False}
    )
    defaulted: bool = t.defaulted
    votes: list[Vote] = t.votes
    timers: list[Timer] = t.timers
    print(a, b, c, defaulted, votes, timers, t.requested_by, t.policy)


async def refused() -> None:
    Approvers(any_of=["a"], reject_on="all")  # type: ignore[arg-type]
    await await_human("W", payload={}, response=Approval, on_timeout="deny")  # type: ignore[call-overload]
    Escalation(after="4h")  # type: ignore[arg-type]
