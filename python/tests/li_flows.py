"""LlamaIndex workflows for the adapter tests (imported by the tests and by child processes),
written against ``llama_index.core.workflow`` as a LlamaIndex user would. No LLM: the steps are
plain code. Every side effect (a refund prepared, a refund paid) is appended to EFFECTS and, if
``INLOOP_TEST_EFFECTS`` names a file, to that file (one JSON line each, so a test counts them
across processes)."""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from llama_index.core.workflow import (
    Context,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)

EFFECTS: list[dict[str, Any]] = []


def effect(kind: str, **fields: Any) -> None:
    entry = {"effect": kind, **fields}
    EFFECTS.append(entry)
    path = os.environ.get("INLOOP_TEST_EFFECTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


class AskRefund(InputRequiredEvent):
    """Asks a person whether to refund an order."""

    order_id: str
    amount: float


class RefundDecision(HumanResponseEvent):
    """The person's decision; ``order_id`` is carried over from the request."""

    order_id: str
    decision: Literal["approve", "reject"]
    reason: str | None = None


class AskManager(InputRequiredEvent):
    """A second approval for large refunds."""

    order_id: str
    amount: float


class ManagerDecision(HumanResponseEvent):
    order_id: str
    approved: bool


RESPONSES = {AskRefund: RefundDecision, AskManager: ManagerDecision}


class RefundFlow(Workflow):
    """Prepares a refund (a side effect), asks a person, refunds on approval; refunds of 1000
    or more need a manager's approval too (a second stop)."""

    @step
    async def prepare(self, ctx: Context, ev: StartEvent) -> AskRefund:
        effect("prepared", order_id=ev.order_id)
        await ctx.store.set("amount", ev.amount)
        return AskRefund(order_id=ev.order_id, amount=ev.amount, prefix=f"Refund {ev.order_id}?")

    @step
    async def decide(self, ctx: Context, ev: RefundDecision) -> AskManager | StopEvent:
        amount = await ctx.store.get("amount")
        if ev.decision == "reject":
            return StopEvent(result={"order_id": ev.order_id, "refunded": False,
                                     "reason": ev.reason})  # fmt: skip
        if amount >= 1000:
            return AskManager(order_id=ev.order_id, amount=amount)
        effect("refunded", order_id=ev.order_id, amount=amount)
        return StopEvent(result={"order_id": ev.order_id, "refunded": True, "reason": ev.reason})

    @step
    async def manager(self, ctx: Context, ev: ManagerDecision) -> StopEvent:
        amount = await ctx.store.get("amount")
        if ev.approved:
            effect("refunded", order_id=ev.order_id, amount=amount)
        return StopEvent(result={"order_id": ev.order_id, "refunded": ev.approved})


class ShipFlow(Workflow):
    """Waits inside a step with ``ctx.wait_for_event`` (the plain ``InputRequiredEvent`` /
    ``HumanResponseEvent`` pair): the step runs again from its first line on resume."""

    @step
    async def ship(self, ctx: Context, ev: StartEvent) -> StopEvent:
        effect("ship-step-started", parcel=ev.parcel)
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix=f"Ship parcel {ev.parcel}?"),
            waiter_id=f"ship-{ev.parcel}",
        )
        effect("shipped", parcel=ev.parcel, note=answer.response)
        return StopEvent(result=f"shipped {ev.parcel}: {answer.response}")


class AskItem(InputRequiredEvent):
    item: str


class ItemAnswer(HumanResponseEvent):
    item: str  # carried over: tells the collecting step which request this answers
    keep: bool


class PairFlow(Workflow):
    """Two questions in one stop: a step writes two requests to the stream, another collects
    both answers."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> None:
        for item in ev.get("items"):  # ev.items is the dict-like event's method
            ctx.write_event_to_stream(AskItem(item=item))

    @step
    async def collect(self, ctx: Context, ev: ItemAnswer) -> StopEvent | None:
        got = ctx.collect_events(ev, [ItemAnswer, ItemAnswer])
        if got is None:
            return None
        kept = sorted(e.item for e in got if isinstance(e, ItemAnswer) and e.keep)
        effect("kept", items=kept)
        return StopEvent(result=kept)
