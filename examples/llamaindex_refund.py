"""A LlamaIndex workflow whose refund step asks a person through inloop (`InputRequiredEvent`
answered by a typed `HumanResponseEvent`).

Run it, then answer from a second terminal:

    .venv/bin/inloop tasks list
    .venv/bin/inloop tasks answer ID '{"decision": "approve"}'
    #   or '{"decision": "reject", "reason": "not eligible"}'

No LLM: the steps are plain code. The run stops on the request, inloop stores the workflow's
serialized Context with one task per request, and the run goes on when the task is answered:
kill the script while it waits and run it again, and it resumes the run by its id (the step
that prepared the refund does not run again).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from llama_index.core.workflow import (
    Context,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)

from inloop import llamaindex

RUN_ID = "refund-order-A-1"


class AskRefund(InputRequiredEvent):
    order_id: str
    amount: float


class RefundDecision(HumanResponseEvent):
    order_id: str  # carried over from AskRefund: the form asks only for what follows
    decision: Literal["approve", "reject"]
    reason: str | None = None


class RefundFlow(Workflow):
    @step
    async def prepare(self, ctx: Context, ev: StartEvent) -> AskRefund:
        await ctx.store.set("amount", ev.amount)
        return AskRefund(order_id=ev.order_id, amount=ev.amount, prefix="Approve this refund?")

    @step
    async def refund(self, ctx: Context, ev: RefundDecision) -> StopEvent:
        if ev.decision == "reject":
            return StopEvent(result=f"refused: {ev.reason or 'no reason given'}")
        amount = await ctx.store.get("amount")
        return StopEvent(result=f"refunded {amount} EUR on order {ev.order_id}")


async def main() -> None:
    print("agent: refunding order A-1; a person approves it with")
    print("         .venv/bin/inloop tasks list")
    print('         .venv/bin/inloop tasks answer ID \'{"decision": "approve"}\'', flush=True)
    result = await llamaindex.run(
        RefundFlow(timeout=None),
        run_id=RUN_ID,
        response=RefundDecision,
        start={"order_id": "A-1", "amount": 500.0},
        timeout=timedelta(hours=4),
    )
    print(f"agent: {result if result else 'another process resumed this run'}")


if __name__ == "__main__":
    asyncio.run(main())
