"""The values inloop hands back: tasks (with their votes and timers), pages of tasks, audit
rows."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import _native
from ._schema import to_json
from .errors import InvalidArgument


class Status(str, enum.Enum):
    """Where a task is in its life. Only ``PENDING`` can still be answered."""

    PENDING = "pending"
    COMPLETED = "completed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    VERIFICATION_EXHAUSTED = "verification_exhausted"

    def __str__(self) -> str:
        return self.value


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _required_time(value: str) -> datetime:
    t = _time(value)
    assert t is not None
    return t


@dataclass(frozen=True)
class Vote:
    """One person's vote on a task with approvers (``Task.votes``, oldest first; one per
    person: the same vote again is not counted twice, a changed vote is refused)."""

    #: Who voted, as the core resolved them (a user name, or the ``by`` given).
    by: str
    #: Through which channel the vote came (``"dashboard"``, ``"slack"``, ``"python"`` ...).
    channel: str
    at: datetime
    #: Whether the vote approves (the approval's boolean; ``True`` for other answers).
    approve: bool
    #: The answer as given (JSON).
    response: Any
    #: The voter's e-mail address, when the core knows it (a user's, or a ``by`` that is one).
    email: str | None = None

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> Vote:
        return cls(
            by=d["by"],
            channel=d["channel"],
            at=_required_time(d["at"]),
            approve=bool(d["approve"]),
            response=d.get("response"),
            email=d.get("email"),
        )


@dataclass(frozen=True)
class Timer:
    """A durable reminder or escalation step of a task (``Task.timers``, in the order they
    are due). Each fires once; ``fired_at`` is ``None`` until it has."""

    #: ``"reminder"`` or ``"escalation"``.
    kind: str
    #: 1, 2 ... within its kind, in the order the policy lists them.
    index: int
    due_at: datetime
    fired_at: datetime | None = None

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> Timer:
        return cls(
            kind=str(d["kind"]),
            index=int(d["index"]),
            due_at=_required_time(d["due_at"]),
            fired_at=_time(d.get("fired_at")),
        )


@dataclass(frozen=True)
class Task:
    """A request for a human, as stored.

    ``created`` is set on the result of :meth:`inloop.Client.create`: ``True`` when that call
    created the task, ``False`` when its key already named it (a replay); ``None`` elsewhere.
    """

    id: str
    namespace: str
    key: str
    title: str
    payload: Any
    payload_schema: dict[str, Any] | None
    response_schema: dict[str, Any]
    digest: str
    notify: list[str]
    assign_to: list[str]
    status: Status
    response: Any
    answered_by: str | None
    answered_via: str | None
    cancelled_by: str | None
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    deadline: datetime | None
    ended_at: datetime | None
    created: bool | None = None
    #: The reviewer working on the task (claimed in the dashboard or through the API).
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    #: The verification spec (rules, LLM verifier, attempts, fail policy), as JSON.
    verification: dict[str, Any] | None = None
    #: How many answers verification rejected so far.
    attempts: int = 0
    #: Why each rejected answer was rejected (``attempt``, ``verifier``, ``reason``, ``by``,
    #: ``at``), oldest first.
    rejections: list[dict[str, Any]] = field(default_factory=list)
    #: Who asked (``requested_by`` at creation); ``exclude_requester`` keeps them from voting.
    requested_by: str | None = None
    #: The approval policy as stored (the wire JSON: ``approvers``, ``reminders_ms``,
    #: ``escalate``, ``on_timeout``), or ``None`` when the task has none.
    policy: dict[str, Any] | None = None
    #: The votes so far on a task with approvers, oldest first (one per person).
    votes: list[Vote] = field(default_factory=list)
    #: Reminders and escalation steps, in the order they are due.
    timers: list[Timer] = field(default_factory=list)
    #: Where the task's end is POSTed (a signed ``task.ended`` event), as stored (normalized).
    callback_url: str | None = None

    @property
    def defaulted(self) -> bool:
        """Whether the task ended with its policy's ``on_timeout`` default: nobody answered,
        ``status`` is ``timed_out``, ``response`` is the default and ``answered_via`` is
        ``"timeout"``. A defaulted answer is not a person's decision."""
        return self.status is Status.TIMED_OUT and self.answered_via == "timeout"

    @classmethod
    def _from_json(cls, d: dict[str, Any], created: bool | None = None) -> Task:
        created_at = _time(d["created_at"])
        updated_at = _time(d["updated_at"])
        assert created_at is not None and updated_at is not None
        return cls(
            id=d["id"],
            namespace=d["namespace"],
            key=d["key"],
            title=d["title"],
            payload=d["payload"],
            payload_schema=d.get("payload_schema"),
            response_schema=d["response_schema"],
            digest=d["digest"],
            notify=list(d.get("notify", [])),
            assign_to=list(d.get("assign_to", [])),
            status=Status(d["status"]),
            response=d.get("response"),
            answered_by=d.get("answered_by"),
            answered_via=d.get("answered_via"),
            cancelled_by=d.get("cancelled_by"),
            cancel_reason=d.get("cancel_reason"),
            created_at=created_at,
            updated_at=updated_at,
            deadline=_time(d.get("deadline")),
            ended_at=_time(d.get("ended_at")),
            created=created,
            claimed_by=d.get("claimed_by"),
            claimed_at=_time(d.get("claimed_at")),
            verification=d.get("verification"),
            attempts=int(d.get("attempts") or 0),
            rejections=list(d.get("rejections") or []),
            callback_url=d.get("callback_url"),
            requested_by=d.get("requested_by"),
            policy=d.get("policy"),
            votes=[Vote._from_json(v) for v in d.get("votes") or []],
            timers=[Timer._from_json(t) for t in d.get("timers") or []],
        )

    def _digest_parts(self, payload: Any) -> tuple[str, str]:
        parts = {
            "id": self.id,
            "title": self.title,
            "payload_schema": self.payload_schema,
            "response_schema": self.response_schema,
            "verification": self.verification,
            "policy": self.policy,
            "digest": self.digest,
        }
        try:
            body = json.dumps(to_json(payload), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"the payload is not JSON-serializable: {e}") from e
        return json.dumps(parts), body

    def digest_for(self, payload: Any) -> str:
        """The digest this task would have with ``payload`` instead of its own (everything else
        as it is): SHA-256 of the canonical JSON of title, payload and schemas.

        Example::

            assert task.digest_for(task.payload) == task.digest
        """
        return _native.task_digest(*self._digest_parts(payload))

    def verify(self, payload: Any) -> None:
        """Checks that ``payload`` (a Pydantic model instance or any JSON value) is what was
        approved: it produces this task's digest. Raises :class:`inloop.DigestMismatch`
        (``expected``, ``actual``) when it does not, for example when the tool arguments were
        edited after the approval. Key order never matters (canonical JSON).

        Example::

            decision = await await_decision("Run this tool?", payload=args, response=Approval)
            if decision.answer.approved:
                decision.verify(args_about_to_run)  # raises DigestMismatch if they changed
                run_tool(args_about_to_run)
        """
        _native.verify_digest(*self._digest_parts(payload))


