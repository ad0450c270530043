"""One deferred tool call as an inloop task, and the ended task back as a Pydantic AI result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.exceptions import ToolFailed
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied
from pydantic_ai.toolsets import ExternalToolset, FunctionToolset

from .._adapters import ArgumentsChanged, args_digest, no_answer
from ..client import Client, Timeout
from ..types import Status, Task

KEY_PREFIX = "pydantic-ai:"


def call_key(run_id: str, tool_call_id: str) -> str:
    """The idempotency key of the task for one deferred call of one run."""
    return f"{KEY_PREFIX}{run_id}:{tool_call_id}"


def tool_schemas(agent: Agent[Any, Any] | None) -> dict[str, dict[str, Any]]:
    """The JSON Schema of every tool's arguments, by tool name (function and external tools),
    used to validate edited arguments.

    Example::

        schemas = tool_schemas(agent)   # {"refund": {"type": "object", ...}}
    """
    out: dict[str, dict[str, Any]] = {}
    for toolset in agent.toolsets if agent is not None else ():
        if isinstance(toolset, FunctionToolset):
            for name, tool in toolset.tools.items():
                out[name] = dict(tool.tool_def.parameters_json_schema)
        elif isinstance(toolset, ExternalToolset):
            for td in toolset.tool_defs:
                out[td.name] = dict(td.parameters_json_schema)
    return out


def _const(v: str) -> dict[str, Any]:
    return {"const": v}


def approval_schema(args_schema: dict[str, Any] | None) -> dict[str, Any]:
    """The approval form: approve as asked, deny with a message, or edit the arguments (checked
    against the tool's own schema by the core)."""
    args = dict(args_schema or {"type": "object"})
    defs = args.pop("$defs", None)
    schema: dict[str, Any] = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"decision": _const("approve")},
                "required": ["decision"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "decision": _const("deny"),
                    "message": {"type": "string", "maxLength": 10_000},
                },
                "required": ["decision"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"decision": _const("edit"), "args": args},
                "required": ["decision", "args"],
                "additionalProperties": False,
            },
        ]
    }
    if defs:
        schema["$defs"] = defs  # the tool schema's "#/$defs/..." refs resolve from the root
    return schema


def task_request(
    requests: DeferredToolRequests, call: ToolCallPart, schemas: Mapping[str, dict[str, Any]]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(title, payload, response_schema)`` for one deferred call.

    Approvals show the tool, its exact arguments and their digest; questions and external
    calls ask for the result (``metadata["response_schema"]`` of ``CallDeferred`` sets its
    schema; a question defaults to a string, an external call to any JSON value).
    """
    kind = requests.kind(call.tool_call_id)
    meta = requests.metadata.get(call.tool_call_id, {})
    args = call.args_as_dict()
    payload: dict[str, Any] = {"tool": call.tool_name, "args": args, "kind": kind}
    if meta:
        payload["metadata"] = meta
    if kind == "approval":
        payload["args_digest"] = args_digest(args)
        title = str(meta.get("title") or f"Approve {call.tool_name}?")
        return title, payload, approval_schema(schemas.get(call.tool_name))
    schema = meta.get("response_schema")
    if not isinstance(schema, dict):
        schema = {"type": "string"} if kind == "question" else {}
    question = args.get("question") if isinstance(args.get("question"), str) else None
    title = str(meta.get("title") or question or f"Result of {call.tool_name}")
    return title, payload, schema


async def create_tasks(
    client: Client,
    run_id: str,
    requests: DeferredToolRequests,
    schemas: Mapping[str, dict[str, Any]],
    timeout: Timeout | None,
) -> dict[str, Task]:
    """One task per pending call (idempotent: key = run id + tool call id), by tool call id.

    The same run id and call id with other arguments is refused by the core
    (:class:`inloop.KeyReused`): an approval cannot silently move to other arguments."""
    out: dict[str, Task] = {}
    for call in [*requests.approvals, *requests.calls]:
        title, payload, schema = task_request(requests, call, schemas)
        out[call.tool_call_id] = await client.create(
            title,
            payload=payload,
            response=schema,
            key=call_key(run_id, call.tool_call_id),
            timeout=timeout,
        )
    return out


def build_results(requests: DeferredToolRequests, tasks: Mapping[str, Task]) -> DeferredToolResults:
    """The ``DeferredToolResults`` for ended tasks (one per pending call, by tool call id).

    Approvals: approve -> ``ToolApproved(override_args=<the approved arguments>)``, edit ->
    ``ToolApproved(override_args=<the edited arguments>)``, deny -> ``ToolDenied(message)``;
    questions and external calls: the answer. A task that timed out or was cancelled gives
    ``ToolFailed`` (calls) or a ``ToolDenied`` saying so (approvals): never a silent yes.
    Raises :class:`ArgumentsChanged` if a pending call's arguments are not the ones its task
    showed (the approval was given for something else).
    """
    approvals: dict[str, bool | ToolApproved | ToolDenied] = {}
    calls: dict[str, Any] = {}
    metadata: dict[str, dict[str, Any]] = {}
    answered_by: dict[str, str] = {}
    for call in requests.approvals:
        task = tasks[call.tool_call_id]
        args = call.args_as_dict()
        shown = task.payload.get("args_digest")
        if shown != args_digest(args) or task.payload.get("args") != args:
            raise ArgumentsChanged(
                f"tool call {call.tool_call_id} ({call.tool_name}) has other arguments than "
                f"the ones task {task.id} asked about; the decision does not apply",
                details={"task_id": task.id, "approved_digest": shown},
            )
        if task.status is Status.COMPLETED:
            answer = task.response
            if answer["decision"] == "approve":
                approvals[call.tool_call_id] = ToolApproved(override_args=task.payload["args"])
                digest = shown
            elif answer["decision"] == "edit":
                approvals[call.tool_call_id] = ToolApproved(override_args=answer["args"])
                digest = args_digest(answer["args"])
            else:
                approvals[call.tool_call_id] = ToolDenied(
                    answer.get("message") or "A person denied this tool call."
                )
                digest = shown
            metadata[call.tool_call_id] = {"inloop_task_id": task.id, "args_digest": digest}
        else:
            approvals[call.tool_call_id] = ToolDenied(no_answer(task))
            metadata[call.tool_call_id] = {"inloop_task_id": task.id, "status": task.status.value}
        if task.answered_by:
            answered_by[call.tool_call_id] = task.answered_by
    for call in requests.calls:
        task = tasks[call.tool_call_id]
        if task.status is Status.COMPLETED:
            calls[call.tool_call_id] = task.response
        else:
            calls[call.tool_call_id] = ToolFailed(no_answer(task))
        metadata[call.tool_call_id] = {"inloop_task_id": task.id, "status": task.status.value}
        if task.answered_by:
            answered_by[call.tool_call_id] = task.answered_by
    return DeferredToolResults(
        approvals=approvals, calls=calls, metadata=metadata, answered_by=answered_by
    )
