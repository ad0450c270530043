"""LlamaIndex workflows adapter: a workflow's ``InputRequiredEvent`` is answered by a person
through inloop, and the run can be resumed by any process.

When a step emits an ``InputRequiredEvent`` (returned from a step, or the ``waiter_event`` of
``ctx.wait_for_event``), :func:`run` stops the run, turns each request into an inloop task with
a typed form (the JSON Schema of the ``HumanResponseEvent`` subclass that answers it) and keeps
the workflow's serialized ``Context`` (``ctx.to_dict()``) in a record task, so the process that
asked may exit or die: any process with the same workflow resumes the run
(``Context.from_dict``) once people answered, sending each answer into it as the response
event.

Example::

    from workflows import Context, Workflow, step
    from workflows.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
    from inloop import llamaindex

    class AskRefund(InputRequiredEvent):
        order_id: str
        amount: float

    class RefundDecision(HumanResponseEvent):
        order_id: str                       # carried over from AskRefund, not asked
        decision: Literal["approve", "reject"]
        reason: str | None = None

    result = await llamaindex.run(RefundFlow(), run_id="refund-A-1", response=RefundDecision,
                                  start={"order_id": "A-1", "amount": 500.0},
                                  timeout=timedelta(hours=4))
    # if that process died while waiting, any other one continues the run:
    result = await llamaindex.run(RefundFlow(), run_id="refund-A-1", response=RefundDecision)

Needs ``pip install 'inloop[llamaindex]'`` (``llama-index-workflows``, which
``llama-index-core`` re-exports as ``llama_index.core.workflow``). See docs/adapters.md.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

try:
    from pydantic_core import to_jsonable_python
    from workflows import Context, Workflow
    from workflows.context.serializers import BaseSerializer
    from workflows.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent
    from workflows.handler import WorkflowHandler
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "inloop.llamaindex needs LlamaIndex workflows: pip install 'inloop[llamaindex]'"
    ) from e

from ._adapters import (
    already_resumed,
    check_run_id,
    claim_stop,
    latest_record,
    pending_record,
    runs_namespace,
    wait_all,
)
from .client import Client, Timeout, default_client
from .errors import Cancelled, InvalidArgument, NotFound, TimedOut, VerificationExhausted
from .types import Status, Task
from .verifiers import Verification, Verifier

__all__ = [
    "PendingRun",
    "Responses",
    "record_key",
    "request_input",
    "request_key",
    "request_payload",
    "response_event",
    "response_schema",
    "run",
]

KEY_PREFIX = "llamaindex:"
RECORD_PREFIX = "llamaindex-run:"
_RECORD_SCHEMA: dict[str, Any] = {"type": "object"}

#: The response event class(es) a run's requests are answered with: one ``HumanResponseEvent``
#: subclass for every request, or one per ``InputRequiredEvent`` subclass (a mapping).
Responses = type[HumanResponseEvent] | Mapping[type[InputRequiredEvent], type[HumanResponseEvent]]


def request_key(run_id: str, round: int, index: int) -> str:
    """The idempotency key of the task for the ``index``-th request (0 first) of the run's
    ``round``-th stop (1 first).

    Example::

        request_key("refund-A-1", 1, 0)   # "llamaindex:refund-A-1:1:0"
    """
    return f"{KEY_PREFIX}{run_id}:{round}:{index}"


def record_key(run_id: str, round: int) -> str:
    """The key of the record task holding the run's serialized ``Context`` at its
    ``round``-th stop.

    Example::

        record_key("refund-A-1", 1)   # "llamaindex-run:refund-A-1:1"
    """
    return f"{RECORD_PREFIX}{run_id}:{round}"


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def request_payload(ev: InputRequiredEvent) -> dict[str, Any]:
    """What the person sees of a request: the event's fields (declared ones and the free-form
    ones such as ``prefix``) as JSON.

    Example::

        request_payload(AskRefund(order_id="A-1", amount=500.0))
        # {"order_id": "A-1", "amount": 500.0}
    """
    if not isinstance(ev, InputRequiredEvent):
        raise InvalidArgument(f"an InputRequiredEvent is needed, not {type(ev).__name__}")
    declared = {name: getattr(ev, name) for name in type(ev).model_fields}
    body = {**dict(ev.items()), **declared}
    try:
        out = to_jsonable_python(body)
    except Exception as e:  # pydantic_core raises its own error type
        raise InvalidArgument(
            f"the fields of {type(ev).__name__} are not JSON-serializable: {e}"
        ) from e
    return dict(out)


def _carried(response: type[HumanResponseEvent], request: Mapping[str, Any]) -> set[str]:
    return {name for name in response.model_fields if name in request}


def response_schema(
    response: type[HumanResponseEvent], request: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The form a person answers: the JSON Schema of the ``HumanResponseEvent`` subclass,
    without the fields the request carries itself (a field named like one of the request's is
    copied from it into the response event, not asked). The base ``HumanResponseEvent`` has no
    fields: it gets ``{"response": string}``, as in LlamaIndex's examples.

    Example::

        response_schema(RefundDecision, {"order_id": "A-1", "amount": 500.0})
        # {"properties": {"decision": ..., "reason": ...}, "required": ["decision"], ...}
    """
    if not (isinstance(response, type) and issubclass(response, HumanResponseEvent)):
        raise InvalidArgument(f"response must be a HumanResponseEvent subclass, not {response!r}")
    if not response.model_fields:
        return {
            "type": "object",
            "properties": {"response": {"type": "string", "title": "Response"}},
            "required": ["response"],
        }
    schema = copy.deepcopy(response.model_json_schema())
    carried = _carried(response, request or {})
    props = schema.get("properties", {})
    for name in carried:
        props.pop(name, None)
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r not in carried]
    return schema


