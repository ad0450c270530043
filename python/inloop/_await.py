"""``await_human``: ask a person, wait durably, get a typed answer."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from ._schema import parse_response
from .client import Client, Timeout, default_client

M = TypeVar("M", bound=BaseModel)


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
) -> Any:
    """Asks a person and waits for the answer, durably.

    The request is stored before anything else happens. With a ``key``, calling again (after
    a crash, a retry, a redeploy) returns the same task, and its answer if one came: the agent
    never asks twice and never acts on two answers. ``response`` is a Pydantic model class (an
    instance of it is returned) or a JSON Schema dict (the answer is returned as JSON).

    Raises :class:`inloop.TimedOut` when ``timeout`` passes unanswered (never a made-up
    denial), :class:`inloop.Cancelled` when the task is cancelled, and
    :class:`inloop.KeyReused` when ``key`` already names a different request. Cancelling the
    awaiting coroutine leaves the task pending.

    Example::

        decision = await await_human(
            "Approve this refund?",
            payload=Refund(order_id="A-1", amount=500.0),
            response=Decision,
            key="refund-A-1",
            timeout=timedelta(hours=4),
        )
    """
    client = client or default_client(namespace)
    request = client._request(
        title, payload, response, key, timeout, notify, assign_to, None, namespace
    )
    return parse_response(response, await client._ask(request))


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
        )
    )
