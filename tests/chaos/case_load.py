"""Two cases built from worker.py processes.

- SQLite contention: 8 processes creating and answering on one SQLite file; no
  `database is locked` (or any other error) may reach a caller; p99 of one create+answer.
- Load: many concurrent agents in one process (started over the first seconds: 40 s for
  10,000), two answering processes, for a while: zero errors; cycles per second, p99 of a
  whole cycle and of answer-to-wake-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid

from common import HERE, Figures, check, p99, python_exe


async def spawn(*args: object, ramp: float = 0) -> dict:
    proc = await asyncio.create_subprocess_exec(
        python_exe(), str(HERE / "worker.py"), *map(str, args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "INLOOP_CHAOS_RAMP": str(ramp)},
    )  # fmt: skip
    out, err = await proc.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    check(proc.returncode == 0 and bool(lines), f"worker {args[0]} failed: {err.decode()[-2000:]}")
    result: dict = json.loads(lines[-1])
    return result


async def contention(db_url: str, seconds: float, procs: int = 8) -> Figures:
    started = time.monotonic()
    ns = f"lock-{uuid.uuid4().hex[:8]}"
    results = await asyncio.gather(*(spawn("cycle", db_url, ns, seconds, i) for i in range(procs)))
    errors = sum(r["errors"] for r in results)
    locked = sum(r["locked"] for r in results)
    lat = [x for r in results for x in r["lat_ms"]]
    msgs = [m for r in results for m in r["messages"]][:3]
    fig = Figures(
        case=f"SQLite, {procs} processes creating and answering for {seconds:g} s",
        backend="sqlite",
        tried=len(lat) + errors,
        errors=errors,
        p99_ms=p99(lat),
        extra=f"{locked} `database is locked` reached a caller; "
        f"{len(lat) / seconds:.0f} create+answer/s; p99 = one create+answer"
        + (f"; first errors: {msgs}" if msgs else ""),
        seconds=time.monotonic() - started,
    )
    fig.ok = errors == 0 and locked == 0 and len(lat) > 0
    return fig


async def load(
    backend: str, db_url: str, seconds: float, agents: int, ramp: float | None = None
) -> Figures:
    started = time.monotonic()
    ns = f"load-{uuid.uuid4().hex[:8]}"
    if ramp is None:
        # Agents start over this many seconds (worker.py): 40 s for 10,000 (250 a second).
        ramp = min(40.0, agents / 250)
    res = await asyncio.gather(
        spawn("agents", db_url, ns, seconds, agents, ramp=ramp),
        spawn("answer", db_url, ns, seconds, 0, ramp=ramp),
        spawn("answer", db_url, ns, seconds, 1, ramp=ramp),
    )
    agent_r, a0, a1 = res
    errors = sum(r["errors"] for r in res)
    msgs = [m for r in res for m in r["messages"]][:3]
    cycles = agent_r["cycles"]
    rate = cycles / agent_r["seconds"]
    fig = Figures(
        case=f"Load: {agents} concurrent agents (started over {ramp:g} s), 2 answering "
        f"processes, {seconds:g} s more",
        backend=backend,
        tried=cycles,
        errors=errors,
        p99_ms=p99(agent_r["wake_ms"]),
        extra=f"{rate:.0f} cycles/s, cycle p99 {p99(agent_r['lat_ms']):.0f} ms, "
        f"{a0['answered'] + a1['answered']} answers; p99 = answer to agent resumed"
        + (f"; first errors: {msgs}" if msgs else ""),
        seconds=time.monotonic() - started,
    )
    fig.ok = errors == 0 and cycles > 0
    return fig