def _response_class(responses: Responses, ev: InputRequiredEvent) -> type[HumanResponseEvent]:
    if isinstance(responses, Mapping):
        for cls in type(ev).__mro__:
            if cls in responses:
                return responses[cls]
        raise InvalidArgument(
            f"no response event class for {type(ev).__name__} in the responses mapping"
        )
    return responses


def _classes(responses: Responses) -> dict[str, type[HumanResponseEvent]]:
    values = list(responses.values()) if isinstance(responses, Mapping) else [responses]
    return {_type_name(c): c for c in values}


def response_event(task: Task, response: type[HumanResponseEvent]) -> HumanResponseEvent:
    """The event a completed task sends into the workflow: ``response`` built from the
    person's answer plus the fields it carries over from the request.

    Example::

        ev = response_event(await client.get(task_id), RefundDecision)
        handler.ctx.send_event(ev)
    """
    if task.status is not Status.COMPLETED:
        raise InvalidArgument(f"task {task.id} has no accepted answer ({task.status.value})")
    request = task.payload.get("request", {})
    answer = task.response if isinstance(task.response, dict) else {"response": task.response}
    carried = {k: request[k] for k in _carried(response, request)}
    return response.model_validate({**answer, **carried})


def _not_answered(task: Task) -> Exception:
    why = task.status.value.replace("_", " ")
    msg = f"nobody answered the workflow's request {task.key} (task {task.id}: {why})"
    details = {"task_id": task.id, "status": task.status.value}
    if task.status is Status.TIMED_OUT:
        return TimedOut(msg, details=details)
    if task.status is Status.CANCELLED:
        return Cancelled(msg + (f": {task.cancel_reason}" if task.cancel_reason else ""),
                         details=details)  # fmt: skip
    return VerificationExhausted(msg, details=details)


def _title(ev: InputRequiredEvent, title: str | Callable[[InputRequiredEvent], str] | None) -> str:
    if callable(title):
        return title(ev)
    if title:
        return title
    prefix = ev.get("prefix")
    if isinstance(prefix, str) and prefix.strip():
        return prefix.strip()[:200]
    return f"Input needed: {type(ev).__name__}"


