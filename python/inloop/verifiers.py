"""Verifying a person's answer before the agent trusts it (``docs/verification.md``).

Two kinds of verifier, which can be combined:

* **In the core** (runs wherever the answer arrives: dashboard, API, Slack ...): deterministic
  :class:`Rule` s and an optional LLM verifier, built with :func:`claude`, :func:`openai`,
  :func:`azure_openai` or :func:`gemini` and passed as ``verification=`` to
  :func:`inloop.await_human`. API keys come from the process that verifies (environment
  variables such as ``ANTHROPIC_API_KEY``), never from the task.
* **In the agent**: ``await_human(..., verifier=fn)``, where ``fn(payload, answer)`` (sync or
  async) returns :func:`passed`, :func:`rejected` or :func:`inconclusive`. A rejection goes
  back through the core: the task is pending again, the attempt is counted and audited, the
  person sees the reason, and the agent keeps waiting. An exception in ``fn`` is inconclusive.

Example::

    from inloop import await_human, verifiers

    def within_order(refund: Refund, d: Decision) -> verifiers.Verdict:
        if d.approved and d.amount > refund.amount:
            return verifiers.rejected(f"at most {refund.amount} can be refunded")
        return verifiers.passed()

    decision = await await_human(
        "Approve this refund?", payload=refund, response=Decision, key="refund-A-1",
        verification=verifiers.claude("claude-sonnet-4-6",
                                      instructions="Denials need a reason.", max_attempts=3),
        verifier=within_order,
    )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidArgument

FailPolicy = Literal["fail_closed", "fail_open"]


@dataclass(frozen=True)
class Verdict:
    """What a verifier concluded: ``kind`` is ``"pass"``, ``"reject"`` or ``"inconclusive"``;
    ``reason`` (required for the last two) is shown to the person who answered."""

    kind: Literal["pass", "reject", "inconclusive"]
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("pass", "reject", "inconclusive"):
            raise InvalidArgument(f"a verdict is pass, reject or inconclusive, not {self.kind!r}")
        if self.kind != "pass" and not (self.reason or "").strip():
            raise InvalidArgument(f"a {self.kind} verdict needs a reason")


def passed() -> Verdict:
    """The answer is acceptable."""
    return Verdict("pass")


def rejected(reason: str) -> Verdict:
    """The answer is not acceptable; ``reason`` tells the person what to change."""
    return Verdict("reject", reason)


def inconclusive(reason: str) -> Verdict:
    """The verifier cannot tell; the task's fail policy decides (see :class:`Verification`)."""
    return Verdict("inconclusive", reason)


#: An agent-side verifier: ``fn(payload, answer)``, sync or async, returning a :class:`Verdict`.
Verifier = Callable[[Any, Any], "Verdict | Awaitable[Verdict]"]


@dataclass(frozen=True)
class Rule:
    """A deterministic rule checked by the core: when ``when`` holds (or always), ``check``
    must hold, else the answer is rejected with ``message``. Conditions are the rules language
    of ``docs/verification.md`` over ``{"answer": ..., "payload": ...}``, for example
    ``{"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]}``."""

    name: str
    check: Any
    message: str
    when: Any = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "check": self.check, "message": self.message}
        if self.when is not None:
            d["when"] = self.when
        return d


@dataclass(frozen=True)
class Verification:
    """How the core verifies answers after the response schema: ``rules``, an optional
    ``llm`` verifier (built by :func:`claude` and friends), ``max_attempts`` (the rejection
    that reaches it ends the task: :class:`inloop.VerificationExhausted`), and what an
    inconclusive verdict does (``"fail_closed"``: keep the task pending; ``"fail_open"``:
    accept the answer). Also governs an agent-side ``verifier=``."""

    rules: Sequence[Rule] = field(default_factory=tuple)
    llm: dict[str, Any] | None = None
    max_attempts: int = 3
    on_inconclusive: FailPolicy = "fail_closed"

    def to_json(self) -> dict[str, Any]:
        """The spec as the core takes it (``NewTask.verification``)."""
        d: dict[str, Any] = {
            "rules": [r.to_json() for r in self.rules],
            "max_attempts": self.max_attempts,
            "on_inconclusive": self.on_inconclusive,
        }
        if self.llm is not None:
            d["llm"] = self.llm
        return d


