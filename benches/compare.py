"""inloop and awaithumans 0.1.12, measured side by side on this machine in one run.

    python3 benches/compare.py            # full run (about 25 minutes on 2 cores)
    python3 benches/compare.py --quick    # a short run (fewer samples, shorter phases)

Needs what the README's test command leaves behind (cargo, the repo's .venv with maturin,
PostgreSQL's binaries for scripts/pg.sh). It prepares, under ~/.cache/inloop-bench:
  awaithumans/  a virtualenv with `awaithumans[server]==0.1.12` from PyPI;
  inloop/       a virtualenv with this checkout's release wheel (`maturin build --release`)
                and psycopg (for the floor row);
and builds the release `inloop` binary for `inloop serve`.

Systems, each on SQLite (a fresh file) and on PostgreSQL (one durable cluster started by
scripts/pg.sh, a fresh database per system):
  inloop direct  the Python package on the database (`await_human(..., client=Client(url))`);
  inloop serve   `inloop serve` and the Python package in remote mode (`Client(url=, api_key=)`);
  awaithumans    `awaithumans serve` (its production entrypoint, uvicorn) and its SDK's
                 `await_human` (creates the task, then long-polls `GET /api/tasks/{id}/poll`).

Scenarios (the same driver code for every system; only the client calls differ):
  latency    submit -> agent resumed: one agent awaits one task at a time; a second process
             lists pending tasks, stamps the wall-clock time into its answer and submits it;
             the agent subtracts the stamp from the moment its await returned.
  cycles/s   N agent coroutines in one process loop on await_human with fresh keys; the
             answering process answers every new pending task (N = 30 and 100).
  capacity   N agents each await one task at once while the answerer answers them all; N
             steps 10, 30, 100, ... 10,000; a step passes when every agent got its answer with
             no error within the step's time cap. Reports the highest N that passed.
  parked     1,000 awaits parked at once: RSS added and CPU used while idle, of the process
             holding them (direct) or of the server and of the client (remote).
  overshoot  concurrent awaits that time out: the time from each call's start + its timeout
             to the moment the timeout error was raised. awaithumans refuses timeouts under
             60 s, so its awaits use 60 s; inloop's use 1-3 s (the overshoot does not depend on
             the length).
  floor      PostgreSQL alone (psycopg): one connection commits `UPDATE` + `NOTIFY`, another
             connection LISTENs; the time from the start of the UPDATE to the notification's
             arrival. What any system built on PostgreSQL can at best do for the latency.

Not part of the test command: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("INLOOP_BENCH_CACHE", Path.home() / ".cache/inloop-bench"))
AH_VERSION = "0.1.12"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# =========================================================================================
# The worker: runs inside a system's virtualenv (inloop's or awaithumans'), one scenario per
# invocation, and prints one JSON line of results.
# =========================================================================================


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))] if s else float("nan")


def summary(samples: list[float]) -> dict:
    return {
        "n": len(samples),
        "p50": pct(samples, 50),
        "p95": pct(samples, 95),
        "p99": pct(samples, 99),
        "max": max(samples) if samples else float("nan"),
    }


class Inloop:
    """inloop's Python package, direct (a database URL) or remote (`inloop serve`)."""

    def __init__(self, target: dict) -> None:
        from inloop import Client

        self.remote = "api_key" in target
        if self.remote:
            self.client = Client(url=target["url"], api_key=target["api_key"])
        else:
            self.client = Client(target["url"], namespace=target.get("ns", "default"))
        self.since = None

    async def ready(self) -> None:
        await self.client.list(limit=1)

    async def ask(self, key: str, payload: dict, timeout: float | None = None) -> dict:
        from inloop import await_human

        return await await_human(
            "bench",
            payload=payload,
            response={
                "type": "object",
                "properties": {"t": {"type": "integer"}},
                "required": ["t"],
            },
            key=key,
            timeout=timeout,
            client=self.client,
        )

    def timed_out(self, e: BaseException) -> bool:
        from inloop import TimedOut

        return isinstance(e, TimedOut)

    async def pending(self) -> list[str]:
        from datetime import timedelta

        page = await self.client.list(status="pending", limit=500, created_after=self.since)
        if page:
            self.since = max(t.created_at for t in page) - timedelta(milliseconds=200)
        return [t.id for t in page]

    async def answer(self, task_id: str) -> None:
        from inloop import Conflict

        try:
            await self.client.answer(task_id, {"t": time.time_ns()}, by="bench")
        except Conflict:
            pass

    async def create_many(self, n: int, run: str) -> list[str]:
        import asyncio

        sem = asyncio.Semaphore(50)

        async def one(i: int) -> str:
            async with sem:
                t = await self.client.create(
                    "park", payload={"i": i}, response={"type": "boolean"}, key=f"{run}-{i}"
                )
                return t.id

        return list(await asyncio.gather(*(one(i) for i in range(n))))

    def park(self, task_id: str):
        return self.client.wait(task_id)

    async def close(self) -> None:
        await self.client.close()


