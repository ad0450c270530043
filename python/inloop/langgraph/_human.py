"""``human(...)``: ask a person from inside a LangGraph node, as a LangGraph interrupt that is
also a durable inloop task."""

from __future__ import annotations

from typing import Any, TypeVar, cast, overload

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.types import Interrupt, interrupt
from pydantic import BaseModel

from .._schema import payload_parts, response_schema
from .._sync import run_sync
from ..client import Client, Timeout, default_client
from ..errors import InvalidArgument
from ._outcome import Answered, NotAnswered, outcome_from_resume

M = TypeVar("M", bound=BaseModel)

KEY_PREFIX = "langgraph:"
CLIENT_KEY = "inloop_client"
"""``config["configurable"][CLIENT_KEY]`` may hold the :class:`inloop.Client` nodes use (the
helpers :func:`inloop.langgraph.invoke` and :class:`inloop.langgraph.Resumer` set it)."""

_MAX_KEY = 512


def task_key(thread_id: str, interrupt_id: str) -> str:
    """The inloop idempotency key of the task behind a LangGraph interrupt.

    LangGraph derives an interrupt's id from the checkpoint namespace of the node's task and
    the interrupt's slot in it, so the key stays the same when the node re-runs on resume and
    differs for every other interrupt of the thread.

    Example::

        task_key("thread-1", "b4a7d5f2493c39cea293bd999c1d9c85")
        # 'langgraph:thread-1:b4a7d5f2493c39cea293bd999c1d9c85'
    """
    key = f"{KEY_PREFIX}{thread_id}:{interrupt_id}"
    if len(key.encode()) > _MAX_KEY:
        raise InvalidArgument(
            f"the thread id is too long for an inloop key ({len(thread_id.encode())} bytes; "
            f"at most {_MAX_KEY - len(KEY_PREFIX) - 33})"
        )
    return key


def parse_task_key(key: str) -> tuple[str, str] | None:
    """``(thread_id, interrupt_id)`` for a key made by :func:`task_key`, else ``None``."""
    if not key.startswith(KEY_PREFIX):
        return None
    thread_id, sep, interrupt_id = key[len(KEY_PREFIX) :].rpartition(":")
    if not sep or len(interrupt_id) != 32:
        return None
    return thread_id, interrupt_id


def _thread_id(config: RunnableConfig) -> str:
    conf = config.get("configurable") or {}
    thread_id = conf.get("thread_id")
    if thread_id is None:
        raise InvalidArgument(
            "inloop.langgraph.human() runs inside a graph compiled with a checkpointer and "
            'invoked with config={"configurable": {"thread_id": ...}}'
        )
    return str(thread_id)


def _client(config: RunnableConfig, client: Client | None, namespace: str | None) -> Client:
    if client is not None:
        return client
    configured = (config.get("configurable") or {}).get(CLIENT_KEY)
    if isinstance(configured, Client):
        return configured
    return default_client(namespace)


class _Ask:
    """One ``human()`` call: the interrupt value before and after its task exists."""

    def __init__(
        self,
        title: str,
        payload: Any,
        response: Any,
        timeout: Timeout | None,
        notify: list[str] | None,
        assign_to: list[str] | None,
        namespace: str | None,
        client: Client | None,
    ) -> None:
        self.config = get_config()
        self.thread_id = _thread_id(self.config)
        self.checkpoint_ns = str((self.config.get("configurable") or {}).get("checkpoint_ns", ""))
        self.client = _client(self.config, client, namespace)
        self.title = title
        self.payload = payload
        self.response = response
        self.options: dict[str, Any] = {
            "timeout": timeout,
            "notify": notify,
            "assign_to": assign_to,
            "namespace": namespace,
        }
        body, _ = payload_parts(payload)  # JSON mode: never a model instance in a checkpoint
        self.schema = response_schema(response)
        self.value: dict[str, Any] = {"title": title, "payload": body}

    def interrupted(self, gi: GraphInterrupt) -> Interrupt | None:
        args: tuple[Any, ...] = gi.args
        interrupts = args[0] if args else ()
        if not isinstance(interrupts, (list, tuple)) or len(interrupts) != 1:
            return None
        it = interrupts[0]
        return it if isinstance(it, Interrupt) else None

    async def create(self, interrupt_id: str) -> dict[str, Any]:
        key = task_key(self.thread_id, interrupt_id)
        task = await self.client.create(
            self.title, payload=self.payload, response=self.response, key=key, **self.options
        )
        return {
            **self.value,
            "inloop": {
                "task_id": task.id,
                "key": key,
                "namespace": task.namespace,
                "thread_id": self.thread_id,
                "checkpoint_ns": self.checkpoint_ns,
            },
        }


