"""What a node gets back from a person: an answer, or why there is none.

The value a thread is resumed with is a small JSON envelope built from the ended inloop task
(:func:`resume_value`), so the checkpoint holds JSON only; the node turns it back into a typed
:class:`Answered` or :class:`NotAnswered` (:func:`outcome_from_resume`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .._schema import parse_response
from ..errors import Cancelled, InvalidArgument, TimedOut
from ..types import Status, Task

R = TypeVar("R")

ENVELOPE = "inloop.outcome/v1"


@dataclass(frozen=True)
class Answered(Generic[R]):
    """The person answered; ``answer`` is the accepted answer parsed into the response type."""

    answer: R
    task_id: str | None
    answered_by: str | None

    status: Literal["completed"] = "completed"


@dataclass(frozen=True)
class NotAnswered:
    """The task ended without an answer: ``status`` is ``"timed_out"`` or ``"cancelled"``.

    Branch on it in the node (a timeout is never a made-up denial)::

        outcome = human_outcome("Approve?", payload=refund, response=Decision, timeout=3600)
        if isinstance(outcome, NotAnswered):
            return {"decision": "escalated", "why": outcome.status}
    """

    status: Literal["timed_out", "cancelled"]
    task_id: str
    cancelled_by: str | None = None
    reason: str | None = None

    def error(self) -> TimedOut | Cancelled:
        """The SDK's exception for this outcome (what :func:`human` raises)."""
        if self.status == "timed_out":
            return TimedOut(
                f"nobody answered task {self.task_id} before its deadline",
                details={"task_id": self.task_id},
            )
        return Cancelled(
            f"task {self.task_id} was cancelled"
            + (f" by {self.cancelled_by}" if self.cancelled_by else "")
            + (f": {self.reason}" if self.reason else ""),
            details={"task_id": self.task_id, "by": self.cancelled_by, "reason": self.reason},
        )


Outcome = Answered[R] | NotAnswered


def resume_value(task: Task) -> dict[str, Any]:
    """The JSON a thread is resumed with for an ended task (what ``Command(resume=...)``
    carries per interrupt id).

    Example::

        graph.invoke(Command(resume={interrupt_id: resume_value(task)}), config)
    """
    if task.status is Status.PENDING:
        raise InvalidArgument(f"task {task.id} has not ended yet")
    status = "completed" if task.status is Status.COMPLETED else task.status.value
    return {
        ENVELOPE: True,
        "task_id": task.id,
        "status": status,
        "response": task.response,
        "answered_by": task.answered_by,
        "cancelled_by": task.cancelled_by,
        "reason": task.cancel_reason,
    }


def is_resume_value(value: object) -> bool:
    """Whether ``value`` is an envelope built by :func:`resume_value`."""
    return isinstance(value, dict) and value.get(ENVELOPE) is True


def outcome_from_resume(response: Any, value: Any) -> Answered[Any] | NotAnswered:
    """The typed outcome for a resume value. A bare value (a graph resumed by hand with
    ``Command(resume=answer)``, not through inloop) is taken as the answer and parsed by the
    response model, which raises :class:`inloop.InvalidAnswer` if it does not fit."""
    if not is_resume_value(value):
        return Answered(parse_response(response, value), None, None)
    status = value["status"]
    if status == "completed":
        return Answered(
            parse_response(response, value["response"]), value["task_id"], value["answered_by"]
        )
    if status in ("timed_out", "cancelled"):
        return NotAnswered(status, value["task_id"], value.get("cancelled_by"), value.get("reason"))
    # verification_exhausted and anything newer: the task ended without an accepted answer.
    return NotAnswered("cancelled", value["task_id"], None, f"task ended as {status}")
