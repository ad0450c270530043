"""What the framework adapters share (``inloop.pydantic_ai``, ``inloop.openai_agents``,
``inloop.claude_agent``): binding an approval to the exact arguments shown, waiting for several
tasks, and the message a tool call gets when nobody decided. No framework is imported here."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .client import Client
from .errors import Cancelled, InloopError, TimedOut, VerificationExhausted
from .types import Status, Task
from .verifiers import Verifier


class ArgumentsChanged(InloopError):
    """The call about to run has other arguments than the ones the person approved."""

    code = "arguments_changed"


def args_digest(args: Mapping[str, Any] | Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a call's arguments: what an approval is bound to.

    Example::

        args_digest({"order_id": "A-1", "amount": 500.0})
    """
    text = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


async def wait_ended(client: Client, task_id: str, verifier: Verifier | None = None) -> Task:
    """Waits, push-woken, until the task ended. With ``verifier``, a completed answer is judged
    by it (``fn(payload, answer)``) and the verdict goes to the core, which sends a rejected
    answer back to the person: this then keeps waiting (see :func:`inloop.await_human`).

    Example::

        task = await wait_ended(client, task.id)
    """
    if verifier is not None:
        from ._await import _verified_wait

        try:
            await _verified_wait(client, task_id, verifier)
        except (TimedOut, Cancelled, VerificationExhausted):
            pass  # ended without an accepted answer: the task says how
        return await client.get(task_id)
    task = await client.wait(task_id)
    while task.status is Status.PENDING:
        task = await client.wait(task_id)
    return task


async def wait_all(
    client: Client, task_ids: list[str], verifier: Verifier | None = None
) -> list[Task]:
    """Waits until every task ended (see :func:`wait_ended`); returns them in order.

    Example::

        done = await wait_all(client, [a.id, b.id])
    """
    return list(await asyncio.gather(*(wait_ended(client, t, verifier) for t in task_ids)))


def no_answer(task: Task) -> str:
    """The message a tool call gets when its task ended without an answer (timed out,
    cancelled, verification exhausted): it is never an approval.

    Example::

        no_answer(task)  # "No decision from a person on this tool call: the request timed out."
    """
    why = task.status.value.replace("_", " ")
    extra = f" ({task.cancel_reason})" if task.cancel_reason else ""
    return f"No decision from a person on this tool call: the request {why}{extra}."