@dataclass(frozen=True)
class PendingRun:
    """A workflow run stopped on input requests: its serialized ``Context``, its round (1 for
    the first stop, 2 for the next, ...) and the task of each request, in the order they were
    emitted. Stored in a record task (key ``llamaindex-run:{run_id}:{round}``, namespace
    ``{namespace}.runs``), so any process can :meth:`load` it by run id.

    Example::

        pending = await PendingRun.load("refund-A-1", client=client)
        handler = await pending.resume(RefundFlow(), RefundDecision)
        result = await handler
    """

    run_id: str
    round: int
    context: dict[str, Any]
    task_ids: list[str]
    record_id: str
    client: Client
    response_types: list[str] = field(default_factory=list)

    async def tasks(self) -> list[Task]:
        """The current state of each request's task."""
        return [await self.client.get(t) for t in self.task_ids]

    async def wait(self, *, verifier: Verifier | None = None) -> list[Task]:
        """Waits, push-woken, until every task ended (judging answers with ``verifier`` if
        given); returns them in request order."""
        return await wait_all(self.client, self.task_ids, verifier)

    async def resume(
        self,
        workflow: Workflow,
        responses: Responses,
        *,
        wait: bool = True,
        verifier: Verifier | None = None,
        serializer: BaseSerializer | None = None,
    ) -> WorkflowHandler | None:
        """Continues the run with the people's answers: at most once across all processes.

        Waits for the tasks (``wait=False``: ``None`` while some are pending), claims this
        round (answers the record task: compare-and-set in the core, so a second resumer gets
        ``None``), restores the ``Context`` with ``Context.from_dict(workflow, ...)``, starts
        ``workflow.run(ctx=...)`` and sends one response event per request
        (:func:`response_event`). Returns the running handler: stream or await it. A request
        that ended without an answer (timed out, cancelled, verification exhausted) raises
        :class:`inloop.TimedOut` / :class:`inloop.Cancelled` /
        :class:`inloop.VerificationExhausted` after the claim: the run ends there, nothing is
        sent. Claiming first means a crash during the resumed run is not retried, so steps
        that ran after the answer never run twice.

        Example::

            pending = await PendingRun.load("refund-A-1")
            result = await (await pending.resume(RefundFlow(), RefundDecision))
        """
        if wait:
            tasks = await self.wait(verifier=verifier)
        else:
            tasks = await self.tasks()
            if any(t.status is Status.PENDING for t in tasks):
                return None
        by_name = _classes(responses)
        classes: list[type[HumanResponseEvent]] = []
        for task, name in zip(tasks, self.response_types, strict=True):
            cls = by_name.get(name)
            if cls is None:
                raise InvalidArgument(
                    f"request {task.key} is answered with {name}, which is not among the "
                    f"response classes given ({', '.join(sorted(by_name))})"
                )
            classes.append(cls)
        events = [response_event(t, c) for t, c in zip(tasks, classes, strict=True)
                  if t.status is Status.COMPLETED]  # fmt: skip
        if not await claim_stop(self.client, self.record_id, "llamaindex"):
            return None
        for t in tasks:
            if t.status is not Status.COMPLETED:
                raise _not_answered(t)
        ctx: Context[Any] = Context.from_dict(workflow, self.context, serializer=serializer)
        handler = workflow.run(ctx=ctx)
        for ev in events:
            handler.ctx.send_event(ev)
        return handler

    @classmethod
    async def load(
        cls,
        run_id: str,
        *,
        client: Client | None = None,
        record_namespace: str | None = None,
    ) -> PendingRun:
        """The newest stop of the run ``run_id`` that nobody resumed yet (from any process on
        the same database or server); :class:`inloop.NotFound` if there is none.

        Example::

            pending = await PendingRun.load("refund-A-1", client=client)
        """
        c = client or default_client()
        found = await pending_record(
            c, record_key, run_id, record_namespace, "LlamaIndex workflow run"
        )
        return cls._from_record(found, c)

    @classmethod
    def _from_record(cls, record: Task, client: Client) -> PendingRun:
        p = record.payload
        return cls(
            run_id=p["run_id"],
            round=p["round"],
            context=p["context"],
            task_ids=list(p["tasks"]),
            record_id=record.id,
            client=client,
            response_types=list(p["response_types"]),
        )


async def request_input(
    context: dict[str, Any],
    requests: list[InputRequiredEvent],
    responses: Responses,
    *,
    run_id: str,
    client: Client | None = None,
    title: str | Callable[[InputRequiredEvent], str] | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    verification: Verification | None = None,
    record_namespace: str | None = None,
) -> PendingRun:
    """Hands a stopped run to people: one task per request (key
    ``llamaindex:{run_id}:{round}:{index}``, payload ``{"request": <the event's fields>,
    "event": <its class>, "response_event": <the answering class>, "run_id"}``, form
    :func:`response_schema`) and a record of the serialized ``context`` (``ctx.to_dict()``
    taken after the stop) so any process can resume it. ``timeout``, ``notify``,
    ``assign_to`` and ``verification`` go to each task. Idempotent: asking again for the same
    stop returns the same tasks and record.

    Example::

        pending = await request_input(handler.ctx.to_dict(), [ev], RefundDecision,
                                      run_id="refund-A-1")
    """
    rid = check_run_id(run_id)
    if not requests:
        raise InvalidArgument("request_input() needs at least one InputRequiredEvent")
    c = client or default_client()
    latest = await latest_record(c, record_key, rid, record_namespace)
    rnd = 1 if latest is None else int(latest.payload["round"])
    if latest is not None and latest.status is not Status.PENDING:
        rnd += 1  # the last stop was resumed: this is the next one
    tasks: list[Task] = []
    types: list[str] = []
    for i, ev in enumerate(requests):
        cls = _response_class(responses, ev)
        request = request_payload(ev)
        types.append(_type_name(cls))
        tasks.append(
            await c.create(
                _title(ev, title),
                payload={
                    "request": request,
                    "event": _type_name(type(ev)),
                    "response_event": _type_name(cls),
                    "run_id": rid,
                },
                response=response_schema(cls, request),
                key=request_key(rid, rnd, i),
                timeout=timeout,
                notify=notify,
                assign_to=assign_to,
                verification=verification,
            )
        )
    task_ids = [t.id for t in tasks]
    if latest is not None and latest.payload.get("tasks") == task_ids:
        return PendingRun._from_record(latest, c)  # this very stop, recorded before
    record = await c.create(
        "LlamaIndex workflow run waiting for people",
        payload={
            "run_id": rid,
            "round": rnd,
            "context": context,
            "tasks": task_ids,
            "response_types": types,
        },
        response=_RECORD_SCHEMA,
        key=record_key(rid, rnd),
        namespace=runs_namespace(c, record_namespace),
    )
    return PendingRun._from_record(record, c)


