"""The agent of the browser test: asks for a refund decision and prints the typed answer."""

import asyncio
import json
import sys
from typing import Literal

from pydantic import BaseModel, Field

from inloop import Client, await_human
from inloop.verifiers import Rule, Verification


class Refund(BaseModel):
    order_id: str
    amount: float
    customer_note: str


class Decision(BaseModel):
    approved: bool = Field(title="Approve the refund?")
    amount: int = Field(ge=1, le=500, title="Amount to refund (EUR)")
    category: Literal["damaged", "late", "other"] = Field(title="Reason category")
    comment: str | None = Field(default=None, description="Shown to the customer")


async def main() -> None:
    client = Client(sys.argv[1])
    decision = await await_human(
        "Refund order A-1042?",
        payload=Refund(order_id="A-1042", amount=129.5, customer_note="Arrived <b>broken</b>"),
        response=Decision,
        key="browser-refund-A-1042",
        # Checked by the core after the schema: the dashboard shows the reason to the reviewer.
        verification=Verification(
            rules=[
                Rule(
                    name="within_order",
                    check={"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]},
                    message="the refund may not exceed the order's amount",
                )
            ]
        ),
        client=client,
    )
    print(json.dumps(decision.model_dump()), flush=True)
    await client.close()


asyncio.run(main())
