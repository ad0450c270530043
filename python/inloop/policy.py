"""Approval policies: who must answer and how many, reminders, escalation, and what a
timeout means.

The core enforces every rule (on every channel, on both backends); these classes only say
what the agent wants, and check obvious mistakes early with :class:`inloop.InvalidArgument`::

    from datetime import timedelta
    from inloop import Approvers, Escalation, await_human

    approval = await await_human(
        "Wire 25,000 EUR to ACME?",
        payload=wire,
        response=Approval,
        key=f"wire-{wire.id}",
        requested_by="agent-7",
        approvers=Approvers(any_of=["alice@acme.com", "bob@acme.com", "role:finance"],
                            required=2, exclude_requester=True),
        reminders=[timedelta(minutes=30), timedelta(hours=2)],
        escalate=[Escalation(after=timedelta(hours=4), notify=["slack:@cfo"],
                             add_approvers=["carol@acme.com"])],
        timeout=timedelta(hours=8),
        on_timeout="raise",  # or a default answer, e.g. Approval(approved=False)
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel

from .errors import InvalidArgument

#: A duration: a :class:`~datetime.timedelta`, or seconds (``int`` or ``float``).
Duration = timedelta | float | int

#: When rejections end a quorum task as rejected: ``"any"`` (the first rejection) or
#: ``"majority"`` (more than half of ``required``).
RejectOn = Literal["any", "majority"]

#: What the deadline means: ``"raise"`` (the agent gets :class:`inloop.TimedOut`), or a
#: default answer (an instance of the response model, or its JSON as a dict), which the
#: agent gets instead, marked as a default (``task.defaulted``) and audited as such.
OnTimeout = Literal["raise"] | BaseModel | dict[str, Any]


def duration_ms(value: object, what: str) -> int:
    """Milliseconds for a positive :data:`Duration`; :class:`inloop.InvalidArgument` when it is
    not one."""
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise InvalidArgument(f"{what} must be a timedelta or seconds, not {type(value).__name__}")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise InvalidArgument(f"{what} must be positive, not {seconds} seconds")
    if seconds * 1000 >= 2**63:
        raise InvalidArgument(f"{what} is too long ({seconds} seconds)")
    return max(1, round(seconds * 1000))


def _names(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidArgument(f"{what} must be a list of strings, not {type(value).__name__}")
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        raise InvalidArgument(
            f"{what} must be a list of strings; {bad[0]!r} is a {type(bad[0]).__name__}"
        )
    return tuple(value)


@dataclass(frozen=True)
class Approvers:
    """Who may answer a task, and how many distinct approvals complete it.

    ``any_of`` names user names, e-mail addresses, ``role:NAME`` or ``group:NAME``; only these
    people may answer (an answer from anyone else raises :class:`inloop.Forbidden`, or
    :class:`inloop.NotFound` for a reviewer who cannot see the task). ``required`` distinct
    approvals complete the task (above 1, the response must be an approval: one required
    boolean, optional text fields); each person votes once, and a vote cannot be changed.
    ``exclude_requester`` keeps the requester (``requested_by``) from answering even when the
    list names them. ``reject_on`` says when rejections end the task as rejected: ``"any"``
    (the first, the default) or ``"majority"`` (more than half of ``required``).

    Example::

        Approvers(any_of=["alice@acme.com", "bob@acme.com", "role:finance"], required=2,
                  exclude_requester=True)
    """

    any_of: Sequence[str]
    required: int = 1
    exclude_requester: bool = False
    reject_on: RejectOn = "any"

    def __post_init__(self) -> None:
        names = _names(self.any_of, "Approvers.any_of")
        if not names:
            raise InvalidArgument("Approvers.any_of must name at least one approver")
        object.__setattr__(self, "any_of", names)
        if isinstance(self.required, bool) or not isinstance(self.required, int):
            raise InvalidArgument(
                f"Approvers.required must be an int, not {type(self.required).__name__}"
            )
        if self.required < 1:
            raise InvalidArgument(f"Approvers.required must be at least 1, not {self.required}")
        if not isinstance(self.exclude_requester, bool):
            raise InvalidArgument(
                "Approvers.exclude_requester must be a bool, "
                f"not {type(self.exclude_requester).__name__}"
            )
        if self.reject_on not in ("any", "majority"):
            raise InvalidArgument(
                f'Approvers.reject_on must be "any" or "majority", not {self.reject_on!r}'
            )

    def _to_json(self) -> dict[str, Any]:
        return {
            "any_of": list(self.any_of),
            "required": self.required,
            "exclude_requester": self.exclude_requester,
            "reject_on": self.reject_on,
        }


@dataclass(frozen=True)
class Escalation:
    """A later step of a task's policy: ``after`` this long (from creation) with no outcome,
    ``notify`` new targets (``CHANNEL:TARGET``) and add ``add_approvers`` to the approvers.
    Fired once, durably (by whichever ``inloop serve`` or waiting agent sees it due).

    Example::

        Escalation(after=timedelta(hours=4), notify=["slack:@cfo"],
                   add_approvers=["carol@acme.com"])
    """

    after: Duration
    notify: Sequence[str] = ()
    add_approvers: Sequence[str] = ()

    def __post_init__(self) -> None:
        duration_ms(self.after, "Escalation.after")
        object.__setattr__(self, "notify", _names(self.notify, "Escalation.notify"))
        object.__setattr__(
            self, "add_approvers", _names(self.add_approvers, "Escalation.add_approvers")
        )

    def _to_json(self) -> dict[str, Any]:
        return {
            "after_ms": duration_ms(self.after, "Escalation.after"),
            "notify": list(self.notify),
            "add_approvers": list(self.add_approvers),
        }
