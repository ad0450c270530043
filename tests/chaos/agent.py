"""The waiting agent the kill case SIGKILLs: asks once with a key, prints the outcome as JSON.

python agent.py direct DATABASE_URL NAMESPACE KEY
python agent.py remote SERVER_URL NAMESPACE KEY API_KEY
"""

from __future__ import annotations

import asyncio
import json
import sys

from inloop import Client, InloopError, await_human
from pydantic import BaseModel


class Decision(BaseModel):
    approved: bool
    note: str = ""


async def main(mode: str, target: str, namespace: str, key: str, api_key: str | None) -> None:
    if mode == "remote":
        client = Client(url=target, api_key=api_key, namespace=namespace)
    else:
        client = Client(target, namespace=namespace)
    print(json.dumps({"event": "started"}), flush=True)
    try:
        decision = await await_human(
            "Approve the refund?",
            payload={"order": key, "amount": 12.5},
            response=Decision,
            key=key,
            timeout=3600,
            client=client,
        )
        tasks = await client.list(key_prefix=key)
        out = {"event": "answered", "decision": decision.model_dump(), "ids": [t.id for t in tasks]}
    except InloopError as e:
        out = {"event": "error", "code": e.code, "message": str(e)}
    print(json.dumps(out), flush=True)
    await client.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], args[2], args[3], args[4] if len(args) > 4 else None))
