"""Submit -> waiting coroutine resumed, with the answer coming from ANOTHER process.

The agent (this process) creates a task and awaits it; a separate answerer process sees the
pending task, stamps the wall-clock time into the answer and submits it; the agent subtracts
that stamp from the time it resumed. So a sample covers the answer's transaction, the wake-up
path (PostgreSQL NOTIFY, or SQLite's data_version watcher) and the resume of the coroutine.

    python benches/resume_latency.py --backend sqlite --n 500
    python benches/resume_latency.py --backend postgres --n 500
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from _common import database, fmt, machine, percentiles

from inloop import Client, await_human

ANSWERER = r"""
import asyncio, sys, time
from inloop import Client
async def main(url, ns, n):
    c = Client(url, namespace=ns)
    done = 0
    while done < n:
        page = await c.list(status="pending", limit=10)
        if not page:
            await asyncio.sleep(0.0005)
            continue
        for t in page:
            await asyncio.sleep(0.002)   # let the agent park first
            await c.answer(t.id, {"t": time.time_ns()}, by="bench")
            done += 1
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

SCHEMA = {"type": "object", "properties": {"t": {"type": "integer"}}, "required": ["t"]}


async def run(url: str, n: int) -> list[float]:
    ns = f"lat-{time.time_ns()}"
    client = Client(url, namespace=ns)
    await client.list()  # open + migrate before the answerer starts
    proc = subprocess.Popen([sys.executable, "-c", ANSWERER, url, ns, str(n + 20)])
    samples: list[float] = []
    try:
        for i in range(n + 20):
            answer = await await_human(
                "bench", payload={"i": i}, response=SCHEMA, key=f"k{i}", client=client
            )
            resumed = time.time_ns()
            if i >= 20:  # warm-up
                samples.append((resumed - answer["t"]) / 1e6)
    finally:
        proc.wait(timeout=30)
    await client.close()
    return samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    with database(args.backend) as url:
        samples = asyncio.run(run(url, args.n))
    print(f"machine: {machine()}")
    print(f"resume latency ({args.backend}, answer from another process): {fmt(percentiles(samples))}")


if __name__ == "__main__":
    main()