class TaskPage(list[Task]):
    """A page of tasks (a ``list``), newest first, with the cursor of the next page."""

    def __init__(self, items: list[Task], next_cursor: str | None) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor


@dataclass(frozen=True)
class AuditEvent:
    """One row of a task's append-only, hash-chained audit trail."""

    task_id: str
    seq: int
    at: datetime
    actor: str | None
    channel: str | None
    kind: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> AuditEvent:
        at = _time(d["at"])
        assert at is not None
        return cls(
            task_id=d["task_id"],
            seq=d["seq"],
            at=at,
            actor=d.get("actor"),
            channel=d.get("channel"),
            kind=d["kind"],
            data=d.get("data") or {},
            prev_hash=d["prev_hash"],
            hash=d["hash"],
        )


@dataclass(frozen=True)
class AuditCheck:
    """The result of verifying a task's audit hash chain."""

    ok: bool
    rows: int
    broken_at_seq: int | None = None
    problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EffectState(str, enum.Enum):
    """Where an effect of :func:`inloop.once` is."""

    #: An attempt began and has not recorded an outcome: in doubt to every other caller.
    RUNNING = "running"
    #: The result is recorded; every later call returns it.
    DONE = "done"
    #: The function raised and the effect was released: the next call runs it again.
    FAILED = "failed"
    #: A person allowed another attempt: the next call runs it again.
    RETRY_ALLOWED = "retry_allowed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Effect:
    """An exactly-once effect (:func:`inloop.once`), as stored."""

    id: str
    namespace: str
    key: str
    state: EffectState
    #: How many attempts began (1 for the first).
    attempt: int
    started_at: datetime
    #: Who or which process began the current (or last) attempt.
    started_by: str | None
    finished_at: datetime | None
    #: The recorded result (JSON), once done.
    result: Any
    #: Why the last attempt failed, when it did.
    error: str | None
    #: The person who resolved it while in doubt (mark done or allow retry), if anyone.
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def in_doubt(self) -> bool:
        """Whether an attempt began and never recorded an outcome (``state`` is running)."""
        return self.state is EffectState.RUNNING

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> Effect:
        started_at = _time(d["started_at"])
        created_at = _time(d["created_at"])
        updated_at = _time(d["updated_at"])
        assert started_at is not None and created_at is not None and updated_at is not None
        return cls(
            id=d["id"],
            namespace=d["namespace"],
            key=d["key"],
            state=EffectState(d["state"]),
            attempt=int(d["attempt"]),
            started_at=started_at,
            started_by=d.get("started_by"),
            finished_at=_time(d.get("finished_at")),
            result=d.get("result"),
            error=d.get("error"),
            resolved_by=d.get("resolved_by"),
            resolved_at=_time(d.get("resolved_at")),
            created_at=created_at,
            updated_at=updated_at,
        )
