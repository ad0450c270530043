"""How late does `TimedOut` arrive after the deadline?

Starts N concurrent await_human calls with timeouts spread over 0.2-2 s and measures, for each,
the time between its deadline (as stored on the task) and the moment TimedOut was raised.

    python benches/timeout_overshoot.py --backend sqlite --n 200
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import datetime, timezone

from _common import database, fmt, machine, percentiles

from inloop import Client, TimedOut, await_human


async def run(url: str, n: int) -> list[float]:
    ns = f"to-{time.time_ns()}"
    client = Client(url, namespace=ns)
    await client.list()
    rng = random.Random(7)
    overshoot: list[float] = []

    async def one(i: int) -> None:
        try:
            await await_human("to", payload={}, response={"type": "boolean"}, key=f"t{i:06d}",
                              timeout=rng.uniform(0.2, 2.0), client=client)
        except TimedOut:
            raised = datetime.now(timezone.utc)
            task = (await client.list(key_prefix=f"t{i:06d}", limit=1))[0]
            assert task.deadline is not None
            overshoot.append((raised - task.deadline).total_seconds() * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    await client.close()
    return overshoot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    with database(args.backend) as url:
        samples = asyncio.run(run(url, args.n))
    print(f"machine: {machine()}")
    print(f"timeout overshoot ({args.backend}): {fmt(percentiles(samples))}")


if __name__ == "__main__":
    main()
