"""create + answer + resume cycles per second with 100 concurrent agents.

This process runs the agents (each loops: await_human with a fresh key); a second process
answers every pending task it sees, concurrently. A cycle counts when the agent resumes.

    python benches/throughput.py --backend postgres --agents 100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from _common import database, machine

from inloop import Client, await_human

ANSWERER = r"""
import asyncio, sys, time
from datetime import timedelta
from inloop import Client, Conflict
async def main(url, ns, seconds):
    c = Client(url, namespace=ns)
    end = time.monotonic() + seconds
    seen = set()
    since = None
    async def answer(i):
        try:
            await c.answer(i, True, by="bench")
        except Conflict:
            pass
    while time.monotonic() < end:
        # Only tasks created since the newest one seen (minus a margin; `seen` dedupes).
        page = await c.list(status="pending", limit=500, created_after=since)
        fresh = [t for t in page if t.id not in seen]
        for t in fresh:
            seen.add(t.id)
            asyncio.ensure_future(answer(t.id))
        if page:
            since = max(t.created_at for t in page) - timedelta(milliseconds=50)
        await asyncio.sleep(0.001 if fresh else 0.002)
asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def run(url: str, agents: int, seconds: float) -> tuple[int, float]:
    ns = f"tp-{time.time_ns()}"
    client = Client(url, namespace=ns)
    await client.list()
    proc = subprocess.Popen([sys.executable, "-c", ANSWERER, url, ns, str(seconds + 5)])
    count = 0
    stop = time.monotonic() + seconds

    async def agent(a: int) -> None:
        nonlocal count
        i = 0
        while time.monotonic() < stop:
            await await_human("tp", payload={"a": a, "i": i}, response={"type": "boolean"},
                              key=f"a{a}-{i}", client=client)
            count += 1
            i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(agent(a) for a in range(agents)))
    elapsed = time.perf_counter() - t0
    proc.kill()
    await client.close()
    return count, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    with database(args.backend) as url:
        count, elapsed = asyncio.run(run(url, args.agents, args.seconds))
    print(f"machine: {machine()}")
    print(f"throughput ({args.backend}, {args.agents} agents, answers from another process): "
          f"{count} cycles in {elapsed:.1f} s = {count / elapsed:.0f} cycles/s")


if __name__ == "__main__":
    main()
