"""``await_human``: ask a person, wait durably, get a typed answer."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, overload

from pydantic import BaseModel

from ._schema import parse_response
from .client import Client, Timeout, default_client
from .errors import Conflict
from .policy import Approvers, Duration, Escalation, OnTimeout
from .types import Task, Vote
from .verifiers import Verdict, Verification, Verifier, inconclusive

M = TypeVar("M", bound=BaseModel)
A = TypeVar("A")


@dataclass(frozen=True)
class Decision(Generic[A]):
    """What :func:`await_decision` returns: the typed answer, and what it approved.

    ``answer`` is what :func:`await_human` would have returned; ``task`` the ended task;
    ``digest`` the digest of exactly what the person saw and answered (title, payload,
    schemas); :meth:`verify` checks that a payload is that one. ``votes`` lists the individual
    votes when the task's approval policy collects several (empty otherwise); ``defaulted``
    is true when the task timed out and the answer is its policy's default, not a person's.
    """

    answer: A
    task: Task
    votes: list[Vote] = field(default_factory=list)
    defaulted: bool = False

    @property
    def digest(self) -> str:
        """The approved digest: SHA-256 of the canonical title, payload and schemas."""
        return self.task.digest

    @property
    def answered_by(self) -> str | None:
        """Who answered."""
        return self.task.answered_by

    @property
    def answered_via(self) -> str | None:
        """Through which channel (``dashboard``, ``slack``, ``api`` ...)."""
        return self.task.answered_via

    def verify(self, payload: Any) -> None:
        """Raises :class:`inloop.DigestMismatch` unless ``payload`` (a model instance or JSON)
        is exactly what was approved (see :meth:`inloop.Task.verify`)."""
        self.task.verify(payload)

    @classmethod
    def _from_task(cls, task: dict[str, Any], answer: A) -> Decision[A]:
        t = Task._from_json(task)
        return cls(answer=answer, task=t, votes=list(t.votes), defaulted=t.defaulted)


@overload
async def await_human(
    title: str,
    *,
    payload: Any,
    response: type[M],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: Literal["raise"] | M | dict[str, Any] | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> M: ...


@overload
async def await_human(
    title: str,
    *,
    payload: Any,
    response: dict[str, Any],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: OnTimeout | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> Any: ...


async def await_human(
    title: str,
    *,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: OnTimeout | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> Any:
    """Asks a person and waits for the answer, durably.

    The request is stored before anything else happens. With a ``key``, calling again (after
    a crash, a retry, a redeploy) returns the same task, and its answer if one came: the agent
    never asks twice and never acts on two answers. ``response`` is a Pydantic model class (an
    instance of it is returned) or a JSON Schema dict (the answer is returned as JSON).

    ``verification`` (see :mod:`inloop.verifiers`) has the core check every answer with rules
    and an LLM before it is accepted; ``verifier`` is your own check, run here when an answer
    arrives: ``fn(payload, answer)`` (sync or async) returns ``verifiers.passed()``,
    ``rejected(reason)`` or ``inconclusive(reason)``. A rejection sends the task back to the
    person with the reason and keeps waiting; an exception in ``fn`` is inconclusive (the
    fail policy of ``verification`` decides; fail-closed by default).

    An approval policy (see :mod:`inloop.policy`) says who must answer: ``approvers``
    (:class:`inloop.Approvers`: who may answer, how many distinct approvals complete the task,
    whether the requester, ``requested_by``, is excluded), ``reminders`` (durations after
    creation at which the ``notify`` targets are reminded), ``escalate``
    (:class:`inloop.Escalation` steps) and ``on_timeout``: ``"raise"`` (the default) or a
    default answer (an instance of ``response``, or a dict) returned when ``timeout`` passes
    unanswered, recorded as a default (``task.defaulted``, ``answered_via == "timeout"``).

    ``callback_url`` also sends the task's end (any end) to that URL as a signed
    ``task.ended`` event, for a system other than this agent (see :meth:`Client.create`).

    ``traceparent`` (a W3C trace context) puts the task's life in the agent's trace: its
    spans (``inloop.create``, ``inloop.deliver``, ``inloop.answer``, ``inloop.resume`` ...)
    become children of that span. By default it is the current OpenTelemetry span's, when
    ``opentelemetry`` is installed and a span is active. inloop exports its spans when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (docs/deployment.md, "Tracing").

    Raises :class:`inloop.TimedOut` when ``timeout`` passes unanswered and ``on_timeout`` is
    ``"raise"`` (never a made-up denial), :class:`inloop.Cancelled` when the task is cancelled,
    :class:`inloop.VerificationExhausted` (with ``.reasons``) when every allowed answer was
    rejected, and :class:`inloop.KeyReused` when ``key`` already names a different request.
    Cancelling the awaiting coroutine leaves the task pending.

    Example::

        decision = await await_human(
            "Approve this refund?",
            payload=Refund(order_id="A-1", amount=500.0),
            response=Decision,
            key="refund-A-1",
            timeout=timedelta(hours=4),
        )

    Example (two of three approvers, reminded, escalated, defaulting to a denial)::

        approval = await await_human(
            "Wire 25,000 EUR to ACME?",
            payload=wire,
            response=Approval,
            key=f"wire-{wire.id}",
            requested_by="alice@acme.com",  # she asked, so she may not approve it
            approvers=Approvers(any_of=["alice@acme.com", "bob@acme.com", "role:finance"],
                                required=2, exclude_requester=True),
            reminders=[timedelta(minutes=30), timedelta(hours=2)],
            escalate=[Escalation(after=timedelta(hours=4), notify=["slack:@cfo"],
                                 add_approvers=["carol@acme.com"])],
            timeout=timedelta(hours=8),
            on_timeout=Approval(approved=False),
        )
    """
    return (
        await _run(
            title,
            payload=payload,
            response=response,
            key=key,
            timeout=timeout,
            notify=notify,
            assign_to=assign_to,
            namespace=namespace,
            client=client,
            verification=verification,
            verifier=verifier,
            requested_by=requested_by,
            approvers=approvers,
            reminders=reminders,
            escalate=escalate,
            on_timeout=on_timeout,
            callback_url=callback_url,
            traceparent=traceparent,
        )
    )[1]


@overload
async def await_decision(
    title: str,
    *,
    payload: Any,
    response: type[M],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: Literal["raise"] | M | dict[str, Any] | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> Decision[M]: ...


@overload
async def await_decision(
    title: str,
    *,
    payload: Any,
    response: dict[str, Any],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: OnTimeout | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> Decision[Any]: ...


async def await_decision(
    title: str,
    *,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: OnTimeout | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> Decision[Any]:
    """:func:`await_human`, returning a :class:`Decision`: the typed answer (``.answer``) with
    what it approved (``.digest``, ``.task``), who answered (``.answered_by``,
    ``.answered_via``), and ``.verify(payload)``, which raises :class:`inloop.DigestMismatch`
    unless the payload is exactly the one approved. Same parameters, same errors, same
    durability as :func:`await_human`.

    Example (an approval bound to the action)::

        decision = await await_decision("Run this tool?", payload=args, response=Approval,
                                        key=f"tool-{call_id}")
        if decision.answer.approved:
            decision.verify(args)  # what runs is what was approved
            await once(f"tool-{call_id}", lambda: run_tool(args))
    """
    task, answer = await _run(
        title,
        payload=payload,
        response=response,
        key=key,
        timeout=timeout,
        notify=notify,
        assign_to=assign_to,
        namespace=namespace,
        client=client,
        verification=verification,
        verifier=verifier,
        requested_by=requested_by,
        approvers=approvers,
        reminders=reminders,
        escalate=escalate,
        on_timeout=on_timeout,
        callback_url=callback_url,
        traceparent=traceparent,
    )
    return Decision._from_task(task, answer)


async def _run(
    title: str,
    *,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    key: str | None,
    timeout: Timeout | None,
    notify: list[str] | None,
    assign_to: list[str] | None,
    namespace: str | None,
    client: Client | None,
    verification: Verification | None,
    verifier: Verifier | None,
    requested_by: str | None,
    approvers: Approvers | None,
    reminders: Sequence[Duration] | None,
    escalate: Sequence[Escalation] | None,
    on_timeout: OnTimeout | None,
    callback_url: str | None,
    traceparent: str | None,
) -> tuple[dict[str, Any], Any]:
    """What :func:`await_human` and :func:`await_decision` share: builds the request, waits,
    and returns the ended task (as JSON) and the typed answer."""
    client = client or default_client(namespace)
    request = client._request(
        title,
        payload,
        response,
        key,
        timeout,
        notify,
        assign_to,
        requested_by,
        namespace,
        None,
        verification,
        callback_url=callback_url,
        traceparent=traceparent,
        approvers=approvers,
        reminders=reminders,
        escalate=escalate,
        on_timeout=on_timeout,
    )
    if verifier is None:
        task = await client._ask_task(request)
        return task, parse_response(response, task.get("response"))
    return await _with_verifier(client, request, payload, response, verifier)


async def _with_verifier(
    client: Client,
    request: str,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    verifier: Verifier,
) -> tuple[dict[str, Any], Any]:
    """Waits for an answer, judges it with ``verifier``, reports the verdict to the core, and
    waits again while the core sends the task back to the person. Returns the task after the
    passing verdict (as JSON) and the answer."""
    engine = await client._native()
    task_id = json.loads(await engine.create(request))["task"]["id"]
    return await _verified_wait(client, task_id, verifier, payload, response)


async def _verified_wait(
    client: Client,
    task_id: str,
    verifier: Verifier,
    payload: Any = None,
    response: type[BaseModel] | dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Waits for an answer to an existing task, judges it with ``verifier`` (``payload``
    defaults to the task's own), reports the verdict to the core, and waits again while the
    core sends the task back to the person. Also used by the framework adapters."""
    name = "sdk:" + str(getattr(verifier, "__name__", None) or type(verifier).__name__)
    engine = await client._native()
    while True:
        done = json.loads(await engine.await_response(task_id))
        answer = parse_response(response, done.get("response"))
        if payload is None:
            payload = done.get("payload")
        if done.get("status") == "timed_out":
            return done, answer  # the policy's on_timeout default: the agent's own, not judged
        started = time.monotonic()
        verdict = await _judge(verifier, payload, answer)
        latency_ms = round((time.monotonic() - started) * 1000)
        body = json.dumps(
            {
                "attempts": done.get("attempts", 0),
                "verdict": verdict.kind,
                "reason": verdict.reason,
                "verifier": name,
                "latency_ms": latency_ms,
            }
        )
        try:
            after = json.loads(await engine.submit_verdict(task_id, body))
        except Conflict:
            continue  # judged meanwhile (a retried agent): look at the task again
        if after["status"] == "completed":
            return after, answer


