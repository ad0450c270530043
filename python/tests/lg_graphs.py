"""Small LangGraph graphs for the adapter tests (imported by the tests and by child processes)."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from inloop import Cancelled, TimedOut
from inloop.langgraph import NotAnswered, human, human_outcome


class Refund(BaseModel):
    order_id: str
    amount: float


class Decision(BaseModel):
    approved: bool
    note: str | None = Field(default=None, max_length=200)


class State(TypedDict, total=False):
    order_id: str
    amount: float
    approved: bool
    second: bool
    status: str
    log: Annotated[list[str], operator.add]


@contextmanager
def checkpointer(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    """A real checkpointer: SqliteSaver for `sqlite://PATH` (a file next to the inloop
    database), PostgresSaver for a PostgreSQL URL."""
    if url.startswith("sqlite:"):
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = url.removeprefix("sqlite://").removeprefix("sqlite:") + ".checkpoints"
        with SqliteSaver.from_conn_string(path) as saver:
            yield saver
    else:
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(url) as saver:
            saver.setup()
            yield saver


def single(saver: BaseCheckpointSaver[Any], calls: list[str], timeout: float | None = None) -> Any:
    """One node, one question; `calls` records every (re-)run of the node and each decision."""

    def approve(state: State) -> State:
        calls.append("before")
        outcome = human_outcome(
            "Approve this refund?",
            payload=Refund(order_id=state["order_id"], amount=state["amount"]),
            response=Decision,
            timeout=timeout,
        )
        if isinstance(outcome, NotAnswered):
            calls.append(f"not answered: {outcome.status}")
            return {"status": f"escalated ({outcome.status})", "log": [outcome.status]}
        calls.append(f"after: {outcome.answer.approved}")
        return {"approved": outcome.answer.approved, "status": "decided", "log": ["decided"]}

    return (
        StateGraph(State)
        .add_node("approve", approve)
        .add_edge(START, "approve")
        .add_edge("approve", END)
        .compile(checkpointer=saver)
    )


def sequential(saver: BaseCheckpointSaver[Any], calls: list[str]) -> Any:
    """One node asking twice in a row; the second question depends on the first answer."""

    def approve(state: State) -> State:
        calls.append("before")
        first = human("First approval", payload={"order_id": state["order_id"]}, response=Decision)
        calls.append(f"between: {first.approved}")
        second = human(
            "Second approval",
            payload={"order_id": state["order_id"], "first": first.approved},
            response=Decision,
        )
        calls.append(f"after: {second.approved}")
        return {"approved": first.approved, "second": second.approved}

    return (
        StateGraph(State)
        .add_node("approve", approve)
        .add_edge(START, "approve")
        .add_edge("approve", END)
        .compile(checkpointer=saver)
    )


def parallel(saver: BaseCheckpointSaver[Any], calls: list[str]) -> Any:
    """Two nodes in one super-step, each asking its own question."""

    def branch(name: str) -> Any:
        def node(state: State) -> State:
            calls.append(f"{name} before")
            try:
                d = human(f"Approve {name}?", payload={"branch": name}, response=Decision)
            except (TimedOut, Cancelled) as e:
                return {"log": [f"{name}: {e.code}"]}
            calls.append(f"{name} after")
            return {"log": [f"{name}: {d.approved}"]}

        return node

    return (
        StateGraph(State)
        .add_node("a", branch("a"))
        .add_node("b", branch("b"))
        .add_edge(START, "a")
        .add_edge(START, "b")
        .add_edge("a", END)
        .add_edge("b", END)
        .compile(checkpointer=saver)
    )
