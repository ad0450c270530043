"""Leases that make "resume a thread once per answer" hold with several resumers running.

A lease is itself an inloop task (the SDK's public API is all it needs): resuming for task
``T`` first creates the task with key ``inloop-resume:{T.id}:{attempt}`` in a separate
namespace, with a deadline of ``ttl``. The core's unique key lets exactly one resumer create
it: that one resumes the thread and then answers the lease (``{"resumed": true}``), which
marks the answer as resumed for good. Others see the lease pending (held: skip) or completed
(done: skip). A lease whose deadline passed (its holder crashed) is expired: the next attempt
number is a new key, so exactly one resumer takes over.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..client import Client, Timeout
from ..errors import Conflict
from ..types import Status, Task

_SCHEMA: dict[str, Any] = {"type": "object"}
_MAX_ATTEMPTS = 1000


def lease_namespace(client: Client, override: str | None) -> str:
    """The namespace leases live in: ``override``, else ``{client.namespace}.resumer`` (so they
    never show among the tasks people answer)."""
    return override or f"{client.namespace}.resumer"


async def acquire(client: Client, task_id: str, namespace: str, ttl: Timeout) -> Task | None:
    """The lease for resuming after task ``task_id`` if this caller got it, else ``None`` (held
    by another resumer, or already done)."""
    for attempt in range(_MAX_ATTEMPTS):
        lease = await client.create(
            "Resume the LangGraph thread waiting on this task",
            payload={"task_id": task_id, "attempt": attempt},
            response=_SCHEMA,
            key=f"inloop-resume:{task_id}:{attempt}",
            timeout=ttl,
            namespace=namespace,
        )
        if lease.created:
            return lease
        if lease.status is Status.COMPLETED:
            return None
        if lease.status is Status.PENDING and not _expired(lease):
            return None
        # Timed out, cancelled, or past its deadline: its holder is gone. Next attempt.
    raise RuntimeError(f"gave up leasing the resume of task {task_id}")


async def release(client: Client, lease: Task, by: str) -> None:
    """Marks the lease done: the thread was resumed for its task."""
    try:
        await client.answer(lease.id, {"resumed": True}, by=by, channel="langgraph")
    except Conflict:
        # It expired while we worked and someone else took over; they will find the
        # interrupt already answered and skip it.
        pass


def _expired(lease: Task) -> bool:
    return lease.deadline is not None and lease.deadline <= datetime.now(timezone.utc)
