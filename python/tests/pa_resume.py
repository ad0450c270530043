"""Resumes a pending Pydantic AI run in a fresh process:
`python pa_resume.py <inloop-url> <namespace> <run-id>`; prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import sys

from pa_agents import EXECUTED, make_agent

from inloop import Client
from inloop.pydantic_ai import PendingRun


async def main() -> None:
    url, namespace, run_id = sys.argv[1:4]
    client = Client(url, namespace=namespace)
    pending = await PendingRun.load(run_id, client=client)
    result = await pending.resume(make_agent())
    print(json.dumps({"output": None if result is None else result.output, "executed": EXECUTED}))
    await client.close()


asyncio.run(main())