async def _until_input(
    handler: WorkflowHandler, on_event: Callable[[Event], Awaitable[None] | None] | None
) -> list[InputRequiredEvent]:
    """Streams the run's events until it ends (``[]``) or emits input requests: then cancels
    the run and drains the stream, so every request that came out before the cancellation is
    returned (their steps are done; the steps still running are in the context as in progress
    and run again on resume)."""
    asked: list[InputRequiredEvent] = []
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            if not asked:
                await handler.cancel_run()
            asked.append(ev)
        elif on_event is not None and not asked:
            out = on_event(ev)
            if out is not None:
                await out
    return asked


async def run(
    workflow: Workflow,
    *,
    run_id: str,
    response: Responses = HumanResponseEvent,
    start: Mapping[str, Any] | StartEvent | None = None,
    client: Client | None = None,
    title: str | Callable[[InputRequiredEvent], str] | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    serializer: BaseSerializer | None = None,
    on_event: Callable[[Event], Awaitable[None] | None] | None = None,
    record_namespace: str | None = None,
) -> Any:
    """Runs the workflow to its end, asking people through inloop whenever it requests input.

    If the run ``run_id`` is waiting (it stopped earlier, in this process or one that exited
    or died), it continues from there and ``start`` is ignored; if its last stop was already
    resumed it raises :class:`inloop.Conflict` (a new run needs a new ``run_id``); otherwise
    it starts with ``workflow.run(**start)`` (or ``workflow.run(start_event=start)``). At
    every stop it calls :func:`request_input`, waits, push-woken, for the answers (an answer
    the core's ``verification`` or your ``verifier(payload, answer)`` rejects goes back to
    the person) and resumes (:meth:`PendingRun.resume`). ``on_event`` sees the run's other
    stream events. Returns the workflow's result, or ``None`` if another process resumed this
    run meanwhile.

    Example::

        result = await run(RefundFlow(), run_id="refund-A-1", response=RefundDecision,
                           start={"order_id": "A-1", "amount": 500.0},
                           timeout=timedelta(hours=4), notify=["slack:#refunds"])
    """
    rid = check_run_id(run_id)
    if not isinstance(workflow, Workflow):
        raise InvalidArgument(f"workflow must be a workflows.Workflow, not {workflow!r}")
    c = client or default_client()
    latest = await latest_record(c, record_key, rid, record_namespace)
    handler: WorkflowHandler | None
    if latest is not None and latest.status is Status.PENDING:
        handler = await PendingRun._from_record(latest, c).resume(
            workflow, response, verifier=verifier, serializer=serializer
        )
    elif latest is not None:
        raise already_resumed(latest, rid, "LlamaIndex workflow run")
    elif start is None:
        raise NotFound(f"no LlamaIndex workflow run {rid!r} is waiting, and no start to begin one")
    elif isinstance(start, StartEvent):
        handler = workflow.run(start_event=start)
    elif isinstance(start, Mapping):
        handler = workflow.run(**start)
    else:
        raise InvalidArgument(f"start must be a mapping or a StartEvent, not {start!r}")
    while handler is not None:
        asked = await _until_input(handler, on_event)
        if not asked:
            return await handler
        pending = await request_input(
            handler.ctx.to_dict(serializer),
            asked,
            response,
            run_id=rid,
            client=c,
            title=title,
            timeout=timeout,
            notify=notify,
            assign_to=assign_to,
            verification=verification,
            record_namespace=record_namespace,
        )
        handler = await pending.resume(workflow, response, verifier=verifier, serializer=serializer)
    return None
