"""LangChain's ``HumanInTheLoopMiddleware`` requests as inloop tasks, and answers back.

The middleware (``langchain.agents.middleware.HumanInTheLoopMiddleware``) stops the agent on a
LangGraph interrupt whose value is either a batched ``HITLRequest`` (``action_requests`` +
``review_configs``; resumed with ``{"decisions": [...]}``, one decision per action, in order)
or, with ``interrupt_mode="per_call"``, one ``ToolApprovalRequest`` per tool call (resumed with
one decision; the interrupt's ``response_schema`` lists the allowed ones). These functions build
the inloop form that offers exactly the allowed decisions and turn the accepted answer back into
what the middleware expects. Plain dicts in and out: ``langchain`` is not imported.
"""

from __future__ import annotations

from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_TEXT = {"type": "string", "maxLength": 10_000}


def is_hitl_request(value: object) -> bool:
    """Whether an interrupt value is a batched ``HITLRequest``."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("action_requests"), list)
        and isinstance(value.get("review_configs"), list)
    )


def is_tool_approval(value: object) -> bool:
    """Whether an interrupt value is a per-call ``ToolApprovalRequest``."""
    return isinstance(value, dict) and value.get("type") == "tool_approval" and "name" in value


def _decision_schema(decision: str) -> dict[str, Any]:
    const = {"const": decision}
    if decision == "approve":
        return {"type": "object", "properties": {"type": const}, "required": ["type"]}
    if decision == "edit":
        return {
            "type": "object",
            "properties": {"type": const, "args": {"type": "object"}},
            "required": ["type", "args"],
            "description": "Run the tool with these arguments instead",
        }
    if decision == "reject":
        return {
            "type": "object",
            "properties": {"type": const, "message": _TEXT},
            "required": ["type"],
            "description": "Do not run the tool; the message goes back to the model",
        }
    if decision == "respond":
        return {
            "type": "object",
            "properties": {"type": const, "message": _TEXT},
            "required": ["type", "message"],
            "description": "Answer in place of the tool",
        }
    raise ValueError(f"unknown HITL decision type {decision!r}")


def hitl_form(request: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(title, payload, response_schema)`` of the inloop task for a batched ``HITLRequest``.

    The answer is ``{"decisions": [d0, d1, ...]}`` with exactly one decision per action
    request, in order; decision ``i`` may only be one of the ``allowed_decisions`` of that
    action's review config, so the core refuses anything else before it reaches the agent. An
    edit gives the new arguments only (``{"type": "edit", "args": {...}}``): the tool stays the
    one that was requested.

    Example::

        title, payload, schema = hitl_form(interrupt.value)
        task = await client.create(title, payload=payload, response=schema, key=key)
    """
    actions: list[dict[str, Any]] = request["action_requests"]
    configs = {c["action_name"]: c for c in request["review_configs"]}
    items = []
    for action in actions:
        allowed = configs.get(action["name"], {}).get("allowed_decisions") or ["approve", "reject"]
        items.append({"oneOf": [_decision_schema(d) for d in dict.fromkeys(allowed)]})
    schema = {
        "$schema": DRAFT,
        "type": "object",
        "properties": {
            "decisions": {
                "type": "array",
                "prefixItems": items,
                "items": False,
                "minItems": len(items),
                "maxItems": len(items),
            }
        },
        "required": ["decisions"],
    }
    names = ", ".join(a["name"] for a in actions)
    payload = {
        "actions": [
            {
                "name": a["name"],
                "args": a.get("args", {}),
                "description": a.get("description"),
                "allowed_decisions": configs.get(a["name"], {}).get("allowed_decisions"),
            }
            for a in actions
        ]
    }
    return f"Review tool call{'s' if len(actions) > 1 else ''}: {names}", payload, schema


def hitl_decisions(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The ``HITLResponse`` (``{"decisions": [...]}``) for an accepted answer to
    :func:`hitl_form`'s form.

    Example::

        graph.invoke(Command(resume={interrupt.id: hitl_decisions(interrupt.value, answer)}),
                     config)
    """
    actions: list[dict[str, Any]] = request["action_requests"]
    return {
        "decisions": [
            _decision(action["name"], d)
            for action, d in zip(actions, answer["decisions"], strict=True)
        ]
    }


def _decision(name: str, d: dict[str, Any]) -> dict[str, Any]:
    if d["type"] == "edit":
        return {"type": "edit", "edited_action": {"name": name, "args": d["args"]}}
    if d["type"] in ("reject", "respond") and "message" in d:
        return {"type": d["type"], "message": d["message"]}
    return {"type": d["type"]}


def hitl_unanswered(request: dict[str, Any], why: str) -> dict[str, Any]:
    """The ``HITLResponse`` when the task ended without an answer: every action is rejected
    with ``why`` as the message (a timeout is never an approval)."""
    return {"decisions": [{"type": "reject", "message": why} for _ in request["action_requests"]]}


def tool_approval_form(
    request: dict[str, Any], response_schema: dict[str, Any] | None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(title, payload, response_schema)`` for a per-call ``ToolApprovalRequest``: the form
    is the interrupt's own ``response_schema`` (the allowed decisions, and the tool's argument
    schema for edits); the accepted answer is the decision the middleware takes as is."""
    schema = response_schema or {"oneOf": [_decision_schema("approve"), _decision_schema("reject")]}
    payload = {
        "name": request["name"],
        "args": request.get("args", {}),
        "description": request.get("description"),
        "tool_call_id": request.get("tool_call_id"),
    }
    return f"Review tool call: {request['name']}", payload, schema
