"""LangGraph adapter: people answer graph interrupts through inloop.

Inside a node, :func:`human` asks a person: the question becomes a durable, validated inloop
task *and* a LangGraph interrupt, and the node gets the typed answer when the thread is resumed.
Resume in the process that runs the graph (:func:`invoke`), or from any worker with the graph's
checkpointer (:class:`Resumer`), even after the asking process died::

    from inloop.langgraph import human, invoke

    def approve(state: State) -> dict[str, Any]:
        decision = human("Approve this refund?", payload=Refund(**state), response=Decision)
        return {"approved": decision.approved}

    out = invoke(graph, {"order_id": "A-1", "amount": 500.0},
                 {"configurable": {"thread_id": "refund-A-1"}})

LangChain's ``HumanInTheLoopMiddleware`` requests are answered the same way (``invoke`` and
``Resumer`` create their tasks; see :func:`hitl_form`). Needs ``pip install 'inloop[langgraph]'``.
See docs/adapters.md.
"""

from __future__ import annotations

try:
    import langgraph.types  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("inloop.langgraph needs LangGraph: pip install 'inloop[langgraph]'") from e

from ._hitl import (
    hitl_decisions,
    hitl_form,
    hitl_unanswered,
    is_hitl_request,
    is_tool_approval,
    tool_approval_form,
)
from ._human import (
    CLIENT_KEY,
    ahuman,
    ahuman_outcome,
    human,
    human_outcome,
    parse_task_key,
    task_key,
)
from ._outcome import Answered, NotAnswered, Outcome, outcome_from_resume, resume_value
from ._resume import Resumer, ResumeReport, ainvoke, invoke

__all__ = [
    "CLIENT_KEY",
    "Answered",
    "NotAnswered",
    "Outcome",
    "ResumeReport",
    "Resumer",
    "ahuman",
    "ahuman_outcome",
    "ainvoke",
    "hitl_decisions",
    "hitl_form",
    "hitl_unanswered",
    "human",
    "human_outcome",
    "invoke",
    "is_hitl_request",
    "is_tool_approval",
    "outcome_from_resume",
    "parse_task_key",
    "resume_value",
    "task_key",
    "tool_approval_form",
]
