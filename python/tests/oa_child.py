"""A process that runs (or continues) an OpenAI Agents run through inloop:
`python oa_child.py <inloop-url> <namespace> <run-id> <prompt-json or "-">`; prints one JSON line
with the final output (or the error) when the run ends."""

from __future__ import annotations

import asyncio
import json
import sys

from oa_agents import EXECUTED, make_agent

from inloop import Client, InloopError, openai_agents


async def main() -> None:
    url, namespace, run_id, prompt = sys.argv[1:5]
    client = Client(url, namespace=namespace)
    try:
        result = await openai_agents.run(
            make_agent(), None if prompt == "-" else prompt, run_id=run_id, client=client
        )
        out: dict[str, object] = {"output": None if result is None else result.final_output}
    except InloopError as e:
        out = {"error": type(e).__name__, "message": e.message}
    print(json.dumps({**out, "executed": EXECUTED}), flush=True)
    await client.close()


asyncio.run(main())
