"""A process that runs (or continues) a LlamaIndex workflow run through inloop:
`python li_child.py <inloop-url> <namespace> <run-id> <start-json or "-">`; prints one JSON
line with the workflow's result (or the error) when the run ends."""

from __future__ import annotations

import asyncio
import json
import sys

from li_flows import EFFECTS, RESPONSES, RefundFlow

from inloop import Client, InloopError, llamaindex


async def main() -> None:
    url, namespace, run_id, start = sys.argv[1:5]
    client = Client(url, namespace=namespace)
    try:
        result = await llamaindex.run(
            RefundFlow(timeout=60),
            run_id=run_id,
            response=RESPONSES,
            start=None if start == "-" else json.loads(start),
            client=client,
        )
        out: dict[str, object] = {"result": result}
    except InloopError as e:
        out = {"error": type(e).__name__, "message": e.message}
    print(json.dumps({**out, "effects": EFFECTS}), flush=True)
    await client.close()


asyncio.run(main())
