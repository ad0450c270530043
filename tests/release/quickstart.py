"""The README's Python quickstart, as tests/release/install.sh runs it from an installed wheel.

The key comes from QUICKSTART_KEY (one per run, so that reruns on one database do not find an
old answer); the database from INLOOP_DATABASE_URL. Prints the typed decision as JSON.
"""

import asyncio
import os
from datetime import timedelta

from inloop import await_human
from pydantic import BaseModel


class Refund(BaseModel):
    order_id: str
    amount: float


class Decision(BaseModel):
    approved: bool
    note: str | None = None


async def main() -> None:
    decision = await await_human(
        "Approve this refund?",
        payload=Refund(order_id="A-1", amount=500.0),
        response=Decision,
        key=os.environ["QUICKSTART_KEY"],
        timeout=timedelta(minutes=2),
    )
    assert isinstance(decision, Decision)
    print(f"decision: {decision.model_dump_json()}", flush=True)


asyncio.run(main())