class AwaitHumans:
    """awaithumans' SDK (`await_human`) and its REST API (list and complete, as a reviewer's
    dashboard or an integration would)."""

    def __init__(self, target: dict) -> None:
        import awaithumans.client as ahc
        import httpx
        from pydantic import BaseModel

        # The SDK prints a three-line banner to stderr for every task; not what is measured.
        ahc._print_waiting_banner = lambda **_: None
        self.url = target["url"]
        self.token = target["token"]
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )

        class Payload(BaseModel):
            i: int = 0
            a: int = 0

        class Reply(BaseModel):
            t: int

        self.Payload, self.Reply = Payload, Reply

    async def ready(self) -> None:
        r = await self.http.get("/api/tasks", params={"limit": 1})
        r.raise_for_status()

    async def ask(self, key: str, payload: dict, timeout: float | None = None) -> dict:
        from awaithumans import await_human

        reply = await await_human(
            task="bench",
            payload_schema=self.Payload,
            payload=self.Payload(**payload),
            response_schema=self.Reply,
            timeout_seconds=int(timeout or 3600),
            idempotency_key=key,
            server_url=self.url,
            api_key=self.token,
        )
        return reply.model_dump()

    def timed_out(self, e: BaseException) -> bool:
        from awaithumans.errors import TaskTimeoutError

        return isinstance(e, TaskTimeoutError)

    async def pending(self) -> list[str]:
        r = await self.http.get("/api/tasks", params={"status": "created", "limit": 200})
        r.raise_for_status()
        return [t["id"] for t in r.json()]

    async def answer(self, task_id: str) -> None:
        r = await self.http.post(
            f"/api/tasks/{task_id}/complete", json={"response": {"t": time.time_ns()}}
        )
        if r.status_code not in (200, 409):
            raise RuntimeError(f"complete {task_id}: HTTP {r.status_code} {r.text[:200]}")

    async def close(self) -> None:
        await self.http.aclose()


def driver(target: dict):
    return AwaitHumans(target) if target["system"] == "awaithumans" else Inloop(target)


ANSWER_CONCURRENCY = 16


async def w_answerer(target: dict, seconds: float, delay: float, jitter: float) -> dict:
    """Answers every pending task it sees (up to ANSWER_CONCURRENCY at once) until `seconds`
    have passed, each after `delay` plus a random part of `jitter` seconds."""
    import asyncio
    import random

    d = driver(target)
    await d.ready()
    seen: set[str] = set()
    errors = 0
    inflight: set = set()
    sem = asyncio.Semaphore(ANSWER_CONCURRENCY)

    async def answer(i: str) -> None:
        nonlocal errors
        if delay or jitter:
            await asyncio.sleep(delay + random.random() * jitter)
        async with sem:
            try:
                await d.answer(i)
            except Exception:
                errors += 1

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            ids = await d.pending()
        except Exception:
            errors += 1
            await asyncio.sleep(0.05)
            continue
        fresh = [i for i in ids if i not in seen]
        for i in fresh:
            seen.add(i)
            t = asyncio.ensure_future(answer(i))
            inflight.add(t)
            t.add_done_callback(inflight.discard)
        await asyncio.sleep(0.0005 if fresh else 0.001)
    await d.close()
    return {"answered": len(seen), "errors": errors}


def spawn_answerer(
    target: dict, seconds: float, delay: float = 0.0, jitter: float = 0.0
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--worker",
            "answerer",
            json.dumps(target),
            str(seconds),
            str(delay),
            str(jitter),
        ],
        stdout=subprocess.DEVNULL,
    )


