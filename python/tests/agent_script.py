"""A minimal agent for the subprocess tests: asks once with a key, prints the outcome as JSON."""

from __future__ import annotations

import asyncio
import json
import sys

from pydantic import BaseModel

from inloop import Client, InloopError, await_human


class Decision(BaseModel):
    approved: bool
    note: str | None = None


async def main(url: str, namespace: str, key: str, timeout: float | None) -> None:
    client = Client(url or None, namespace=namespace)
    print(json.dumps({"event": "started"}), flush=True)
    try:
        decision = await await_human(
            "Approve this refund?",
            payload={"order_id": key, "amount": 12.5},
            response=Decision,
            key=key,
            timeout=timeout,
            client=client,
        )
        tasks = await client.list(key_prefix=key)
        print(
            json.dumps(
                {
                    "event": "answered",
                    "decision": decision.model_dump(),
                    "task_ids": [t.id for t in tasks],
                }
            ),
            flush=True,
        )
    except InloopError as e:
        print(json.dumps({"event": "error", "code": e.code, "message": str(e)}), flush=True)


if __name__ == "__main__":
    url, namespace, key = sys.argv[1], sys.argv[2], sys.argv[3]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run(main(url, namespace, key, timeout))
