"""Errors raised by inloop.

Every error is an :class:`InloopError` with a stable ``code`` (the core's code, the same in
Python, TypeScript, the CLI and the REST API) and structured ``details``. Catch the subclass
you can handle::

    from inloop import await_human, TimedOut

    try:
        decision = await await_human("Approve?", payload=..., response=Decision, timeout=60)
    except TimedOut as e:
        print("nobody answered by", e.details["at"])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One problem in a JSON document: a JSON Pointer (``""`` is the whole document) and why."""

    path: str
    message: str


class InloopError(Exception):
    """Base class of every inloop error."""

    code: str = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class _WithFieldErrors(InloopError):
    @property
    def errors(self) -> list[FieldError]:
        """The field errors, each with a JSON Pointer ``path`` and a ``message``."""
        return [FieldError(e["path"], e["message"]) for e in self.details.get("errors", [])]


class InvalidPayload(_WithFieldErrors):
    """The payload does not match its schema."""

    code = "invalid_payload"


class InvalidAnswer(_WithFieldErrors):
    """An answer does not match the response schema; the task stays pending."""

    code = "invalid_answer"


class InvalidSchema(InloopError):
    """A schema is not a usable JSON Schema."""

    code = "invalid_schema"


class InvalidArgument(InloopError, ValueError):
    """An argument is malformed (namespace, key, id, filter, timeout ...)."""

    code = "invalid_argument"


class TooLarge(InloopError):
    """A payload, answer or schema is over its documented size limit."""

    code = "too_large"


class Forbidden(InloopError, PermissionError):
    """The caller may not do this to the task: an answer from someone who is not one of its
    approvers, from the requester when the policy excludes them, a changed vote, a task
    claimed by someone else, or an API key without ``--allow-answer``. Audited."""

    code = "forbidden"


class NotFound(InloopError, LookupError):
    """No task with this id."""

    code = "not_found"


class KeyReused(InloopError):
    """The idempotency key already names a task with a different request."""

    code = "key_reused"


class Conflict(InloopError):
    """The task already ended: answered (by whom, when), timed out or cancelled."""

    code = "conflict"


class TimedOut(InloopError, TimeoutError):
    """Nobody answered before the deadline. Never a silent denial."""

    code = "timed_out"


class Cancelled(InloopError):
    """The task was cancelled (``details`` has ``by`` and ``reason``)."""

    code = "cancelled"


class VerificationRejected(InloopError):
    """Verification rejected the answer (a rule, the LLM verifier or the agent's verifier); the
    task stays pending. ``reason`` is for the person who answered."""

    code = "verification_rejected"

    @property
    def reason(self) -> str:
        """Why the answer was rejected."""
        return str(self.details.get("reason", ""))


class VerificationInconclusive(InloopError):
    """The verifier could not decide and the task is fail-closed: it stays pending."""

    code = "verification_inconclusive"


class VerificationPending(InloopError):
    """Another answer to the task is being verified right now; answer again later."""

    code = "verification_pending"


class VerificationExhausted(InloopError):
    """Every allowed answer was rejected by verification: the task ended
    (``status == "verification_exhausted"``). ``reasons`` lists why, oldest first."""

    code = "verification_exhausted"

    @property
    def reasons(self) -> list[str]:
        """Why each answer was rejected, oldest first."""
        return [str(r) for r in self.details.get("reasons", [])]


class EffectInDoubt(InloopError):
    """An effect of :func:`inloop.once` began in another attempt and never recorded a result:
    that process may have died inside the function, or may still be running it. The function
    is not run again until a person resolves the effect (the dashboard's "Effects in doubt":
    mark done, or allow a retry), so it never runs twice silently."""

    code = "effect_in_doubt"

    @property
    def key(self) -> str:
        """The effect's key."""
        return str(self.details.get("key", ""))

    @property
    def namespace(self) -> str:
        """The effect's namespace."""
        return str(self.details.get("namespace", ""))

    @property
    def attempt(self) -> int:
        """Which attempt is in doubt (1 for the first)."""
        return int(self.details.get("attempt") or 0)

    @property
    def started_at(self) -> datetime | None:
        """When the attempt in doubt began."""
        at = self.details.get("started_at")
        return datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else None

    @property
    def started_by(self) -> str | None:
        """Who or which process began it (``python:HOST:PID`` by default)."""
        by = self.details.get("started_by")
        return by if isinstance(by, str) else None


class DigestMismatch(InloopError):
    """A payload does not produce the digest of the task that was approved: what the agent is
    about to do is not what the person approved (:meth:`inloop.Task.verify`)."""

    code = "digest_mismatch"

    @property
    def expected(self) -> str:
        """The approved digest (the task's)."""
        return str(self.details.get("expected", ""))

    @property
    def actual(self) -> str:
        """The digest of the payload that was checked."""
        return str(self.details.get("actual", ""))


class ConfigError(InloopError):
    """The configuration (database URL, environment) is unusable."""

    code = "config"


class DatabaseError(InloopError):
    """The database failed or could not be reached."""

    code = "database"


class InternalError(InloopError):
    """Something inloop did not expect; please report it."""

    code = "internal"


_BY_CODE: dict[str, type[InloopError]] = {
    cls.code: cls
    for cls in (
        InvalidPayload,
        InvalidAnswer,
        InvalidSchema,
        InvalidArgument,
        TooLarge,
        Forbidden,
        NotFound,
        KeyReused,
        Conflict,
        TimedOut,
        Cancelled,
        VerificationRejected,
        VerificationInconclusive,
        VerificationPending,
        VerificationExhausted,
        EffectInDoubt,
        DigestMismatch,
        ConfigError,
        DatabaseError,
        InternalError,
    )
}


def _from_native(code: str, message: str, details: str) -> InloopError:
    """Builds the exception for a core error (called by the native module)."""
    try:
        parsed = json.loads(details) if details else {}
    except ValueError:
        parsed = {}
    cls = _BY_CODE.get(code, InloopError)
    err = cls(message, details=parsed if isinstance(parsed, dict) else {})
    if cls is InloopError:
        err.code = code
    return err
