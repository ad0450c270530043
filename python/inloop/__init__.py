"""inloop: the human-in-the-loop primitive for AI agents.

An agent asks a person and waits, durably and idempotently; the answer is validated against
the response schema and returned typed::

    from inloop import await_human

    decision = await await_human(
        "Approve this refund?",
        payload=Refund(order_id="A-1", amount=500.0),
        response=Decision,
        key="refund-A-1",
    )

``await_decision`` returns the answer with what it approved (``decision.verify(payload)``), and
``once(key, fn)`` runs a side effect at most once per key (``docs/policies.md``).

People answer from any process on the same database (``inloop tasks answer``, or
:class:`Client`). Configuration: ``INLOOP_DATABASE_URL`` (``sqlite:PATH`` or
``postgres://...``), else ``.inloop/inloop.db`` under the current directory. Remote mode:
``INLOOP_URL`` and ``INLOOP_API_KEY`` (or ``Client(url=..., api_key=...)``) use an
``inloop serve`` instead of a database.
"""

from . import verifiers
from ._await import Decision, await_decision, await_human, await_human_sync
from ._effects import once, once_sync
from .client import Client
from .errors import (
    Cancelled,
    ConfigError,
    Conflict,
    DatabaseError,
    DigestMismatch,
    EffectInDoubt,
    FieldError,
    Forbidden,
    InloopError,
    InternalError,
    InvalidAnswer,
    InvalidArgument,
    InvalidPayload,
    InvalidSchema,
    KeyReused,
    NotFound,
    TimedOut,
    TooLarge,
    VerificationExhausted,
    VerificationInconclusive,
    VerificationPending,
    VerificationRejected,
)
from .policy import Approvers, Escalation
from .types import (
    AuditCheck,
    AuditEvent,
    Effect,
    EffectState,
    Status,
    Task,
    TaskPage,
    Timer,
    Vote,
)

__version__ = "0.1.0"

__all__ = [
    "Approvers",
    "AuditCheck",
    "AuditEvent",
    "Cancelled",
    "Client",
    "ConfigError",
    "Conflict",
    "DatabaseError",
    "Decision",
    "DigestMismatch",
    "Effect",
    "EffectInDoubt",
    "EffectState",
    "Escalation",
    "FieldError",
    "Forbidden",
    "InloopError",
    "InternalError",
    "InvalidAnswer",
    "InvalidArgument",
    "InvalidPayload",
    "InvalidSchema",
    "KeyReused",
    "NotFound",
    "Status",
    "Task",
    "TaskPage",
    "TimedOut",
    "Timer",
    "TooLarge",
    "VerificationExhausted",
    "VerificationInconclusive",
    "VerificationPending",
    "VerificationRejected",
    "Vote",
    "await_decision",
    "await_human",
    "await_human_sync",
    "once",
    "once_sync",
    "verifiers",
]