async def w_latency(target: dict, n: int) -> dict:
    d = driver(target)
    await d.ready()
    warm = max(2, n // 10)
    run = secrets.token_hex(4)
    # The answerer waits before answering, so that the agent has parked its wait: 2 ms for
    # inloop (woken by a push, the moment does not matter); for awaithumans, whose waits look
    # once a second, 0.1 s plus a random part of a second, so that answers land at every
    # phase of its poll, as a human's would.
    if target["system"] == "awaithumans":
        ans = spawn_answerer(target, 3600, 0.1, 1.0)
    else:
        ans = spawn_answerer(target, 3600, 0.002)
    samples: list[float] = []
    try:
        for i in range(n + warm):
            reply = await d.ask(f"lat-{run}-{i}", {"i": i})
            resumed = time.time_ns()
            if i >= warm:
                samples.append((resumed - reply["t"]) / 1e6)
    finally:
        ans.kill()
        ans.wait()
        await d.close()
    return summary(samples)


async def w_cycles(target: dict, agents: int, seconds: float) -> dict:
    import asyncio

    d = driver(target)
    await d.ready()
    run = secrets.token_hex(4)
    ans = spawn_answerer(target, seconds + 120)
    count = 0
    errors: list[str] = []
    stop = time.monotonic() + seconds

    async def agent(a: int) -> None:
        nonlocal count
        i = 0
        while time.monotonic() < stop:
            try:
                await d.ask(f"cy-{run}-{a}-{i}", {"a": a, "i": i})
                count += 1
            except Exception as e:
                errors.append(f"{type(e).__name__}: {str(e)[:160]}")
            i += 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(agent(a) for a in range(agents)))
    finally:
        elapsed = time.perf_counter() - t0
        ans.kill()
        ans.wait()
        await d.close()
    return {
        "cycles": count,
        "seconds": elapsed,
        "per_s": count / elapsed,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


async def w_capacity_step(target: dict, agents: int, cap: float) -> dict:
    import asyncio

    d = driver(target)
    await d.ready()
    run = secrets.token_hex(4)
    ans = spawn_answerer(target, cap + 30)
    errors: list[str] = []

    async def agent(a: int) -> None:
        try:
            await d.ask(f"cap-{run}-{a}", {"a": a})
        except Exception as e:
            errors.append(f"{type(e).__name__}: {str(e)[:120]}")

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(agent(a)) for a in range(agents)]
    _done, pending = await asyncio.wait(tasks, timeout=cap)
    elapsed = time.perf_counter() - t0
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    ans.kill()
    ans.wait()
    await d.close()
    return {
        "agents": agents,
        "ok": agents - len(errors) - len(pending),
        "errors": len(errors),
        "unfinished": len(pending),
        "seconds": elapsed,
        "first_error": errors[0] if errors else None,
    }


async def w_parked(target: dict, n: int, idle: float, server_pid: int) -> dict:
    """n awaits parked at once; RSS added and idle CPU of this process and of the server."""
    import asyncio

    d = driver(target)
    await d.ready()
    me = os.getpid()
    pids = {"client": me} if server_pid == 0 else {"client": me, "server": server_pid}
    run = secrets.token_hex(4)
    if isinstance(d, Inloop):
        ids = await d.create_many(n, run)
        before = {k: proc_rss_mb(p) for k, p in pids.items()}
        waits = [asyncio.ensure_future(d.park(i)) for i in ids]
    else:
        before = {k: proc_rss_mb(p) for k, p in pids.items()}
        waits = [asyncio.ensure_future(d.ask(f"park-{run}-{i}", {"i": i})) for i in range(n)]
    # Settle: every wait created and parked (no CPU used for a second by anyone).
    prev = {k: proc_cpu_s(p) for k, p in pids.items()}
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        await asyncio.sleep(1)
        cur = {k: proc_cpu_s(p) for k, p in pids.items()}
        busy = max(cur[k] - prev[k] for k in pids)
        prev = cur
        if busy < 0.05 or (time.monotonic() - t0 > 10 and busy < 0.5):
            break
    after = {k: proc_rss_mb(p) for k, p in pids.items()}
    c0 = {k: proc_cpu_s(p) for k, p in pids.items()}
    w0 = time.monotonic()
    await asyncio.sleep(idle)
    el = time.monotonic() - w0
    cpu = {k: (proc_cpu_s(p) - c0[k]) / el * 100 for k, p in pids.items()}
    failed = sum(1 for w in waits if w.done() and w.exception() is not None)
    for w in waits:
        w.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    await d.close()
    return {
        "n": n,
        "rss_added_mb": {k: after[k] - before[k] for k in pids},
        "rss_mb": after,
        "idle_cpu_pct": cpu,
        "idle_s": el,
        "failed": failed,
    }


