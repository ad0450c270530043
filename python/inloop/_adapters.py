"""What the framework adapters share (``inloop.pydantic_ai``, ``inloop.openai_agents``,
``inloop.claude_agent``, ``inloop.llamaindex``, ``inloop.crewai``): binding an approval to the
exact arguments shown, waiting for several tasks, the message a tool call gets when nobody
decided, and the record tasks that keep a stopped run (one per stop, claimed once by the process
that resumes it). No framework is imported here."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from .client import Client
from .errors import (
    Cancelled,
    Conflict,
    InloopError,
    InvalidArgument,
    NotFound,
    TimedOut,
    VerificationExhausted,
)
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


#: The most stops one run may make (record rounds 1, 2, ...): a bound on the lookup.
MAX_ROUNDS = 1000


def check_run_id(run_id: object) -> str:
    """A run id as the adapters take it: a non-empty string of at most 200 characters.

    Example::

        check_run_id("order-A-1")  # "order-A-1"; check_run_id("") raises InvalidArgument
    """
    if not isinstance(run_id, str) or not run_id.strip() or len(run_id) > 200:
        raise InvalidArgument(
            f"run_id must be a non-empty string of at most 200 characters, not {run_id!r}"
        )
    return run_id


def runs_namespace(client: Client, override: str | None) -> str:
    """Where a run's record tasks live: ``override``, else ``{client.namespace}.runs``.

    Example::

        runs_namespace(client, None)  # "default.runs"
    """
    return override or f"{client.namespace}.runs"


async def latest_record(
    client: Client,
    record_key: Callable[[str, int], str],
    run_id: str,
    override: str | None,
) -> Task | None:
    """The record task of the run's newest stop (keys ``record_key(run_id, 1)``, ``2``, ...),
    or ``None`` if it never stopped.

    Example::

        latest = await latest_record(client, record_key, "order-A-1", None)
    """
    ns = runs_namespace(client, override)
    latest: Task | None = None
    for n in range(1, MAX_ROUNDS + 1):
        try:
            record = await client.get_by_key(record_key(run_id, n), namespace=ns)
        except NotFound:
            return latest
        if record.namespace != ns:  # remote mode looks in the key's namespace only
            return latest
        latest = record
    return latest


async def pending_record(
    client: Client,
    record_key: Callable[[str, int], str],
    run_id: object,
    override: str | None,
    what: str,
) -> Task:
    """The record task of the run's newest stop that nobody resumed yet; :class:`NotFound`
    (naming ``what``, e.g. ``"OpenAI Agents run"``) if there is none.

    Example::

        record = await pending_record(client, record_key, "order-A-1", None, "OpenAI Agents run")
    """
    found = await latest_record(client, record_key, check_run_id(run_id), override)
    if found is None or found.status is not Status.PENDING:
        ns = runs_namespace(client, override)
        raise NotFound(f"no {what} {run_id!r} waiting in namespace {ns}")
    return found


def already_resumed(latest: Task, run_id: str, what: str) -> Conflict:
    """The error for starting a run again whose last stop was claimed: the run went on (or is
    going on) elsewhere, and starting it again could repeat its side effects.

    Example::

        raise already_resumed(latest, "order-A-1", "OpenAI Agents run")
    """
    return Conflict(
        f"the {what} {run_id!r} was already resumed after its stop "
        f"{latest.payload.get('round')}; use a new run_id for a new run",
        details={"record_id": latest.id, "resumed_by": latest.answered_by},
    )


async def claim_stop(client: Client, record_id: str, channel: str) -> bool:
    """Claims a stopped run for this process by answering its record task (a compare-and-set
    in the core): ``True`` for the one process that may resume it, ``False`` for every other.

    Example::

        if await claim_stop(client, pending.record_id, "openai-agents"):
            ...  # resume the run: no other process does
    """
    holder = f"{socket.gethostname()}:{os.getpid()}"
    try:
        await client.answer(record_id, {"resumed_by": holder}, by=holder, channel=channel)
    except Conflict:
        return False
    return True
