"""The :class:`Client`: both sides of inloop on one database."""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import threading
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from . import _native
from ._schema import is_model_class, payload_parts, response_schema, to_json
from ._tracing import current_traceparent
from .errors import InvalidArgument
from .policy import Approvers, Duration, Escalation, OnTimeout, duration_ms
from .types import AuditCheck, AuditEvent, Effect, EffectState, Status, Task, TaskPage
from .verifiers import Verdict, Verification

Timeout = Duration


def _timeout_ms(timeout: Timeout | None) -> int | None:
    if timeout is None:
        return None
    return duration_ms(timeout, "timeout")


def _ms(t: datetime | None) -> int | None:
    if t is None:
        return None
    if t.tzinfo is None:
        raise InvalidArgument("datetimes must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return int(t.timestamp() * 1000)


class Client:
    """A connection to inloop, for agents and for the people who answer them: a database
    opened in this process, or an inloop server (remote mode).

    Configuration (the core's one rule): ``url`` (an inloop server) if given, else
    ``database_url`` if given, else ``INLOOP_URL`` (a server; ``INLOOP_API_KEY`` is then
    required), else ``INLOOP_DATABASE_URL``, else the SQLite file ``.inloop/inloop.db`` under
    the current directory (created on first use). A server needs an API key (``api_key`` or
    ``INLOOP_API_KEY``; a missing one raises :class:`inloop.ConfigError`), and is scoped to
    the key's namespace: ``namespace`` must be that namespace (``"default"`` unless the key
    was created with ``--namespace``). The database is opened (and migrated) on first use; a
    ``Client`` may be shared by any number of coroutines and event loops.

    Example (the human side, from any process on the same database)::

        from inloop import Client

        client = Client()
        task = (await client.list(status="pending"))[0]
        await client.answer(task.id, {"approved": True}, by="alice@example.com")

    Example (an agent using an inloop server instead of a database; a server restart or a
    dropped connection never ends a wait, the agent resumes when the server is back)::

        from inloop import Client, await_human

        client = Client(url="http://inloop.internal:7070", api_key="ilk_...")
        decision = await await_human("Approve?", payload={"amount": 5},
                                     response={"type": "boolean"}, key="order-7",
                                     client=client)
    """

    def __init__(
        self,
        database_url: str | None = None,
        namespace: str = "default",
        *,
        url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.namespace = namespace
        self._url = database_url
        self._remote_url = url
        self._api_key = api_key
        self._engine: _native.Engine | None = None
        self._lock = threading.Lock()
        # One opening at a time per event loop: a burst of first calls shares one engine.
        self._opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def _native(self) -> _native.Engine:
        engine = self._engine
        if engine is not None:
            return engine
        loop = asyncio.get_running_loop()
        with self._lock:
            opening = self._opening.setdefault(loop, asyncio.Lock())
        async with opening:
            if self._engine is not None:
                return self._engine
            opened = await _native.Engine.open(self._url, self._remote_url, self._api_key)
            with self._lock:
                if self._engine is None:
                    self._engine = opened
                    return opened
                # Another event loop opened one meanwhile: keep that one.
                spare, engine = opened, self._engine
            await spare.close()
            return engine

    @property
    def database_url(self) -> str:
        """The database URL this client uses (password redacted), or the server's URL in
        remote mode."""
        if self._engine is not None:
            return self._engine.url
        return _native.resolve_target(self._url, self._remote_url, self._api_key)[1]

    @property
    def remote(self) -> bool:
        """Whether this client uses an inloop server rather than a database."""
        if self._engine is not None:
            return self._engine.backend == "remote"
        return _native.resolve_target(self._url, self._remote_url, self._api_key)[0] == "remote"

    async def create(
        self,
        title: str,
        *,
        payload: Any,
        response: Any,
        key: str | None = None,
        timeout: Timeout | None = None,
        notify: list[str] | None = None,
        assign_to: list[str] | None = None,
        requested_by: str | None = None,
        namespace: str | None = None,
        payload_schema: dict[str, Any] | None = None,
        verification: Verification | None = None,
        callback_url: str | None = None,
        approvers: Approvers | None = None,
        reminders: Sequence[Duration] | None = None,
        escalate: Sequence[Escalation] | None = None,
        on_timeout: OnTimeout | None = None,
        traceparent: str | None = None,
    ) -> Task:
        """Creates the task, or returns the one ``key`` already names (``task.created`` tells).

        ``payload`` is a Pydantic model instance (its schema is stored and checked) or any
        JSON value (checked against ``payload_schema`` when given); ``response`` a Pydantic
        model class or a JSON Schema dict. ``verification`` (see :mod:`inloop.verifiers`) has
        the core check every answer with rules and an LLM verifier. ``approvers``,
        ``reminders``, ``escalate`` and ``on_timeout`` are the task's approval policy (see
        :mod:`inloop.policy` and :func:`inloop.await_human`). The same key with a different
        title, payload, schema, verification or policy raises :class:`inloop.KeyReused`.

        ``callback_url`` (an http(s) URL) receives the task's end, answered, timed out,
        cancelled or verification exhausted, as the signed ``task.ended`` event webhooks get
        (check it with :func:`inloop.webhooks.verify_webhook` and the server's callback
        secret). ``inloop serve`` delivers only URLs its ``[callbacks] allow`` list permits;
        through a server, any other URL raises :class:`inloop.InvalidArgument` here. It is not
        part of the digest: a replayed key keeps the task's first callback.

        ``traceparent`` (a W3C trace context; by default the current OpenTelemetry span's,
        when ``opentelemetry`` is installed) makes the spans of the task's life children of
        that span (docs/deployment.md, "Tracing").

        Example::

            task = await client.create("Approve?", payload={"amount": 5},
                                       response={"type": "boolean"}, key="order-7")
        """
        request = self._request(
            title,
            payload,
            response,
            key,
            timeout,
            notify,
            assign_to,
            requested_by,
            namespace,
            payload_schema,
            verification,
            callback_url=callback_url,
            approvers=approvers,
            reminders=reminders,
            escalate=escalate,
            on_timeout=on_timeout,
            traceparent=traceparent,
        )
        engine = await self._native()
        out = json.loads(await engine.create(request))
        return Task._from_json(out["task"], created=out["created"])

    def _request(
        self,
        title: str,
        payload: Any,
        response: Any,
        key: str | None,
        timeout: Timeout | None,
        notify: builtins.list[str] | None,
        assign_to: builtins.list[str] | None,
        requested_by: str | None,
        namespace: str | None,
        payload_schema: dict[str, Any] | None = None,
        verification: Verification | None = None,
        *,
        callback_url: str | None = None,
        approvers: Approvers | None = None,
        reminders: Sequence[Duration] | None = None,
        escalate: Sequence[Escalation] | None = None,
        on_timeout: OnTimeout | None = None,
        traceparent: str | None = None,
    ) -> str:
        """The ``NewTask`` JSON for a request: the one place every way of creating a task
        (``create``, ``await_human`` ...) builds it, the approval policy included."""
        body, model_schema = payload_parts(payload)
        traceparent = traceparent or current_traceparent()
        return _dumps(
            {
                "namespace": namespace or self.namespace,
                "key": key,
                "title": title,
                "payload": body,
                "payload_schema": payload_schema if payload_schema is not None else model_schema,
                "response_schema": response_schema(response),
                "notify": list(notify or []),
                "assign_to": list(assign_to or []),
                "timeout_ms": _timeout_ms(timeout),
                "requested_by": requested_by,
                "verification": None if verification is None else verification.to_json(),
                "callback_url": callback_url,
                "policy": _policy(response, approvers, reminders, escalate, on_timeout),
                # Left out when absent: a server that predates the field still takes the rest.
                **({"traceparent": traceparent} if traceparent else {}),
            }
        )

    async def _ask(self, request: str) -> Any:
        """Create-or-get and wait for the outcome in one native call (``await_human``);
        returns the accepted answer as JSON."""
        return (await self._ask_task(request))["response"]

    async def _ask_task(self, request: str) -> dict[str, Any]:
        """:meth:`_ask`, returning the whole ended task as JSON."""
        engine = await self._native()
        task: dict[str, Any] = json.loads(await engine.ask(request))
        return task

    async def get(self, id: str) -> Task:
        """The task with this id (:class:`inloop.NotFound` if there is none)."""
        engine = await self._native()
        return Task._from_json(json.loads(await engine.get(id)))

    async def get_by_key(self, key: str, namespace: str | None = None) -> Task:
        """The task its idempotency ``key`` names in ``namespace`` (this client's by default);
        :class:`inloop.NotFound` if none.

        Example::

            task = await client.get_by_key("refund-A-1")
        """
        engine = await self._native()
        return Task._from_json(
            json.loads(await engine.get_by_key(namespace or self.namespace, key))
        )

    async def list(
        self,
        *,
        status: Status | str | None = None,
        key_prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        all_namespaces: bool = False,
    ) -> TaskPage:
        """Tasks in this client's namespace, newest first; ``page.next_cursor`` continues.

        Example::

            page = await client.list(status="pending", limit=20)
            while page.next_cursor:
                page = await client.list(status="pending", limit=20, cursor=page.next_cursor)
        """
        if status is not None:
            status = Status(status).value
        flt = {
            "namespace": None if all_namespaces else self.namespace,
            "status": status,
            "key_prefix": key_prefix,
            "created_after": _ms(created_after),
            "created_before": _ms(created_before),
            "limit": limit,
            "cursor": cursor,
        }
        engine = await self._native()
        out = json.loads(await engine.list(_dumps(flt)))
        return TaskPage([Task._from_json(t) for t in out["items"]], out.get("next_cursor"))

    async def answer(self, id: str, response: Any, *, by: str, channel: str = "python") -> Task:
        """Answers a task as ``by``. The core validates the answer against the response schema
        (:class:`inloop.InvalidAnswer` with field errors; the task stays pending) and accepts
        exactly one answer (:class:`inloop.Conflict` names who answered first, and when).

        Example::

            await client.answer(task.id, {"approved": True}, by="alice@example.com")
        """
        engine = await self._native()
        body = _dumps(to_json(response))
        return Task._from_json(json.loads(await engine.answer(id, body, by, channel)))

    async def submit_verdict(
        self,
        id: str,
        verdict: Verdict,
        *,
        attempts: int,
        verifier: str = "sdk:verifier",
        latency_ms: int = 0,
        by: str | None = None,
    ) -> Task:
        """Records an agent-side verifier's verdict on the completed task's answer.

        ``attempts`` is ``task.attempts`` as read with the answer (a compare-and-set: a verdict
        on an answer that was already judged raises :class:`inloop.Conflict`). A rejection
        sends the task back to pending with the reason for the person (or, on the last
        attempt, ends it: :class:`inloop.VerificationExhausted`); an inconclusive verdict
        follows the task's fail policy. :func:`inloop.await_human` with ``verifier=`` does all
        of this for you.

        Example::

            task = await client.wait(task_id)
            await client.submit_verdict(task.id, verifiers.rejected("amount too high"),
                                        attempts=task.attempts, verifier="sdk:amount")
        """
        engine = await self._native()
        body = _dumps(
            {
                "attempts": attempts,
                "verdict": verdict.kind,
                "reason": verdict.reason,
                "verifier": verifier,
                "latency_ms": latency_ms,
                "by": by,
            }
        )
        return Task._from_json(json.loads(await engine.submit_verdict(id, body)))

    async def cancel(
        self, id: str, *, by: str, reason: str | None = None, channel: str = "python"
    ) -> Task:
        """Cancels a pending task; its waiter raises :class:`inloop.Cancelled`."""
        engine = await self._native()
        return Task._from_json(json.loads(await engine.cancel(id, by, channel, reason)))

    async def wait(self, id: str, timeout: Timeout | None = None) -> Task:
        """Waits until the task ends (or ``timeout`` passes) and returns it, ended or not.

        Unlike :func:`inloop.await_human` this never raises for a timed-out or cancelled task:
        check ``task.status``.
        """
        ms = _timeout_ms(timeout)
        secs = None if ms is None else ms / 1000
        engine = await self._native()
        return Task._from_json(json.loads(await engine.wait(id, secs)))

    async def audit(self, id: str) -> builtins.list[AuditEvent]:
        """The task's audit trail, oldest first."""
        engine = await self._native()
        return [AuditEvent._from_json(e) for e in json.loads(await engine.audit(id))]

    async def verify_audit(self, id: str) -> AuditCheck:
        """Verifies the task's audit hash chain (an edited or removed row shows)."""
        engine = await self._native()
        d = json.loads(await engine.verify_audit(id))
        return AuditCheck(
            ok=d["ok"],
            rows=d["rows"],
            broken_at_seq=d.get("broken_at_seq"),
            problem=d.get("problem"),
        )

    async def effect(self, key: str, namespace: str | None = None) -> Effect:
        """The exactly-once effect ``key`` names (see :func:`inloop.once`) in ``namespace``
        (this client's by default); :class:`inloop.NotFound` if none.

        Example::

            effect = await client.effect("charge-A-1")
            print(effect.state, effect.attempt, effect.started_by)
        """
        engine = await self._native()
        return Effect._from_json(json.loads(await engine.effect(namespace or self.namespace, key)))

    async def effects(
        self,
        *,
        state: EffectState | Literal["in_doubt"] | str | None = None,
        limit: int = 100,
        all_namespaces: bool = False,
    ) -> builtins.list[Effect]:
        """Effects of this client's namespace (or every namespace, with a database), oldest
        first. ``state="in_doubt"`` lists the ones waiting for a person.

        Example::

            for e in await client.effects(state="in_doubt"):
                print(e.key, "began at", e.started_at, "by", e.started_by)
        """
        if isinstance(state, EffectState):
            state = state.value
        flt = {
            "namespace": None if all_namespaces else self.namespace,
            "state": state,
            "limit": limit,
        }
        engine = await self._native()
        return [Effect._from_json(e) for e in json.loads(await engine.effects(_dumps(flt)))]

    async def resolve_effect(
        self,
        key: str,
        action: Literal["mark_done", "allow_retry"],
        *,
        by: str,
        result: Any = None,
        attempt: int | None = None,
        note: str | None = None,
        namespace: str | None = None,
    ) -> Effect:
        """Resolves an effect in doubt, as the person ``by`` (audited): ``"mark_done"`` records
        it done with ``result`` (a Pydantic instance or JSON; ``None`` is ``null``), which every
        later :func:`inloop.once` call returns; ``"allow_retry"`` lets the next call run the
        function again. With ``attempt``, only that attempt is resolved
        (:class:`inloop.Conflict` when another one is in doubt by now). In remote mode the
        API key needs ``--allow-answer``.

        Check first that the process is gone and whether the effect happened.

        Example::

            await client.resolve_effect("charge-A-1", "mark_done", by="alice",
                                        result={"charge": "ch_1"}, note="seen in Stripe")
        """
        if action not in ("mark_done", "allow_retry"):
            raise InvalidArgument(f"action must be mark_done or allow_retry, not {action!r}")
        body: dict[str, Any] = {"action": action, "attempt": attempt, "note": note, "by": by}
        if action == "mark_done":
            body["result"] = to_json(result)
        engine = await self._native()
        out = await engine.effect_resolve(namespace or self.namespace, key, _dumps(body))
        return Effect._from_json(json.loads(out))

    async def close(self) -> None:
        """Closes the database connections. The client reopens them if used again."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()


def _policy(
    response: Any,
    approvers: Approvers | None,
    reminders: Sequence[Duration] | None,
    escalate: Sequence[Escalation] | None,
    on_timeout: OnTimeout | None,
) -> dict[str, Any] | None:
    """The policy's wire JSON (``core/src/policy.rs``), or ``None`` when nothing is asked.
    Checks types and durations here; everything else (a quorum's schema, a reminder after the
    timeout, a default that does not match the schema) is the core's to refuse."""
    policy: dict[str, Any] = {}
    if approvers is not None:
        if not isinstance(approvers, Approvers):
            raise InvalidArgument(
                f"approvers must be an inloop.Approvers, not {type(approvers).__name__}"
            )
        policy["approvers"] = approvers._to_json()
    if reminders is not None:
        if isinstance(reminders, (str, bytes)) or not isinstance(reminders, Sequence):
            raise InvalidArgument(
                "reminders must be a list of durations (timedelta or seconds), "
                f"not {type(reminders).__name__}"
            )
        policy["reminders_ms"] = [
            duration_ms(r, f"reminders[{i}]") for i, r in enumerate(reminders)
        ]
    if escalate is not None:
        if isinstance(escalate, Escalation) or not isinstance(escalate, Sequence):
            raise InvalidArgument(
                f"escalate must be a list of inloop.Escalation steps, not {type(escalate).__name__}"
            )
        for i, step in enumerate(escalate):
            if not isinstance(step, Escalation):
                raise InvalidArgument(
                    f"escalate[{i}] must be an inloop.Escalation, not {type(step).__name__}"
                )
        policy["escalate"] = [step._to_json() for step in escalate]
    if on_timeout is not None and on_timeout != "raise":
        policy["on_timeout"] = {"default": _default_answer(response, on_timeout)}
    return policy or None


def _default_answer(response: Any, on_timeout: object) -> Any:
    """``on_timeout``'s default answer as JSON: an instance of the response model, or a dict."""
    if isinstance(on_timeout, BaseModel):
        if is_model_class(response) and not isinstance(on_timeout, response):
            raise InvalidArgument(
                f"on_timeout must be an instance of {response.__name__} (the response model), "
                f'a dict or "raise", not {type(on_timeout).__name__}'
            )
        return on_timeout.model_dump(mode="json")
    if isinstance(on_timeout, dict):
        return on_timeout
    raise InvalidArgument(
        'on_timeout must be "raise" or a default answer (an instance of the response model '
        f"or a dict), not {on_timeout!r}"
    )


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"not JSON-serializable: {e}") from e


_defaults: dict[tuple[str, str, str, str], Client] = {}
_defaults_lock = threading.Lock()


def default_client(namespace: str | None = None) -> Client:
    """The process-wide client for the configured database or server (``INLOOP_URL``), one
    per namespace. Raises :class:`inloop.ConfigError` for ``INLOOP_URL`` without
    ``INLOOP_API_KEY``."""
    ns = namespace or "default"
    kind, where = _native.resolve_target(None, None, None)
    api_key = os.environ.get("INLOOP_API_KEY", "").strip() if kind == "remote" else ""
    cache_key = (kind, where, api_key, ns)
    with _defaults_lock:
        client = _defaults.get(cache_key)
        if client is None:
            if kind == "remote":
                client = Client(namespace=ns)  # the core reads INLOOP_URL and the key
            else:
                client = Client(_native.resolve_database_url(None), namespace=ns)
            _defaults[cache_key] = client
        return client
