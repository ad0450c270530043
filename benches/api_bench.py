"""`inloop serve` (the REST API) end to end, with the Python SDK in remote mode.

Starts a real `inloop serve` (release build) on a fresh database, creates an API key with
`inloop apikey create --allow-answer --json`, and measures:

  latency     submit through the API -> remote agent resumed. The agent (this process) calls
              `await_human(..., client=Client(url=..., api_key=...))`; a separate answerer
              process lists pending tasks through the API, stamps the wall-clock time into its
              answer and POSTs it; the agent subtracts the stamp from the moment it resumed.
  throughput  requests/s for `POST /tasks` (create) and `POST /tasks/{id}/answer`, driven
              from one Python process by N concurrent coroutines on one remote Client.
  waiters     N concurrent remote waiters (`client.wait(id)`, long polls of at most 25 s) from
              P client processes (`--procs`, one Client each: one HTTP/2 connection each) on
              one server: the SERVER's RSS and CPU over an idle window, then 100 answered
              from another client, checking those waiters resume.

    python benches/api_bench.py latency --backend postgres --n 500
    python benches/api_bench.py throughput --backend postgres --seconds 10 --concurrency 64
    python benches/api_bench.py waiters --backend postgres --n 100000 --procs 10 --idle 10

The server binary is $INLOOP_BIN, else $CARGO_TARGET_DIR (default ~/.cache/inloop-target)
/x86_64-unknown-linux-gnu/release/inloop (`cargo build --release -p inloop-core --bin inloop`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import database, fmt, machine, percentiles
from inloop import Client, await_human

CLK_TCK = os.sysconf("SC_CLK_TCK")


def server_binary() -> str:
    if os.environ.get("INLOOP_BIN"):
        return os.environ["INLOOP_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/inloop-target"))
    return str(Path(target) / "x86_64-unknown-linux-gnu/release/inloop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def established(port: int) -> int:
    """TCP connections established to the server's port."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip())


