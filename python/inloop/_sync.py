"""Running the SDK's coroutines from synchronous code (framework hooks that are not async)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Runs ``coro`` to completion from synchronous code and returns its result.

    Without a running event loop in this thread it uses ``asyncio.run``; inside one (a sync
    callback called from async code) it runs the coroutine on a fresh loop in a helper thread,
    so the caller's loop is never re-entered. A :class:`inloop.Client` may be used from any
    number of event loops.

    Example::

        task = run_sync(client.get(task_id))
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inloop-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