@overload
def human_outcome(
    title: str,
    *,
    payload: Any,
    response: type[M],
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
) -> Answered[M] | NotAnswered: ...


@overload
def human_outcome(
    title: str,
    *,
    payload: Any,
    response: dict[str, Any],
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
) -> Answered[Any] | NotAnswered: ...


def human_outcome(
    title: str,
    *,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
) -> Answered[Any] | NotAnswered:
    """Asks a person from a graph node; returns :class:`Answered` (with the typed answer) or
    :class:`NotAnswered` (timed out or cancelled) so the node can branch.

    The first time the node reaches this call, the inloop task is created (key:
    :func:`task_key`, from the thread id and LangGraph's interrupt id) and the graph stops on a
    LangGraph interrupt whose value is ``{"title", "payload", "inloop": {"task_id", "key",
    ...}}`` (JSON only) with the response's JSON Schema as ``response_schema``. LangGraph
    re-runs the node from its first line on resume: the creation is then a no-op (same key,
    same task), and this call returns the outcome the thread was resumed with. Use it in sync
    nodes; in ``async def`` nodes use :func:`ahuman_outcome`.

    Example::

        def approve(state: State) -> dict[str, Any]:
            outcome = human_outcome("Approve this refund?", payload=Refund(**state),
                                    response=Decision, timeout=timedelta(hours=4))
            if isinstance(outcome, NotAnswered):
                return {"status": f"escalated ({outcome.status})"}
            return {"approved": outcome.answer.approved}
    """
    ask = _Ask(title, payload, response, timeout, notify, assign_to, namespace, client)
    try:
        resumed = interrupt(ask.value, response_schema=ask.schema)
    except GraphInterrupt as gi:
        it = ask.interrupted(gi)
        if it is not None:
            it.value = run_sync(ask.create(it.id))
        raise
    return outcome_from_resume(response, resumed)


async def ahuman_outcome(
    title: str,
    *,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
) -> Answered[Any] | NotAnswered:
    """:func:`human_outcome` for ``async def`` nodes.

    Example::

        async def approve(state: State) -> dict[str, Any]:
            outcome = await ahuman_outcome("Approve?", payload=state, response=Decision)
            ...
    """
    ask = _Ask(title, payload, response, timeout, notify, assign_to, namespace, client)
    try:
        resumed = interrupt(ask.value, response_schema=ask.schema)
    except GraphInterrupt as gi:
        it = ask.interrupted(gi)
        if it is not None:
            it.value = await ask.create(it.id)
        raise
    return outcome_from_resume(response, resumed)


@overload
def human(
    title: str,
    *,
    payload: Any,
    response: type[M],
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
) -> M: ...


@overload
def human(
    title: str,
    *,
    payload: Any,
    response: dict[str, Any],
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
) -> Any: ...


def human(
    title: str,
    *,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
) -> Any:
    """Asks a person from a graph node and returns the typed answer.

    Like :func:`human_outcome`, but returns the answer itself and raises
    :class:`inloop.TimedOut` or :class:`inloop.Cancelled` (in the node, where it can be
    caught) when the task ended without one.

    Example::

        def approve(state: State) -> dict[str, Any]:
            try:
                d = human("Approve this refund?", payload=Refund(**state), response=Decision,
                          timeout=timedelta(hours=4))
            except inloop.TimedOut:
                return {"status": "escalated"}
            return {"approved": d.approved}
    """
    outcome = human_outcome(
        title,
        payload=payload,
        response=cast(Any, response),
        timeout=timeout,
        notify=notify,
        assign_to=assign_to,
        namespace=namespace,
        client=client,
    )
    if isinstance(outcome, NotAnswered):
        raise outcome.error()
    return outcome.answer


async def ahuman(
    title: str,
    *,
    payload: Any,
    response: type[BaseModel] | dict[str, Any],
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    namespace: str | None = None,
    client: Client | None = None,
) -> Any:
    """:func:`human` for ``async def`` nodes.

    Example::

        async def approve(state: State) -> dict[str, Any]:
            d = await ahuman("Approve?", payload=state, response=Decision)
            return {"approved": d.approved}
    """
    outcome = await ahuman_outcome(
        title,
        payload=payload,
        response=response,
        timeout=timeout,
        notify=notify,
        assign_to=assign_to,
        namespace=namespace,
        client=client,
    )
    if isinstance(outcome, NotAnswered):
        raise outcome.error()
    return outcome.answer