async def w_overshoot(target: dict, n: int, lo: float, hi: float) -> dict:
    import asyncio
    import random

    d = driver(target)
    await d.ready()
    run = secrets.token_hex(4)
    rng = random.Random(7)
    over: list[float] = []
    other = 0

    async def one(i: int) -> None:
        nonlocal other
        timeout = rng.uniform(lo, hi) if hi > lo else lo
        t0 = time.time()
        try:
            await d.ask(f"to-{run}-{i}", {"i": i}, timeout=timeout)
            other += 1
        except Exception as e:
            if d.timed_out(e):
                over.append((time.time() - (t0 + timeout)) * 1000)
            else:
                other += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    await d.close()
    return {**summary(over), "not_timed_out": other}


async def w_floor(url: str, n: int) -> dict:
    import asyncio

    import psycopg

    listen = await psycopg.AsyncConnection.connect(url, autocommit=True)
    write = await psycopg.AsyncConnection.connect(url)
    await listen.execute("LISTEN inloop_floor")
    async with write.transaction():
        await write.execute(
            "CREATE TABLE IF NOT EXISTS inloop_floor (id int PRIMARY KEY, v bigint NOT NULL)"
        )
        await write.execute("INSERT INTO inloop_floor VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
    gen = listen.notifies()
    samples: list[float] = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        async with write.transaction():
            await write.execute("UPDATE inloop_floor SET v = v + 1 WHERE id = 1")
            await write.execute("SELECT pg_notify('inloop_floor', %s)", (str(i),))
        async for _ in gen:
            break
        if i >= 20:
            samples.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.001)
    await gen.aclose()
    await listen.close()
    await write.close()
    return summary(samples)


def worker(argv: list[str]) -> None:
    import asyncio
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    what, args = argv[0], argv[1:]
    if what == "answerer":
        out = asyncio.run(
            w_answerer(json.loads(args[0]), float(args[1]), float(args[2]), float(args[3]))
        )
    elif what == "latency":
        out = asyncio.run(w_latency(json.loads(args[0]), int(args[1])))
    elif what == "cycles":
        out = asyncio.run(w_cycles(json.loads(args[0]), int(args[1]), float(args[2])))
    elif what == "capacity":
        out = asyncio.run(w_capacity_step(json.loads(args[0]), int(args[1]), float(args[2])))
    elif what == "parked":
        out = asyncio.run(w_parked(json.loads(args[0]), int(args[1]), float(args[2]), int(args[3])))
    elif what == "overshoot":
        out = asyncio.run(
            w_overshoot(json.loads(args[0]), int(args[1]), float(args[2]), float(args[3]))
        )
    elif what == "floor":
        out = asyncio.run(w_floor(args[0], int(args[1])))
    elif what == "createdb":
        import psycopg

        with psycopg.connect(args[0], autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{args[1]}"')
            c.execute(f'CREATE DATABASE "{args[1]}"')
        out = {}
    else:
        raise SystemExit(f"unknown worker {what!r}")
    print(json.dumps(out), flush=True)


# =========================================================================================
# The orchestrator: prepares the virtualenvs and builds, starts databases and servers, runs
# each scenario in the right virtualenv and prints the table.
# =========================================================================================


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/inloop-target"))


def host_triple() -> str:
    out = run(["rustc", "-vV"], capture_output=True, text=True).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("host:"))