@contextmanager
def server(db_url: str) -> Iterator[tuple[str, str, subprocess.Popen]]:
    """A running `inloop serve` on db_url: (base URL, API key secret, the process)."""
    binary = server_binary()
    env = dict(os.environ, INLOOP_DATABASE_URL=db_url)
    env.pop("INLOOP_URL", None)
    out = subprocess.run(
        [binary, "apikey", "create", "--name", "bench", "--allow-answer", "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    secret = json.loads(out)["secret"]
    port = free_port()
    proc = subprocess.Popen(
        [binary, "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("inloop serve did not become ready")
        time.sleep(0.05)
    try:
        yield url, secret, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- 1. submit -> remote agent resumed ----------------------------------------------------

ANSWERER = r"""
import asyncio, sys, time
from inloop import Client
async def main(url, key, n, poll):
    c = Client(url=url, api_key=key)
    done = 0
    while done < n:
        page = await c.list(status="pending", limit=10)
        if not page:
            await asyncio.sleep(poll)
            continue
        for t in page:
            await asyncio.sleep(0.002)   # let the agent's long poll park first
            await c.answer(t.id, {"t": time.time_ns()}, by="bench")
            done += 1
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""

SCHEMA = {"type": "object", "properties": {"t": {"type": "integer"}}, "required": ["t"]}
WARMUP = 20


async def latency(url: str, key: str, n: int, poll_ms: float) -> list[float]:
    client = Client(url=url, api_key=key)
    await client.list()
    proc = subprocess.Popen(
        [sys.executable, "-c", ANSWERER, url, key, str(n + WARMUP), str(poll_ms / 1000)]
    )
    samples: list[float] = []
    try:
        for i in range(n + WARMUP):
            answer = await await_human(
                "bench", payload={"i": i}, response=SCHEMA, key=f"k{i}", client=client
            )
            resumed = time.time_ns()
            if i >= WARMUP:
                samples.append((resumed - answer["t"]) / 1e6)
    finally:
        proc.wait(timeout=30)
    await client.close()
    return samples


# --- 2. create and answer requests/s ------------------------------------------------------


async def throughput(url: str, key: str, seconds: float, concurrency: int, server_pid: int) -> None:
    client = Client(url=url, api_key=key)
    await client.list()
    me = os.getpid()

    async def phase(name: str, op, items=None) -> list:
        done: list = []
        stop = time.perf_counter() + seconds
        it = iter(items) if items is not None else None
        counter = iter(range(10**9))

        async def worker() -> None:
            while time.perf_counter() < stop:
                if it is not None:
                    x = next(it, None)
                    if x is None:
                        return
                else:
                    x = next(counter)
                done.append(await op(x))

        s0, c0, t0 = proc_cpu_s(server_pid), proc_cpu_s(me), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        el = time.perf_counter() - t0
        s_cpu = (proc_cpu_s(server_pid) - s0) / el * 100
        c_cpu = (proc_cpu_s(me) - c0) / el * 100
        print(
            f"{name}: {len(done)} requests in {el:.1f} s = {len(done) / el:.0f} requests/s "
            f"(server CPU {s_cpu:.0f}% of one core, client {c_cpu:.0f}%)"
        )
        return done

    run = time.time_ns()
    created = await phase(
        f"create ({concurrency} concurrent)",
        lambda i: client.create(
            "tp", payload={"i": i}, response={"type": "boolean"}, key=f"tp-{run}-{i}"
        ),
    )
    await phase(
        f"answer ({concurrency} concurrent)",
        lambda t: client.answer(t.id, True, by="bench"),
        items=created,
    )
    await client.close()


# --- 3. many concurrent remote waiters ----------------------------------------------------


WAIT_CHILD = r"""
import asyncio, sys
from inloop import Client

async def main(url, key, ids):
    client = Client(url=url, api_key=key)
    async def one(i):
        t = await client.wait(i)
        print(f"resumed {t.id} {t.status.value}", flush=True)
    waits = [asyncio.create_task(one(i)) for i in ids]
    print(f"waiting {len(ids)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    for w in waits:
        w.cancel()

url, key, path, start, end = sys.argv[1:6]
ids = open(path).read().split()[int(start):int(end)]
asyncio.run(main(url, key, ids))
"""


def parked(url: str, key: str) -> int:
    """The server's `inloop_waits_parked` gauge (long polls parked until a wake)."""
    req = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("inloop_waits_parked "):
                return int(float(line.split()[1]))
    return 0


async def waiters(
    url: str, key: str, n: int, idle: float, server_pid: int, port: int, procs: int
) -> None:
    """`n` remote waiters spread over `procs` client processes (one `Client` each)."""
    client = Client(url=url, api_key=key)
    await client.list()
    rss_start = proc_rss_mb(server_pid)
    ids: list[str] = []
    sem = asyncio.Semaphore(64)

    async def make(i: int) -> None:
        async with sem:
            t = await client.create(
                "park", payload={"i": i}, response={"type": "boolean"}, key=f"w{i}"
            )
            ids.append(t.id)

    t0 = time.perf_counter()
    await asyncio.gather(*(make(i) for i in range(n)))
    print(f"created {n} tasks in {time.perf_counter() - t0:.1f} s")
    await client.close()
    rss_before = proc_rss_mb(server_pid)
    base_conns = established(port)
    ids_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"inloop-bench-ids-{os.getpid()}"
    ids_file.write_text("\n".join(ids))
    per = -(-n // procs)
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WAIT_CHILD,
                url,
                key,
                str(ids_file),
                str(k * per),
                str(min(n, (k + 1) * per)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(procs)
    ]
    resumed: dict[str, str] = {}

    def read(child: subprocess.Popen) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("resumed "):
                _, tid, status = line.split()
                resumed[tid] = status

    # One thread per child (the default executor has too few for 10 blocking reads).
    readers = [threading.Thread(target=read, args=(c,), daemon=True) for c in children]
    for r in readers:
        r.start()
    t0 = time.perf_counter()
    # Long polls renew every 25 s, so a few of them are always between two polls: 99 % of
    # the waits parked at once is "all of them open".
    while parked(url, key) < n * 0.99:
        await asyncio.sleep(0.5)
        if time.perf_counter() - t0 > 600:
            raise SystemExit(f"only {parked(url, key)} waits parked after 600 s")
    conns_time = time.perf_counter() - t0
    prev = proc_cpu_s(server_pid)
    while True:
        await asyncio.sleep(1)
        cur = proc_cpu_s(server_pid)
        if cur - prev < 0.02:
            break
        prev = cur
    settled = time.perf_counter() - t0
    rss_parked = proc_rss_mb(server_pid)
    c0, w0 = proc_cpu_s(server_pid), time.perf_counter()
    await asyncio.sleep(idle)
    cpu = (proc_cpu_s(server_pid) - c0) / (time.perf_counter() - w0) * 100
    window_end = time.perf_counter() - t0
    fds = len(os.listdir(f"/proc/{server_pid}/fd"))
    print(
        f"{n} long polls parked on the server in {conns_time:.1f} s from {procs} client "
        f"processes over {established(port) - base_conns} connections "
        f"({base_conns} before); server settled {settled:.1f} s after the first"
    )
    print(
        f"server RSS: {rss_start:.0f} MB at start, {rss_before:.0f} MB after creating, "
        f"{rss_parked:.0f} MB with {n} waiting (+{rss_parked - rss_before:.0f} MB, "
        f"{(rss_parked - rss_before) * 1024 / n:.2f} KB per waiter); {fds} open fds"
    )
    print(
        f"server CPU while idle over {idle:.0f} s: {cpu:.2f}% of one core "
        f"(window {settled:.1f}-{window_end:.1f} s after the first poll; polls renew at 25 s)"
    )
    other = Client(url=url, api_key=key)
    sample = ids[:: max(1, n // 100)][:100]
    t0 = time.perf_counter()
    await asyncio.gather(*(other.answer(i, True, by="bench") for i in sample))
    answered = time.perf_counter() - t0
    while sum(resumed.get(i) == "completed" for i in sample) < len(sample):
        await asyncio.sleep(0.01)
        if time.perf_counter() - t0 > 120:
            break
    ok = sum(resumed.get(i) == "completed" for i in sample)
    print(
        f"answered {len(sample)} from another client in {answered:.2f} s; {ok} of those "
        f"waiters had resumed {time.perf_counter() - t0:.2f} s after the first answer"
    )
    assert ok == len(sample), f"{ok} of {len(sample)} resumed"
    print(f"resumed in all: {len(resumed)} (expected {len(sample)})")
    for c in children:
        assert c.stdin is not None
        c.stdin.close()
    for c in children:
        c.wait(60)
    for r in readers:
        r.join(60)
    ids_file.unlink()
    await other.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["latency", "throughput", "waiters"])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=1, help="waiters: client processes")
    ap.add_argument(
        "--poll-ms",
        type=float,
        default=0.5,
        help="latency: how often the answerer lists pending tasks",
    )
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"server: {server_binary()}")
    with database(args.backend) as db, server(db) as (url, key, proc):
        port = int(url.rsplit(":", 1)[1])
        if args.what == "latency":
            samples = asyncio.run(latency(url, key, args.n or 500, args.poll_ms))
            print(
                f"API resume latency ({args.backend}, answer POSTed by another process, "
                f"answerer lists every {args.poll_ms:g} ms): "
                f"{fmt(percentiles(samples))}"
            )
        elif args.what == "throughput":
            print(
                f"throughput ({args.backend}, one Python client process, {args.seconds:.0f} s "
                "per phase)"
            )
            asyncio.run(throughput(url, key, args.seconds, args.concurrency, proc.pid))
        else:
            asyncio.run(waiters(url, key, args.n or 10_000, args.idle, proc.pid, port, args.procs))


if __name__ == "__main__":
    main()
