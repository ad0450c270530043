"""Which inloop task stands behind a pending LangGraph interrupt, and what to resume it with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from langgraph.types import Interrupt

from ..client import Client, Timeout
from ..types import Task
from ._hitl import (
    hitl_decisions,
    hitl_form,
    hitl_unanswered,
    is_hitl_request,
    is_tool_approval,
    tool_approval_form,
)
from ._human import task_key
from ._outcome import resume_value

Kind = Literal["human", "hitl", "tool_approval"]


@dataclass(frozen=True)
class TaskRef:
    """A pending interrupt and the inloop task that answers it."""

    interrupt: Interrupt
    task_id: str
    kind: Kind


def kind_of(it: Interrupt) -> Kind | None:
    """What kind of inloop-backed interrupt this is (``None``: not one inloop can answer)."""
    value = it.value
    if isinstance(value, dict) and isinstance(value.get("inloop"), dict):
        return "human"
    if is_hitl_request(value):
        return "hitl"
    if is_tool_approval(value):
        return "tool_approval"
    return None


async def ensure_task(
    client: Client, thread_id: str, it: Interrupt, timeout: Timeout | None
) -> TaskRef | None:
    """The task behind ``it``: the one ``human()`` created, or (for the HITL middleware's
    requests) one created here, idempotently, with the same key rule. ``None`` for an
    interrupt inloop does not know."""
    kind = kind_of(it)
    if kind is None:
        return None
    if kind == "human":
        return TaskRef(it, str(it.value["inloop"]["task_id"]), kind)
    if kind == "hitl":
        title, payload, schema = hitl_form(it.value)
    else:
        rs = it.response_schema if isinstance(it.response_schema, dict) else None
        title, payload, schema = tool_approval_form(it.value, rs)
    task = await client.create(
        title, payload=payload, response=schema, key=task_key(thread_id, it.id), timeout=timeout
    )
    return TaskRef(it, task.id, kind)


def resume_for(kind: Kind, it: Interrupt, task: Task) -> Any:
    """The value to resume ``it`` with, now that its task ended."""
    if kind == "human":
        return resume_value(task)
    answered = task.status.value == "completed"
    why = f"No decision: the review task {task.status.value}" + (
        f" ({task.cancel_reason})" if task.cancel_reason else ""
    )
    if kind == "hitl":
        return (
            hitl_decisions(it.value, task.response) if answered else hitl_unanswered(it.value, why)
        )
    return task.response if answered else {"type": "reject", "message": why}