def prepare(skip_build: bool) -> tuple[Path, Path, Path]:
    """(awaithumans' python, inloop's python, the inloop binary)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    ah = CACHE / "awaithumans"
    if not (ah / f".installed-{AH_VERSION}").exists():
        say(f"creating {ah} with awaithumans[server]=={AH_VERSION}")
        run([sys.executable, "-m", "venv", str(ah)])
        run(
            [
                str(ah / "bin/pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                f"awaithumans[server]=={AH_VERSION}",
                # Its PostgreSQL dialect (SQLAlchemy's `postgresql+psycopg`) imports psycopg 3,
                # which its [server] extra does not install.
                "psycopg[binary]==3.3.9",
            ]
        )
        (ah / f".installed-{AH_VERSION}").touch()
    il = CACHE / "inloop"
    if not (il / "bin/python").exists():
        say(f"creating {il}")
        run([sys.executable, "-m", "venv", str(il)])
        run(
            [
                str(il / "bin/pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                "psycopg[binary]==3.3.9",
                # The package's one dependency (the wheel goes in with --no-deps below).
                "pydantic==2.14.4",
            ]
        )
    env = dict(os.environ, CARGO_TARGET_DIR=str(target_dir()))
    triple = host_triple()
    env.setdefault("CARGO_BUILD_TARGET", triple)
    binary = target_dir() / triple / "release/inloop"
    if not skip_build:
        say("building the release inloop binary and Python wheel (incremental)")
        run(
            ["cargo", "build", "--release", "--quiet", "-p", "inloop-core", "--bin", "inloop"],
            cwd=ROOT,
            env=env,
        )
        wheels = Path(tempfile.mkdtemp(prefix="inloop-wheel-"))
        maturin = ROOT / ".venv/bin/maturin"
        run(
            [
                str(maturin if maturin.exists() else "maturin"),
                "build",
                "--release",
                "--quiet",
                "-o",
                str(wheels),
            ],
            cwd=ROOT / "python",
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wheel = next(wheels.glob("*.whl"))
        run(
            [
                str(il / "bin/pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                "--force-reinstall",
                "--no-deps",
                str(wheel),
            ]
        )
    return ah / "bin/python", il / "bin/python", binary


def work_in(python: Path, *args, timeout: float = 900) -> dict:
    out = subprocess.run(
        [str(python), __file__, "--worker", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not become ready ({url})")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def postgres() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="inloop-compare-pg-")
    env = dict(os.environ, PG_DURABLE="1")
    url = run(
        ["bash", str(ROOT / "scripts/pg.sh"), "start", d], capture_output=True, text=True, env=env
    ).stdout.strip()
    try:
        yield url
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/pg.sh"), "stop", d], capture_output=True)


def with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def system(name: str, backend: str, db: str, binary: Path, ah_python: Path) -> Iterator[dict]:
    """A target (what the worker connects to) with `server_pid` (0 for direct)."""
    if name == "inloop direct":
        yield {"system": "inloop", "url": db, "server_pid": 0}
        return
    port = free_port()
    if name == "inloop serve":
        env = dict(os.environ, INLOOP_DATABASE_URL=db, INLOOP_LOG="warn")
        env.pop("INLOOP_URL", None)
        key = json.loads(
            run(
                [str(binary), "apikey", "create", "--name", "bench", "--allow-answer", "--json"],
                capture_output=True,
                text=True,
                env=env,
            ).stdout
        )["secret"]
        proc = subprocess.Popen(
            [str(binary), "serve", "--bind", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, "inloop serve")
        target = {"system": "inloop", "url": f"http://127.0.0.1:{port}", "api_key": key}
    else:
        token = secrets.token_urlsafe(32)
        env = dict(
            os.environ,
            AWAITHUMANS_PAYLOAD_KEY=secrets.token_urlsafe(32),
            AWAITHUMANS_ADMIN_API_TOKEN=token,
            AWAITHUMANS_LOG_LEVEL="WARNING",
            AWAITHUMANS_PUBLIC_URL=f"http://127.0.0.1:{port}",
            AWAITHUMANS_ALLOW_EPHEMERAL_DB="true",
        )
        if backend == "sqlite":
            env["AWAITHUMANS_DB_PATH"] = db.removeprefix("sqlite://")
        else:
            env["AWAITHUMANS_DATABASE_URL"] = db.replace("postgres://", "postgresql://", 1)
        cwd = tempfile.mkdtemp(prefix="awaithumans-")
        proc = subprocess.Popen(
            [
                str(ah_python.parent / "awaithumans"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=open(f"{cwd}/server.log", "w"),
        )
        wait_ready(f"http://127.0.0.1:{port}/api/health", proc, f"awaithumans serve ({cwd})")
        target = {"system": "awaithumans", "url": f"http://127.0.0.1:{port}", "token": token}
    try:
        yield {**target, "server_pid": proc.pid}
    finally:
        stop(proc)


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def settle(pid: int) -> None:
    """Waits (at most 120 s) until the server uses under 5 % of a core over a second: the
    previous scenario's backlog must not be charged to the next one."""
    if not pid:
        return
    end = time.monotonic() + 120
    prev = proc_cpu_s(pid)
    while time.monotonic() < end:
        time.sleep(1)
        cur = proc_cpu_s(pid)
        if cur - prev < 0.05:
            return
        prev = cur
    say(f"the server (pid {pid}) is still busy after 120 s")


