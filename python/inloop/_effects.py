"""``once``: run a side effect at most once per key, and remember its result."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from . import _native
from ._schema import to_json
from .client import Client, default_client
from .errors import InvalidArgument

M = TypeVar("M", bound=BaseModel)

#: The effect: a function without arguments, sync or async.
Fn = Callable[[], Any]


def _process() -> str:
    return f"python:{socket.gethostname()}:{os.getpid()}"


async def _record(engine: _native.Engine, namespace: str, key: str, token: str, result: str) -> Any:
    """Records the result (one transaction); returns the recorded JSON. A separate function
    so the crash tests can kill the process right after it."""
    return json.loads(await engine.effect_finish(namespace, key, token, result))["result"]


def _as(result_type: type[BaseModel] | None, value: Any) -> Any:
    if result_type is None:
        return value
    try:
        return result_type.model_validate(value)
    except ValidationError as e:
        raise InvalidArgument(
            f"the recorded result does not fit {result_type.__name__}: {e}"
        ) from e


@overload
async def once(
    key: str,
    fn: Fn,
    *,
    result_type: type[M],
    client: Client | None = None,
    namespace: str | None = None,
    release_on_error: bool = True,
    by: str | None = None,
) -> M: ...


@overload
async def once(
    key: str,
    fn: Fn,
    *,
    result_type: None = None,
    client: Client | None = None,
    namespace: str | None = None,
    release_on_error: bool = True,
    by: str | None = None,
) -> Any: ...


async def once(
    key: str,
    fn: Fn,
    *,
    result_type: type[BaseModel] | None = None,
    client: Client | None = None,
    namespace: str | None = None,
    release_on_error: bool = True,
    by: str | None = None,
) -> Any:
    """Runs the side effect ``fn`` at most once for ``key``, and returns its recorded result.

    The start and the result of the effect are recorded in inloop's database (or through its
    server, in remote mode). A retried agent that reaches the same ``once(key, ...)`` gets the
    recorded result and ``fn`` does not run again. ``fn`` takes no arguments; it may be sync
    or async (a sync ``fn`` runs in the calling thread). Its result must be JSON-serializable
    (a Pydantic model instance is dumped); ``once`` returns the *recorded* JSON, on the first
    run as on every replay (with ``result_type``, a Pydantic model class, parsed into it).

    What is guaranteed, and what is not (``docs/policies.md``):

    - ``fn`` runs at most once per ``(namespace, key)``, across processes and machines, unless
      a person allows a retry.
    - If a process dies inside ``fn`` (or between ``fn`` returning and the result being
      recorded), nobody can know whether the effect happened: the effect is *in doubt*. Every
      later call raises :class:`inloop.EffectInDoubt` (never a silent second run) until a
      person resolves it in the dashboard ("Effects in doubt": mark done with a result, or
      allow a retry). A concurrent call while ``fn`` is running also raises it.
    - If ``fn`` raises, the failure is recorded and the effect released: the next call runs
      ``fn`` again (so ``fn`` should raise only when the effect did not happen). With
      ``release_on_error=False`` an exception leaves the effect in doubt instead (for an
      ``fn`` that cannot tell, such as a timeout after a request was sent).
    - A cancelled or interrupted ``fn`` (``asyncio.CancelledError``, ``KeyboardInterrupt``)
      leaves the effect in doubt.
    - A result that is not JSON-serializable, or over 256 KiB, cannot be recorded: the effect
      ran, so it stays in doubt and :class:`inloop.InvalidArgument` / :class:`inloop.TooLarge`
      is raised.

    For a person to resolve an effect in doubt correctly, the effect must be idempotent or
    checkable in the system it acts on (pass ``key`` along as the provider's idempotency key
    where there is one).

    Example::

        from inloop import once

        receipt = await once(f"refund-{order_id}",
                             lambda: stripe.Refund.create(charge=charge_id,
                                                          idempotency_key=f"refund-{order_id}"))
    """
    client = client or default_client(namespace)
    ns = namespace or client.namespace
    if not isinstance(key, str):
        raise InvalidArgument(f"key must be a string, not {type(key).__name__}")
    if not callable(fn):
        raise InvalidArgument("fn must be a function taking no arguments")
    engine = await client._native()
    token = secrets.token_urlsafe(24)
    begun = json.loads(await engine.effect_begin(ns, key, token, by or _process()))
    if begun["outcome"] == "done":
        return _as(result_type, begun["result"])
    token = begun["token"]
    try:
        value = fn()
        if inspect.isawaitable(value):
            value = await value
    except Exception as e:
        if release_on_error:
            message = f"{type(e).__name__}: {e}"[:2000]
            try:
                await engine.effect_abort(ns, key, token, message)
            except Exception as abort_error:  # the effect stays in doubt; say why
                logging.getLogger("inloop").warning(
                    "inloop: the failure of effect %r could not be recorded (%s); "
                    "it stays in doubt",
                    key,
                    abort_error,
                )
        raise
    try:
        text = json.dumps(to_json(value), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(
            f"the result of the effect {key!r} is not JSON-serializable ({e}); the effect ran, "
            "so it is now in doubt: a person must mark it done (with a result) or allow a retry"
        ) from e
    return _as(result_type, await _record(engine, ns, key, token, text))


@overload
def once_sync(
    key: str,
    fn: Fn,
    *,
    result_type: type[M],
    client: Client | None = None,
    namespace: str | None = None,
    release_on_error: bool = True,
    by: str | None = None,
) -> M: ...


@overload
def once_sync(
    key: str,
    fn: Fn,
    *,
    result_type: None = None,
    client: Client | None = None,
    namespace: str | None = None,
    release_on_error: bool = True,
    by: str | None = None,
) -> Any: ...


def once_sync(
    key: str,
    fn: Fn,
    *,
    result_type: type[BaseModel] | None = None,
    client: Client | None = None,
    namespace: str | None = None,
    release_on_error: bool = True,
    by: str | None = None,
) -> Any:
    """:func:`once` for synchronous code. It cannot run inside a running event loop (that
    would block the loop): there, use ``await once(...)``.

    Example::

        receipt = once_sync("charge-A-1", lambda: charge_card("A-1", 12.5))
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "once_sync() was called inside a running event loop, which it would block; "
            "use `await once(...)` there instead"
        )
    return asyncio.run(
        once(
            key,
            fn,
            result_type=result_type,
            client=client,
            namespace=namespace,
            release_on_error=release_on_error,
            by=by,
        )
    )
