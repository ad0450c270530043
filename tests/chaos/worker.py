"""Worker processes of the SQLite-contention and load cases. Each prints one JSON line.

    python worker.py cycle   DATABASE_URL NAMESPACE SECONDS INDEX
        creates a task and answers it, again and again for SECONDS (SQLite contention)
    python worker.py agents  DATABASE_URL NAMESPACE SECONDS AGENTS
        AGENTS concurrent agents in this one process, started over the first RAMP seconds
        ($INLOOP_CHAOS_RAMP, default 10), each `await_decision` in a loop for SECONDS more;
        an agent whose call fails backs off 1 s and asks again with the same key; agent A's
        keys start with `L{A % 2}-` so each answerer owns half of them
    python worker.py answer  DATABASE_URL NAMESPACE SECONDS INDEX
        answers every pending task whose key starts with `L{INDEX}-`, for SECONDS

Any error an inloop call raises is counted and its first messages are printed (a
`database is locked` reaching a caller is counted apart).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from inloop import Client, InloopError, await_decision

RAMP = float(os.environ.get("INLOOP_CHAOS_RAMP", "10"))
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


class Tally:
    def __init__(self) -> None:
        self.errors = 0
        self.locked = 0
        self.messages: list[str] = []
        self.lat_ms: list[float] = []

    def error(self, e: BaseException) -> None:
        self.errors += 1
        if "locked" in str(e).lower() or "busy" in str(e).lower():
            self.locked += 1
        if len(self.messages) < 5:
            self.messages.append(f"{type(e).__name__}: {e}")

    def out(self, **extra: Any) -> None:
        print(
            json.dumps(
                {"errors": self.errors, "locked": self.locked, "messages": self.messages,
                 "lat_ms": self.lat_ms, **extra}
            ),
            flush=True,
        )  # fmt: skip


async def cycle(url: str, ns: str, seconds: float, index: int) -> None:
    client = Client(url, namespace=ns)
    await client.list(limit=1)
    t = Tally()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            task = await client.create(
                "Contention", payload={"w": index, "n": n}, response=SCHEMA, key=f"p{index}-{n}"
            )
            await client.answer(task.id, {"ok": True}, by=f"w{index}")
            if n % 10 == 0:
                await client.list(status="pending", limit=20)
            t.lat_ms.append((time.monotonic() - t0) * 1000)
        except InloopError as e:
            t.error(e)
        n += 1
    await client.close()
    t.out(cycles=len(t.lat_ms))


async def agents(url: str, ns: str, seconds: float, count: int) -> None:
    client = Client(url, namespace=ns)
    await client.list(limit=1)
    t = Tally()
    wake_ms: list[float] = []
    stop = time.monotonic() + RAMP + seconds
    done = 0

    async def agent(a: int) -> None:
        nonlocal done
        # Agents start over the first RAMP seconds (a burst of 10,000 creations at one instant
        # queues past the pool's 10 s acquire timeout on SQLite: see RELIABILITY.md).
        await asyncio.sleep(RAMP * a / count)
        j = 0
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                d = await await_decision(
                    "Load", payload={"a": a, "j": j}, response=SCHEMA, key=f"L{a % 2}-{a}-{j}",
                    client=client,
                )  # fmt: skip
                now = time.time()
                if d.answer != {"ok": True}:
                    raise AssertionError(f"agent {a} got {d.answer!r}")
                t.lat_ms.append((time.monotonic() - t0) * 1000)
                assert d.task.ended_at is not None
                wake_ms.append((now - d.task.ended_at.timestamp()) * 1000)
                done += 1
            except (InloopError, AssertionError) as e:
                # What an agent does with an error: back off, then ask again with the same key.
                t.error(e)
                await asyncio.sleep(1)
                continue
            j += 1

    runs = [asyncio.create_task(agent(a)) for a in range(count)]
    started = time.monotonic()
    await asyncio.wait(runs, timeout=RAMP + seconds + 1)
    took = time.monotonic() - started
    for r in runs:
        r.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    t.out(cycles=done, seconds=took, wake_ms=wake_ms)
    await client.close()


async def answer(url: str, ns: str, seconds: float, index: int) -> None:
    client = Client(url, namespace=ns)
    await client.list(limit=1)
    t = Tally()
    end = time.monotonic() + RAMP + seconds + 2
    answered = 0
    cursor = None
    while time.monotonic() < end:
        try:
            page = await client.list(
                status="pending", key_prefix=f"L{index}-", limit=200, cursor=cursor
            )
            cursor = page.next_cursor
            for task in page:
                await client.answer(task.id, {"ok": True}, by=f"answerer-{index}")
                answered += 1
            if not page:
                await asyncio.sleep(0.01)
        except InloopError as e:
            t.error(e)
    await client.close()
    t.out(answered=answered)


if __name__ == "__main__":
    kind, url, ns, secs, n = sys.argv[1:6]
    fn = {"cycle": cycle, "agents": agents, "answer": answer}[kind]
    asyncio.run(fn(url, ns, float(secs), int(n)))
