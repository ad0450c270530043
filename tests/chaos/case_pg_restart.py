"""PostgreSQL restarted the way `pg_ctl restart -m immediate` does it (an immediate stop, then
a start; held down 3 s in between, longer than the 2 s bound of `/readyz`) under parked
waiters, direct on the database or remote through `inloop serve`.

The waiters (one process, one client) park on their tasks; a tenth is answered before the
restart. Then another process starts answering the rest at the moment the restart begins,
retrying while the database is away, so its answers land the instant PostgreSQL accepts
connections again: while the waiters' LISTEN connection is still down or reconnecting. Every
waiter must resume with its answer (no missed wake-up); in remote mode `/readyz` must report
the outage (503 while the database is down, each within 3 s) and be 200 again afterwards.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

from common import HERE, Figures, Postgres, Server, check, create_key, http_status, p99, python_exe
from inloop import Client, Status


async def run(pg: Postgres, work: Path, mode: str, waiters: int) -> Figures:
    started = time.monotonic()
    db_url = pg.createdb()
    ns = f"pg-{uuid.uuid4().hex[:8]}"
    admin = Client(db_url, namespace=ns)
    server = None
    if mode == "remote":
        server = Server(db_url, work, f"pg-{mode}")
        server.start()
        waiter_client = Client(url=server.url, api_key=create_key(db_url, ns), namespace=ns)
    else:
        waiter_client = Client(db_url, namespace=ns)
    schema = {"type": "object", "properties": {"approved": {"type": "boolean"}}}
    ids = []
    for i in range(waiters):
        t = await admin.create(f"Approve {i}?", payload={"i": i}, response=schema, key=f"w{i}")
        ids.append(t.id)
    resumed: dict[str, tuple[float, object]] = {}

    async def wait_one(task_id: str) -> None:
        task = await waiter_client.wait(task_id, timeout=600)
        resumed[task_id] = (time.time(), task)

    waiting = [asyncio.create_task(wait_one(i)) for i in ids]
    early = ids[: max(1, waiters // 10)]
    late = ids[len(early) :]
    ids_file = work / f"late-{ns}.txt"
    ids_file.write_text("\n".join(late) + "\n")
    answerer = subprocess.Popen(
        [python_exe(), str(HERE / "answerer.py"), db_url, ns, str(ids_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert answerer.stdin and answerer.stdout
    check(json.loads(answerer.stdout.readline())["event"] == "ready", "answerer did not start")
    await asyncio.sleep(1.0 + waiters / 1000)  # let every waiter park (and its long poll land)
    check(not any(t.done() for t in waiting), "a waiter returned before any answer")
    for i in early:
        await admin.answer(i, {"approved": True, "note": i}, by="early")

    statuses: list[int | None] = []
    outage_ms: list[float] = []  # how long each non-200 /readyz took to answer
    polling = threading.Event()

    def poll_readyz() -> None:
        assert server is not None
        while not polling.is_set():
            t0 = time.monotonic()
            status = http_status(f"{server.url}/readyz", 5)
            statuses.append(status)
            if status != 200:
                outage_ms.append((time.monotonic() - t0) * 1000)
            time.sleep(0.01)

    poller = None
    if server:
        poller = threading.Thread(target=poll_readyz, daemon=True)
        poller.start()
        await asyncio.sleep(0.1)
    answerer.stdin.write("go\n")
    answerer.stdin.flush()
    restart_s = await asyncio.to_thread(pg.restart_immediate, 3.0)
    out = json.loads(await asyncio.to_thread(answerer.stdout.readline))
    answerer.wait(timeout=30)
    check(not out["errors"], f"answerer errors: {out['errors'][:3]}")
    check(out["answered"] == len(late), f"answered {out['answered']} of {len(late)}")
    done, pending = await asyncio.wait(waiting, timeout=60)
    ready_after = None
    if server and poller:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and statuses[-1] != 200:
            await asyncio.sleep(0.1)
        polling.set()
        poller.join()
        ready_after = statuses[-1]
    for t in pending:
        t.cancel()
    errors = [t.exception() for t in done if t.exception() is not None]
    lost = len(pending)
    wrong = 0
    lat: list[float] = []
    for task_id, (at, task) in resumed.items():
        if task.status is not Status.COMPLETED or task.response != {  # type: ignore[attr-defined]
            "approved": True,
            "note": task_id,
        }:
            wrong += 1
        else:
            lat.append((at - task.ended_at.timestamp()) * 1000)  # type: ignore[attr-defined]
    await waiter_client.close()
    await admin.close()
    if server:
        server.stop()
    down = sum(1 for s in statuses if s == 503)
    silent = sum(1 for s in statuses if s is None)
    extra = (
        f"{len(late)} answered as PostgreSQL came back (down {restart_s:.1f} s, "
        f"{out['retries']} answer retries)"
    )
    if server:
        extra += (
            f"; /readyz 503 in {down} of {len(statuses)} polls ({silent} no answer in 5 s; "
            f"the slowest 503 took {max(outage_ms, default=0):.0f} ms), then {ready_after}"
        )
    fig = Figures(
        case=f"PostgreSQL stop -m immediate + start, parked waiters ({mode})",
        backend="postgres",
        tried=waiters,
        lost=lost + wrong,
        errors=len(errors),
        p99_ms=p99(lat),
        extra=extra + "; p99 = answer to waiter resumed",
        seconds=time.monotonic() - started,
    )
    fig.ok = lost == 0 and wrong == 0 and not errors
    if server:
        # /readyz answers within its 2 s bound (READY_TIMEOUT), never the pool's 10 s.
        slowest = max(outage_ms, default=0)
        fig.ok = fig.ok and down > 0 and silent == 0 and slowest < 3000 and ready_after == 200
    if not fig.ok:
        print(f"pg-restart {mode}: lost {lost}, wrong {wrong}, errors {errors[:3]}, readyz {down}")
    return fig
