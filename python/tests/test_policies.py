"""Approval policies through the Python SDK (the core's rules: core/tests/policies.rs): an
M-of-N quorum, an excluded requester, ``on_timeout`` defaults, durable reminders and
escalation, and bad policies. Every scenario runs on SQLite and PostgreSQL, directly on the
database and through an ``inloop serve`` started by the test (remote mode, as in
test_remote.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from test_remote import Server

from inloop import (
    Approvers,
    Client,
    Conflict,
    DigestMismatch,
    Escalation,
    Forbidden,
    InvalidArgument,
    KeyReused,
    NotFound,
    Status,
    Task,
    TimedOut,
    Timer,
    Vote,
    await_decision,
    await_human,
    await_human_sync,
    verifiers,
)


class Approval(BaseModel):
    approved: bool
    comment: str = ""


class Other(BaseModel):
    approved: bool


APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}},
    "required": ["approved"],
}

WIRE = {"amount": 25000, "currency": "EUR", "to": "ACME"}


@dataclass
class Pair:
    mode: str
    agent: Client
    human: Client


@pytest.fixture(params=["direct", "remote"])
async def pair(
    request: pytest.FixtureRequest, database_url: str, namespace: str, tmp_path: Path
) -> AsyncIterator[Pair]:
    """The agent's client and the answering side's: both on the database, or both through a
    server (with an API key that may answer, so `answer(..., by=...)` names the voter)."""
    server: Server | None = None
    if request.param == "direct":
        agent = Client(database_url, namespace=namespace)
        human = Client(database_url, namespace=namespace)
    else:
        server = Server(database_url, tmp_path)
        server.start()
        key = server.apikey(namespace)
        agent = Client(namespace=namespace, url=server.url, api_key=key)
        human = Client(namespace=namespace, url=server.url, api_key=key)
        assert agent.remote
    try:
        yield Pair(request.param, agent, human)
    finally:
        await agent.close()
        await human.close()
        if server is not None:
            server.kill()


async def by_key(client: Client, key: str, within: float = 20) -> Task:
    deadline = time.monotonic() + within
    while True:
        try:
            return await client.get_by_key(key)
        except NotFound:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)


async def test_two_of_three_resumes_on_the_second_approval(pair: Pair) -> None:
    key = f"wire-{uuid.uuid4()}"
    waiting = asyncio.create_task(
        await_decision(
            "Wire 25,000 EUR to ACME?",
            payload=WIRE,
            response=Approval,
            key=key,
            client=pair.agent,
            approvers=Approvers(
                any_of=["alice@acme.com", "bob@acme.com", "carol@acme.com"], required=2
            ),
        )
    )
    task = await by_key(pair.human, key)
    assert task.policy is not None
    assert task.policy["approvers"] == {
        "any_of": ["alice@acme.com", "bob@acme.com", "carol@acme.com"],
        "required": 2,
        "exclude_requester": False,
        "reject_on": "any",
    }
    assert task.votes == [] and task.timers == []

    first = await pair.human.answer(
        task.id, {"approved": True, "comment": "looks right"}, by="alice@acme.com"
    )
    assert first.status is Status.PENDING
    assert [(v.by, v.approve) for v in first.votes] == [("alice@acme.com", True)]
    # The same vote again counts once.
    again = await pair.human.answer(
        task.id, {"approved": True, "comment": "looks right"}, by="alice@acme.com"
    )
    assert len(again.votes) == 1
    # A vote cannot be changed; someone outside the list may not vote.
    with pytest.raises(Forbidden) as changed:
        await pair.human.answer(task.id, {"approved": False}, by="alice@acme.com")
    assert "a vote cannot be changed" in changed.value.message
    assert changed.value.code == "forbidden"
    with pytest.raises(Forbidden) as outsider:
        await pair.human.answer(task.id, {"approved": True}, by="mallory@evil.example")
    assert "not one of the approvers" in outsider.value.message
    # One approval of two: the agent is still waiting.
    await asyncio.sleep(0.3)
    assert not waiting.done()
    assert (await pair.agent.get(task.id)).status is Status.PENDING

    done = await pair.human.answer(task.id, {"approved": True, "comment": "ok"}, by="bob@acme.com")
    assert done.status is Status.COMPLETED
    decision = await asyncio.wait_for(waiting, 20)
    assert decision.answer == Approval(approved=True, comment="ok")
    assert [v.by for v in decision.votes] == ["alice@acme.com", "bob@acme.com"]
    assert not decision.defaulted
    # The approved digest covers the policy; the agent checks what it is about to do.
    decision.verify(WIRE)
    with pytest.raises(DigestMismatch):
        decision.verify({**WIRE, "amount": 25_001})

    got = await pair.agent.get(task.id)
    assert got.answered_by == "bob@acme.com" and not got.defaulted
    assert [(v.by, v.approve, v.response) for v in got.votes] == [
        ("alice@acme.com", True, {"approved": True, "comment": "looks right"}),
        ("bob@acme.com", True, {"approved": True, "comment": "ok"}),
    ]
    assert all(isinstance(v, Vote) and isinstance(v.at, datetime) for v in got.votes)
    assert [v.email for v in got.votes] == ["alice@acme.com", "bob@acme.com"]
    assert got.votes[0].at <= got.votes[1].at
    if pair.mode == "direct":
        assert [v.channel for v in got.votes] == ["python", "python"]
    # Late: told who answered.
    with pytest.raises(Conflict) as late:
        await pair.human.answer(task.id, {"approved": True}, by="carol@acme.com")
    assert "bob@acme.com" in late.value.message
    kinds = [e.kind for e in await pair.agent.audit(task.id)]
    assert kinds.count("vote_recorded") == 2, kinds
    assert (await pair.agent.verify_audit(task.id)).ok


async def test_a_rejection_ends_the_quorum_as_rejected(pair: Pair) -> None:
    key = f"wire-{uuid.uuid4()}"
    waiting = asyncio.create_task(
        await_human(
            "Wire?",
            payload=WIRE,
            response=Approval,
            key=key,
            client=pair.agent,
            approvers=Approvers(any_of=["alice", "bob", "carol"], required=2),
        )
    )
    task = await by_key(pair.human, key)
    await pair.human.answer(task.id, {"approved": True}, by="alice")
    await pair.human.answer(task.id, {"approved": False, "comment": "wrong IBAN"}, by="bob")
    assert await asyncio.wait_for(waiting, 20) == Approval(approved=False, comment="wrong IBAN")


async def test_the_requester_may_not_approve(pair: Pair) -> None:
    key = f"self-{uuid.uuid4()}"
    waiting = asyncio.create_task(
        await_human(
            "Wire?",
            payload=WIRE,
            response=Approval,
            key=key,
            client=pair.agent,
            requested_by="alice@acme.com",
            approvers=Approvers(any_of=["alice@acme.com", "bob@acme.com"], exclude_requester=True),
        )
    )
    task = await by_key(pair.human, key)
    assert task.requested_by == "alice@acme.com"
    with pytest.raises(Forbidden) as refused:
        await pair.human.answer(task.id, {"approved": True}, by="alice@acme.com")
    assert "may not approve it" in refused.value.message
    assert (await pair.agent.get(task.id)).status is Status.PENDING
    await pair.human.answer(task.id, {"approved": True}, by="bob@acme.com")
    assert await asyncio.wait_for(waiting, 20) == Approval(approved=True)

    # Excluding the requester without naming one is refused by the core, not ignored.
    with pytest.raises(InvalidArgument) as err:
        await pair.agent.create(
            "Wire?",
            payload=WIRE,
            response=Approval,
            approvers=Approvers(any_of=["bob@acme.com"], exclude_requester=True),
        )
    assert "requested_by" in err.value.message


async def test_on_timeout_default_is_returned_and_marked(pair: Pair) -> None:
    key = f"default-{uuid.uuid4()}"
    got = await await_human(
        "Quick?",
        payload=WIRE,
        response=Approval,
        key=key,
        client=pair.agent,
        timeout=timedelta(milliseconds=300),
        on_timeout=Approval(approved=False, comment="nobody answered"),
    )
    assert got == Approval(approved=False, comment="nobody answered")
    task = await pair.agent.get_by_key(key)
    assert task.status is Status.TIMED_OUT
    assert task.defaulted
    assert task.answered_via == "timeout" and task.answered_by is None
    assert task.response == {"approved": False, "comment": "nobody answered"}
    assert task.policy is not None
    assert task.policy["on_timeout"] == {
        "default": {"approved": False, "comment": "nobody answered"}
    }
    # Asking again with the key returns the recorded default at once.
    again = await await_human(
        "Quick?",
        payload=WIRE,
        response=Approval,
        key=key,
        client=pair.agent,
        timeout=timedelta(milliseconds=300),
        on_timeout=Approval(approved=False, comment="nobody answered"),
    )
    assert again == got
    # A late answer is refused, naming the timeout.
    with pytest.raises(Conflict) as late:
        await pair.human.answer(task.id, {"approved": True}, by="alice")
    assert "timed out" in late.value.message
    kinds = [e.kind for e in await pair.agent.audit(task.id)]
    assert "timed_out" in kinds

    # A JSON Schema response takes a dict default; the synchronous variant passes it too.
    plain = await asyncio.to_thread(
        await_human_sync,
        "Quick?",
        payload={},
        response=APPROVAL_SCHEMA,
        client=pair.agent,
        timeout=0.3,
        on_timeout={"approved": False},
    )
    assert plain == {"approved": False}

    # The agent's own verifier judges people's answers, not its own default.
    judged: list[Approval] = []

    def verifier(payload: Any, answer: Approval) -> verifiers.Verdict:
        judged.append(answer)
        return verifiers.rejected("never")

    defaulted = await asyncio.wait_for(
        await_human(
            "Quick?",
            payload=WIRE,
            response=Approval,
            client=pair.agent,
            timeout=0.3,
            on_timeout=Approval(approved=False),
            verifier=verifier,
        ),
        20,
    )
    assert defaulted == Approval(approved=False) and judged == []

    # "raise": the agent gets TimedOut, never a made-up answer.
    key = f"raise-{uuid.uuid4()}"
    with pytest.raises(TimedOut):
        await await_human(
            "Quick?",
            payload=WIRE,
            response=Approval,
            key=key,
            client=pair.agent,
            timeout=timedelta(milliseconds=300),
            on_timeout="raise",
        )
    raised = await pair.agent.get_by_key(key)
    assert raised.status is Status.TIMED_OUT
    assert not raised.defaulted and raised.response is None and raised.answered_via is None


async def test_reminders_and_escalation_are_listed_and_fire(pair: Pair) -> None:
    task = await pair.agent.create(
        "Wire?",
        payload=WIRE,
        response=Approval,
        key=f"timers-{uuid.uuid4()}",
        timeout=timedelta(hours=8),
        approvers=Approvers(any_of=["alice@acme.com"]),
        reminders=[timedelta(hours=2), 1800],
        escalate=[
            Escalation(
                after=timedelta(hours=4),
                notify=["slack:@cfo"],
                add_approvers=["carol@acme.com"],
            )
        ],
    )
    assert all(isinstance(t, Timer) for t in task.timers)
    due = [(t.kind, t.index, t.due_at - task.created_at) for t in task.timers]
    assert due == [
        ("reminder", 2, timedelta(minutes=30)),
        ("reminder", 1, timedelta(hours=2)),
        ("escalation", 1, timedelta(hours=4)),
    ]
    assert all(t.fired_at is None for t in task.timers)
    assert task.policy is not None
    assert task.policy["reminders_ms"] == [7_200_000, 1_800_000]
    assert task.policy["escalate"] == [
        {"after_ms": 14_400_000, "notify": ["slack:@cfo"], "add_approvers": ["carol@acme.com"]}
    ]
    assert (await pair.human.get(task.id)).timers == task.timers
    # carol is no approver until the escalation fires.
    with pytest.raises(Forbidden):
        await pair.human.answer(task.id, {"approved": True}, by="carol@acme.com")

    # Short timers fire (the waiting agent's engine, or the server, sweeps them) once each;
    # the escalation makes carol an approver.
    key = f"escalate-{uuid.uuid4()}"
    waiting = asyncio.create_task(
        await_human(
            "Wire?",
            payload=WIRE,
            response=Approval,
            key=key,
            client=pair.agent,
            timeout=timedelta(seconds=60),
            approvers=Approvers(any_of=["alice@acme.com"]),
            reminders=[timedelta(milliseconds=200)],
            escalate=[Escalation(after=0.4, add_approvers=["carol@acme.com"])],
        )
    )
    short = await by_key(pair.human, key)
    deadline = time.monotonic() + 20
    while any(t.fired_at is None for t in short.timers):
        assert time.monotonic() < deadline, short.timers
        await asyncio.sleep(0.05)
        short = await pair.human.get(short.id)
    assert [t.kind for t in short.timers] == ["reminder", "escalation"]
    assert all(t.fired_at is not None and t.fired_at >= t.due_at for t in short.timers)
    await pair.human.answer(short.id, {"approved": True}, by="carol@acme.com")
    assert await asyncio.wait_for(waiting, 20) == Approval(approved=True)
    kinds = [e.kind for e in await pair.agent.audit(short.id)]
    assert kinds.count("reminder_sent") == 1 and kinds.count("escalated") == 1, kinds


async def test_the_core_refuses_bad_policies(pair: Pair) -> None:
    prefix = f"bad-{uuid.uuid4()}"
    # A quorum needs an approval answer.
    with pytest.raises(InvalidArgument) as err:
        await pair.agent.create(
            "Wire?",
            payload=WIRE,
            response={"type": "object", "properties": {"note": {"type": "string"}}},
            key=f"{prefix}-1",
            approvers=Approvers(any_of=["alice", "bob"], required=2),
        )
    assert "approval response schema" in err.value.message
    assert err.value.code == "invalid_argument"
    # A reminder after the deadline would never fire.
    with pytest.raises(InvalidArgument) as err:
        await pair.agent.create(
            "Wire?",
            payload=WIRE,
            response=Approval,
            key=f"{prefix}-2",
            timeout=timedelta(hours=1),
            reminders=[timedelta(hours=2)],
        )
    assert "reminder 1 is due after the task's timeout" in err.value.message
    # A default that is no valid answer.
    with pytest.raises(InvalidArgument) as err:
        await await_human(
            "Wire?",
            payload=WIRE,
            response=APPROVAL_SCHEMA,
            key=f"{prefix}-3",
            client=pair.agent,
            timeout=60,
            on_timeout={"approved": "maybe"},
        )
    assert "on_timeout" in err.value.message
    # Escalation steps must do something.
    with pytest.raises(InvalidArgument):
        await pair.agent.create(
            "Wire?",
            payload=WIRE,
            response=Approval,
            key=f"{prefix}-4",
            escalate=[Escalation(after=60)],
        )
    assert list(await pair.agent.list(key_prefix=prefix)) == []

    # The policy is part of the request: the same key with another policy is another request.
    a = Approvers(any_of=["alice", "bob"], required=2)
    first = await pair.agent.create(
        "Wire?", payload=WIRE, response=Approval, key=f"{prefix}-5", approvers=a
    )
    same = await pair.agent.create(
        "Wire?", payload=WIRE, response=Approval, key=f"{prefix}-5", approvers=a
    )
    assert same.id == first.id and same.created is False
    with pytest.raises(KeyReused):
        await pair.agent.create(
            "Wire?",
            payload=WIRE,
            response=Approval,
            key=f"{prefix}-5",
            approvers=Approvers(any_of=["alice", "bob"], required=1),
        )


async def test_obvious_mistakes_are_caught_before_the_core(tmp_path: Path) -> None:
    client = Client(f"sqlite://{tmp_path / 'x.db'}")

    async def create(**kw: Any) -> Task:
        return await client.create("Wire?", payload=WIRE, response=Approval, **kw)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"reminders": [timedelta(minutes=-5)]}, "reminders[0] must be positive"),
        ({"reminders": [60, 0]}, "reminders[1] must be positive"),
        ({"reminders": ["30m"]}, "reminders[0] must be a timedelta or seconds, not str"),
        ({"reminders": timedelta(minutes=5)}, "reminders must be a list of durations"),
        ({"escalate": Escalation(after=60, notify=["slack:#x"])}, "escalate must be a list"),
        ({"escalate": [{"after": 60}]}, "escalate[0] must be an inloop.Escalation, not dict"),
        ({"approvers": ["alice"]}, "approvers must be an inloop.Approvers, not list"),
        ({"on_timeout": "deny"}, 'on_timeout must be "raise" or a default answer'),
        ({"on_timeout": False}, 'on_timeout must be "raise" or a default answer'),
        ({"on_timeout": Other(approved=False)}, "on_timeout must be an instance of Approval"),
    ]
    for kw, message in cases:
        with pytest.raises(InvalidArgument) as err:
            await create(**kw)
        assert message in err.value.message, (kw, err.value.message)
        assert isinstance(err.value, ValueError)

    constructors: list[tuple[Any, str]] = [
        (lambda: Approvers(any_of="alice"), "Approvers.any_of must be a list of strings"),
        (lambda: Approvers(any_of=[]), "must name at least one approver"),
        (lambda: Approvers(any_of=["a", 7]), "7 is a int"),
        (lambda: Approvers(any_of=["a"], required=0), "at least 1, not 0"),
        (lambda: Approvers(any_of=["a"], required=True), "must be an int, not bool"),
        (lambda: Approvers(any_of=["a"], reject_on="all"), 'must be "any" or "majority"'),
        (lambda: Escalation(after=timedelta(0)), "Escalation.after must be positive"),
        (lambda: Escalation(after=-1, notify=["slack:#x"]), "Escalation.after must be positive"),
        (lambda: Escalation(after=60, notify="slack:#x"), "Escalation.notify must be a list"),
    ]
    for make, message in constructors:
        with pytest.raises(InvalidArgument) as err:
            make()
        assert message in err.value.message, (message, err.value.message)

    # Values are normalised: frozen, hashable, equal by value.
    a = Approvers(any_of=["alice", "bob"], required=2)
    assert a == Approvers(any_of=("alice", "bob"), required=2)
    assert hash(a) == hash(Approvers(any_of=["alice", "bob"], required=2))
    assert list(await client.list()) == []
    await client.close()