def measure(name: str, backend: str, fresh, python: Path, q: bool) -> dict:
    """Every scenario on a fresh database and server (`fresh()`): no scenario inherits the
    unanswered tasks or the backlog of the one before."""
    ah = name == "awaithumans"
    res: dict = {"load_start": load()}

    def work(what: str, *args, **kw) -> dict:
        with fresh() as target:
            t = json.dumps({k: v for k, v in target.items() if k != "server_pid"})
            args = tuple(target["server_pid"] if a == "SERVER_PID" else a for a in args)
            settle(target["server_pid"])
            return work_in(python, what, t, *args, **kw)

    say(f"{name} / {backend}: latency")
    res["latency"] = work("latency", (8 if q else 30) if ah else (50 if q else 300))
    for agents in (30, 100):
        say(f"{name} / {backend}: cycles/s with {agents} agents")
        res[f"cycles{agents}"] = work("cycles", agents, 5 if q else 15)
    steps = [10, 100, 1000] if q else [10, 30, 100, 300, 1000, 3000, 10000]
    cap = 30 if q else 60
    res["capacity"] = []
    for n in steps:
        say(f"{name} / {backend}: capacity step {n} agents (cap {cap} s)")
        try:
            step = work("capacity", n, cap, timeout=cap + 120)
        except Exception as e:  # a crashed client counts as a failed step
            step = {
                "agents": n,
                "ok": 0,
                "errors": n,
                "unfinished": 0,
                "first_error": str(e)[-300:],
            }
        res["capacity"].append(step)
        if step["ok"] != n:
            break
    say(f"{name} / {backend}: 1,000 parked awaits")
    res["parked"] = work("parked", 1000, 5 if q else 10, "SERVER_PID")
    say(f"{name} / {backend}: timeout overshoot")
    if ah:
        res["overshoot"] = work("overshoot", 5 if q else 20, 60, 60)
    else:
        res["overshoot"] = work("overshoot", 20 if q else 100, 1, 3)
    res["load_end"] = load()
    return res


def cell_ms(s: dict) -> str:
    return f"{s['p50']:.2f} / {s['p95']:.2f} / {s['p99']:.2f}"


def capacity_of(steps: list[dict]) -> tuple[int, str]:
    best = 0
    note = ""
    for s in steps:
        if s["ok"] == s["agents"]:
            best = s["agents"]
        else:
            note = (
                f"{s['agents']}: {s['ok']} ok, {s['errors']} errors, {s['unfinished']} unfinished"
            )
            if s.get("first_error"):
                note += f" ({s['first_error']})"
    return best, note


def ratio(ah: float, il: float, higher_better: bool) -> str:
    if not il or not ah or il != il or ah != ah:
        return "-"
    r = il / ah if higher_better else ah / il
    return f"{r:,.0f}x" if r >= 10 else f"{r:.1f}x"