def _llm(
    provider: str,
    model: str,
    instructions: str | None,
    api: str | None,
    timeout: float,
    rules: Sequence[Rule],
    max_attempts: int,
    on_inconclusive: FailPolicy,
    api_version: str | None = None,
) -> Verification:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidArgument(f"timeout must be a positive number of seconds, not {timeout!r}")
    llm: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "timeout_ms": max(1, round(timeout * 1000)),
    }
    if instructions is not None:
        llm["instructions"] = instructions
    if api is not None:
        llm["api"] = api
    if api_version is not None:
        llm["api_version"] = api_version
    return Verification(tuple(rules), llm, max_attempts, on_inconclusive)


def claude(
    model: str,
    *,
    instructions: str | None = None,
    api: Literal["json_schema", "tool"] = "json_schema",
    timeout: float = 20.0,
    rules: Sequence[Rule] = (),
    max_attempts: int = 3,
    on_inconclusive: FailPolicy = "fail_closed",
) -> Verification:
    """An Anthropic Messages verifier (key: ``ANTHROPIC_API_KEY`` where the answer is
    verified). ``api="tool"`` uses a forced tool call, for models without JSON-schema output.

    Example: ``verifiers.claude("claude-sonnet-4-6", instructions="Refunds over 400 need a
    reason.")``
    """
    return _llm(
        "anthropic", model, instructions, api, timeout, rules, max_attempts, on_inconclusive
    )


def openai(
    model: str,
    *,
    instructions: str | None = None,
    api: Literal["chat", "responses"] = "chat",
    timeout: float = 20.0,
    rules: Sequence[Rule] = (),
    max_attempts: int = 3,
    on_inconclusive: FailPolicy = "fail_closed",
) -> Verification:
    """An OpenAI verifier: Chat Completions (``response_format: json_schema``) or the
    Responses API (key: ``OPENAI_API_KEY``).

    Example: ``verifiers.openai("gpt-4.1-mini", api="responses")``
    """
    return _llm("openai", model, instructions, api, timeout, rules, max_attempts, on_inconclusive)


def azure_openai(
    deployment: str,
    *,
    api_version: str | None = None,
    instructions: str | None = None,
    api: Literal["chat", "responses"] = "chat",
    timeout: float = 20.0,
    rules: Sequence[Rule] = (),
    max_attempts: int = 3,
    on_inconclusive: FailPolicy = "fail_closed",
) -> Verification:
    """An Azure OpenAI verifier on ``deployment`` (endpoint and key:
    ``AZURE_OPENAI_ENDPOINT``, ``AZURE_OPENAI_API_KEY``). With ``api_version`` (for example
    ``"2024-10-21"``) the deployment URL is used; without it, the v1 surface.

    Example: ``verifiers.azure_openai("verifier-gpt4o", api_version="2024-10-21")``
    """
    return _llm(
        "azure_openai",
        deployment,
        instructions,
        api,
        timeout,
        rules,
        max_attempts,
        on_inconclusive,
        api_version,
    )


def gemini(
    model: str,
    *,
    instructions: str | None = None,
    timeout: float = 20.0,
    rules: Sequence[Rule] = (),
    max_attempts: int = 3,
    on_inconclusive: FailPolicy = "fail_closed",
) -> Verification:
    """A Google Gemini verifier (``generateContent`` with ``responseJsonSchema``; key:
    ``GEMINI_API_KEY``).

    Example: ``verifiers.gemini("gemini-2.5-flash")``
    """
    return _llm("gemini", model, instructions, None, timeout, rules, max_attempts, on_inconclusive)


__all__ = [
    "FailPolicy",
    "Rule",
    "Verdict",
    "Verification",
    "Verifier",
    "azure_openai",
    "claude",
    "gemini",
    "inconclusive",
    "openai",
    "passed",
    "rejected",
]
