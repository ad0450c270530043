"""100,000 parked waiters in one Python process: memory, idle CPU, database connections.

Creates N tasks, parks one `await_human`-style wait on each (Client.wait, the same native
wait), measures RSS and the CPU used over an idle window, counts the database connections
this process holds (PostgreSQL: pg_stat_activity), then answers a sample from another
client and checks those waiters wake.

    python benches/parked_waiters.py --backend postgres --n 100000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import time

from _common import database, machine, rss_mb

from inloop import Client, Status


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pg_connections(url: str) -> str:
    dbname = url.rsplit("/", 1)[1].split("?")[0]
    q = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}'"
    out = subprocess.run(["psql", url, "-Atc", q], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()


async def run(url: str, backend: str, n: int, idle: float) -> None:
    ns = f"park-{time.time_ns()}"
    client = Client(url, namespace=ns)
    await client.list()
    base_rss = rss_mb()
    t0 = time.perf_counter()
    ids: list[str] = []
    sem = asyncio.Semaphore(64)

    async def make(i: int) -> None:
        async with sem:
            t = await client.create("park", payload={"i": i}, response={"type": "boolean"},
                                    key=f"p{i}")
            ids.append(t.id)

    await asyncio.gather(*(make(i) for i in range(n)))
    print(f"created {n} tasks in {time.perf_counter() - t0:.1f} s")
    rss_before = rss_mb()
    t0 = time.perf_counter()
    waiters = [asyncio.create_task(client.wait(i)) for i in ids]
    # Let every waiter do its first read and park.
    engine = await client._native()
    while engine.parked() < n:
        await asyncio.sleep(0.2)
        if time.perf_counter() - t0 > 600:
            raise SystemExit(f"only {engine.parked()} parked after 600 s")
    park_time = time.perf_counter() - t0
    await asyncio.sleep(1)
    rss_parked = rss_mb()
    c0, w0 = cpu_seconds(), time.perf_counter()
    await asyncio.sleep(idle)
    cpu = (cpu_seconds() - c0) / (time.perf_counter() - w0) * 100
    conns = pg_connections(url) if backend == "postgres" else "n/a (SQLite file)"
    print(f"parked {engine.parked()} waiters in {park_time:.1f} s")
    print(f"RSS: {base_rss:.0f} MB at start, {rss_before:.0f} MB after creating, "
          f"{rss_parked:.0f} MB with {n} parked (+{rss_parked - rss_before:.0f} MB, "
          f"{(rss_parked - rss_before) * 1024 / n:.2f} KB per waiter)")
    print(f"CPU while idle over {idle:.0f} s: {cpu:.2f}% of one core")
    print(f"database connections held by this process (PostgreSQL): {conns}")
    other = Client(url, namespace=ns)
    sample = ids[:: max(1, n // 1000)]
    t0 = time.perf_counter()
    await asyncio.gather(*(other.answer(i, True, by="bench") for i in sample))
    answered = time.perf_counter() - t0
    by_id = dict(zip(ids, waiters, strict=True))
    results = await asyncio.wait_for(asyncio.gather(*(by_id[i] for i in sample)), 120)
    assert all(r.status is Status.COMPLETED for r in results)
    print(f"answered {len(sample)} from another client in {answered:.2f} s; all of those "
          f"waiters had resumed {time.perf_counter() - t0:.2f} s after the first answer")
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await other.close()
    await client.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--idle", type=float, default=10.0)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with database(args.backend) as url:
        asyncio.run(run(url, args.backend, args.n, args.idle))


if __name__ == "__main__":
    main()