def report(results: dict, floor: dict | None, args: argparse.Namespace) -> None:
    systems = ["inloop direct", "inloop serve", "awaithumans"]
    for backend in ("sqlite", "postgres"):
        cols = [s for s in systems if (s, backend) in results]
        if not cols:
            continue
        r = {s: results[(s, backend)] for s in cols}
        print(f"\n### {backend}\n")
        head = ["scenario", *cols]
        if "awaithumans" in cols:
            head += [f"inloop {s.split()[1]} vs awaithumans" for s in cols if s != "awaithumans"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))

        def row(label: str, fmt, num, higher_better: bool, r=r, cols=cols) -> None:
            cells = [fmt(r[s]) for s in cols]
            if "awaithumans" in cols:
                cells += [
                    ratio(num(r["awaithumans"]), num(r[s]), higher_better)
                    for s in cols
                    if s != "awaithumans"
                ]
            print(f"| {label} | " + " | ".join(cells) + " |")

        row(
            "submit -> agent resumed, p50 / p95 / p99 (ms)",
            lambda x: cell_ms(x["latency"]),
            lambda x: x["latency"]["p50"],
            False,
        )
        for a in (30, 100):
            row(
                f"full cycles/s, {a} concurrent agents",
                lambda x, a=a: (
                    f"{x[f'cycles{a}']['per_s']:,.0f}"
                    + (
                        f" ({x[f'cycles{a}']['errors']} errors)"
                        if x[f"cycles{a}"]["errors"]
                        else ""
                    )
                ),
                lambda x, a=a: x[f"cycles{a}"]["per_s"],
                True,
            )
        row(
            "highest concurrency with zero errors",
            lambda x: f"{capacity_of(x['capacity'])[0]:,}",
            lambda x: capacity_of(x["capacity"])[0],
            True,
        )

        def parked(x: dict) -> str:
            p = x["parked"]
            parts = [
                f"{k} +{p['rss_added_mb'][k]:.0f} MB, {p['idle_cpu_pct'][k]:.2f}%"
                for k in p["rss_added_mb"]
            ]
            return "; ".join(parts)

        row(
            "1,000 parked awaits: RSS added, idle CPU (% of a core)",
            parked,
            lambda x: sum(x["parked"]["idle_cpu_pct"].values()),
            False,
        )
        row(
            "1,000 parked awaits: RSS added, all processes (MB)",
            lambda x: f"{sum(x['parked']['rss_added_mb'].values()):.0f}",
            lambda x: sum(x["parked"]["rss_added_mb"].values()),
            False,
        )
        row(
            "timeout overshoot, p50 / p99 (ms)",
            lambda x: f"{x['overshoot']['p50']:.0f} / {x['overshoot']['p99']:.0f}",
            lambda x: x["overshoot"]["p50"],
            False,
        )
        notes = []
        for s in cols:
            _best, note = capacity_of(r[s]["capacity"])
            if note:
                notes.append(f"- {s}: capacity stopped at {note}")
            for n in (30, 100):
                c = r[s][f"cycles{n}"]
                if c["errors"]:
                    notes.append(
                        f"- {s}: cycles with {n} agents: {c['errors']} errors, the first: "
                        f"{c['first_error']}"
                    )
            notes.append(f"- {s}: {r[s]['load_start']} at start, {r[s]['load_end']} at end")
        print("\n" + "\n".join(notes))
    if floor:
        print(
            f"\nfloor (PostgreSQL UPDATE + NOTIFY committed -> LISTENing connection woken, "
            f"psycopg, n={floor['n']}): p50 / p95 / p99 = {cell_ms(floor)} ms"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument(
        "--systems", default="inloop direct,inloop serve,awaithumans", help="comma-separated subset"
    )
    ap.add_argument(
        "--skip-build",
        action="store_true",
        help="use the release binary and wheel already installed",
    )
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    ah_py, il_py, binary = prepare(args.skip_build)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    print(f"# benches/compare.py{' --quick' if args.quick else ''}: {started}")
    print(f"machine: {os.cpu_count()} cores, {cpu}; {load()} at start")
    print(
        f"awaithumans {AH_VERSION} (its server: `awaithumans serve`, uvicorn); "
        f"inloop at {ROOT} (release)"
    )
    systems = [s.strip() for s in args.systems.split(",")]
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict = {}
    floor = None
    with postgres() as pg:
        for backend in backends:
            for name in systems:

                @contextmanager
                def fresh(name=name, backend=backend) -> Iterator[dict]:
                    if backend == "sqlite":
                        d = tempfile.mkdtemp(prefix="inloop-compare-")
                        db = f"sqlite://{d}/{name.replace(' ', '-')}.db"
                    else:
                        dbname = "cmp_" + name.replace(" ", "_")
                        work_in(il_py, "createdb", pg, dbname)
                        db = with_db(pg, dbname)
                    with system(name, backend, db, binary, ah_py) as target:
                        yield target

                py = ah_py if name == "awaithumans" else il_py
                results[(name, backend)] = measure(name, backend, fresh, py, args.quick)
        if "postgres" in backends:
            say("floor: PostgreSQL UPDATE + NOTIFY -> LISTEN")
            work_in(il_py, "createdb", pg, "cmp_floor")
            floor = work_in(il_py, "floor", with_db(pg, "cmp_floor"), 200 if args.quick else 1000)
    report(results, floor, args)
    print(f"\nfinished {time.strftime('%H:%M UTC', time.gmtime())}; {load()} at the end")
    if args.json:
        args.json.write_text(
            json.dumps(
                {f"{s} / {b}": v for (s, b), v in results.items()} | {"floor": floor}, indent=1
            )
        )


if __name__ == "__main__":
    main()