async def _judge(verifier: Verifier, payload: Any, answer: Any) -> Verdict:
    """Runs the verifier (a sync one in a worker thread); an exception or a result that is not
    a :class:`Verdict` is inconclusive, never a crash."""
    try:
        if inspect.iscoroutinefunction(verifier):
            result: Any = await verifier(payload, answer)
        else:
            result = await asyncio.to_thread(verifier, payload, answer)
            if inspect.isawaitable(result):
                result = await result
    except Exception as e:
        return inconclusive(f"the verifier raised {type(e).__name__}: {e}"[:2000])
    if not isinstance(result, Verdict):
        return inconclusive(f"the verifier returned {type(result).__name__}, not a Verdict")
    return result


@overload
def await_human_sync(
    title: str,
    *,
    payload: Any,
    response: type[M],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: Literal["raise"] | M | dict[str, Any] | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> M: ...


@overload
def await_human_sync(
    title: str,
    *,
    payload: Any,
    response: dict[str, Any],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: OnTimeout | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> Any: ...


def await_human_sync(
    title: str,
    *,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    key: str | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    requested_by: str | None = None,
    approvers: Approvers | None = None,
    reminders: Sequence[Duration] | None = None,
    escalate: Sequence[Escalation] | None = None,
    on_timeout: OnTimeout | None = None,
    callback_url: str | None = None,
    traceparent: str | None = None,
) -> Any:
    """:func:`await_human` for synchronous code (a script, a worker thread).

    It cannot run inside a running event loop (that would block the loop): there, use
    ``await await_human(...)``.

    Example::

        decision = await_human_sync("Approve?", payload=refund, response=Decision, key="r-1")
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "await_human_sync() was called inside a running event loop, which it would "
            "block; use `await await_human(...)` there instead"
        )
    return asyncio.run(
        await_human(
            title,
            payload=payload,
            response=response,
            key=key,
            timeout=timeout,
            notify=notify,
            assign_to=assign_to,
            namespace=namespace,
            client=client,
            verification=verification,
            verifier=verifier,
            requested_by=requested_by,
            approvers=approvers,
            reminders=reminders,
            escalate=escalate,
            on_timeout=on_timeout,
            callback_url=callback_url,
            traceparent=traceparent,
        )
    )
