"""An agent that needs a person's approval before it refunds an order.

Run it (the README's first command does, next to `inloop serve`), then answer it in the
dashboard, or from a second terminal:

    .venv/bin/inloop tasks list
    .venv/bin/inloop tasks answer --key refund-A-1 '{"approved": true, "note": "fine"}'

Kill the agent while it waits and start it again: it finds the same request (same key) and,
if the answer came while it was down, continues at once. It never asks twice.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

from pydantic import BaseModel, Field

from inloop import Cancelled, Client, TimedOut, await_human


class Refund(BaseModel):
    order_id: str
    amount: float = Field(description="Amount in EUR")
    reason: str


class Decision(BaseModel):
    approved: bool
    note: str | None = Field(default=None, description="Shown to the customer")


async def main() -> None:
    refund = Refund(order_id="A-1", amount=500.0, reason="Parcel arrived damaged")
    key = f"refund-{refund.order_id}"
    client = Client()
    print(f"agent: asking a person to approve a refund of {refund.amount} EUR ({key})")
    print(f"agent: database {client.database_url}")
    print("agent: answer it in the dashboard, or from another terminal with")
    print(f"         .venv/bin/inloop tasks answer --key {key} '{{\"approved\": true}}'")
    try:
        decision = await await_human(
            "Approve this refund?",
            payload=refund,
            response=Decision,
            key=key,
            timeout=timedelta(hours=float(os.environ.get("REFUND_TIMEOUT_HOURS", "4"))),
            client=client,
        )
    except TimedOut:
        print("agent: nobody answered in time; escalating instead of refunding")
        return
    except Cancelled as e:
        print(f"agent: the request was cancelled ({e}); not refunding")
        return
    if decision.approved:
        print(f"agent: approved ({decision.note or 'no note'}); refunding {refund.order_id}")
    else:
        print(f"agent: rejected ({decision.note or 'no note'}); telling the customer")


if __name__ == "__main__":
    asyncio.run(main())
