"""A LangGraph agent that needs a person's approval before it refunds an order.

Run it, then answer from a second terminal (or any process on the same database):

    .venv/bin/inloop tasks list
    .venv/bin/inloop tasks answer ID '{"approved": true, "note": "fine"}'

The graph's checkpoints live in .inloop/checkpoints.db (SqliteSaver), the question in
.inloop/inloop.db. Kill the agent while it waits and start it again: the node re-runs, finds the
same task (same key), and carries on when it is answered. A worker can also resume it for you:
`inloop.langgraph.Resumer(graph).run_forever()`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from inloop.langgraph import NotAnswered, human_outcome, invoke


class Refund(BaseModel):
    order_id: str
    amount: float = Field(description="Amount in EUR")


class Decision(BaseModel):
    approved: bool
    note: str | None = Field(default=None, description="Shown to the customer")


class State(TypedDict, total=False):
    order_id: str
    amount: float
    outcome: str


def approve(state: State) -> State:
    outcome = human_outcome(
        "Approve this refund?",
        payload=Refund(order_id=state["order_id"], amount=state["amount"]),
        response=Decision,
        timeout=timedelta(hours=float(os.environ.get("REFUND_TIMEOUT_HOURS", "4"))),
    )
    if isinstance(outcome, NotAnswered):
        return {"outcome": f"escalated: the request {outcome.status}"}
    d = outcome.answer
    return {"outcome": ("refunded" if d.approved else "refused") + f" ({d.note or 'no note'})"}


def main() -> None:
    Path(".inloop").mkdir(exist_ok=True)
    with SqliteSaver.from_conn_string(".inloop/checkpoints.db") as saver:
        graph = (
            StateGraph(State)
            .add_node("approve", approve)
            .add_edge(START, "approve")
            .add_edge("approve", END)
            .compile(checkpointer=saver)
        )
        config: Any = {"configurable": {"thread_id": "refund-A-1"}}
        print("agent: asking a person to approve the refund of order A-1 (500 EUR)")
        print("agent: answer it with  .venv/bin/inloop tasks list  and  tasks answer ID '{...}'")
        state = graph.get_state(config)
        first = None if state.next else {"order_id": "A-1", "amount": 500.0}
        out = invoke(graph, first, config)
        print(f"agent: {out.value.get('outcome')}")


if __name__ == "__main__":
    main()
