"""The chaos suite: real process faults against inloop, each case asserting its guarantee and
printing its figures. `scripts/chaos.sh` runs the fast variant (the README's test command runs
it); `scripts/soak.sh` runs the long one (`--long`: the full counts) and prints the table.

    python tests/chaos/chaos.py [--long] [--case NAME ...] [--backend sqlite|postgres ...]

Each run starts a PostgreSQL cluster of its own (scripts/pg.sh; the restart case restarts it
with `pg_ctl restart -m immediate`) and SQLite files in a temporary directory. Exit status 1
when any guarantee failed; the table marks the row FAILED.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import case_agent_kill
import case_load
import case_pg_restart
import case_race
import case_serve_kill
from common import HEADER, CaseFailed, Figures, Postgres, node_agent

# Counts: (fast, long).
COUNTS = {
    "agent_kills": (4, 100),
    "serve_kills": (5, 100),
    "pg_waiters": (100, 1000),
    "race_rounds": (2, 20),
    "sqlite_seconds": (5, 60),
    "load_agents": (300, 10000),
    "load_seconds": (5, 60),
}

CASES = ["agent-kill", "serve-kill", "pg-restart", "race", "sqlite-contention", "load"]


def machine() -> str:
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0))
    return f"{os.cpu_count()} cores (nproc {nproc}), {model}, {platform.system()}"


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--long", action="store_true", help="the soak counts")
    ap.add_argument("--case", action="append", choices=CASES)
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--load-agents", type=int, help="load case agents (300; long: 10,000)")
    ap.add_argument("--load-ramp", type=float, help="seconds the load agents start over")
    args = ap.parse_args()
    idx = 1 if args.long else 0

    def n(name: str) -> int:
        if name == "load_agents" and args.load_agents:
            return int(args.load_agents)
        return COUNTS[name][idx]

    cases = args.case or CASES
    backends = args.backend or ["sqlite", "postgres"]
    work = Path(tempfile.mkdtemp(prefix="inloop-chaos-"))
    pg = Postgres() if "postgres" in backends else None
    figures: list[Figures] = []
    failed: list[str] = []

    def db(backend: str, name: str) -> str:
        if backend == "postgres":
            assert pg is not None
            return pg.createdb()
        return f"sqlite://{work / (name + '.db')}"

    async def one(label: str, make: Callable[[], Awaitable[Figures]]) -> None:
        t = time.monotonic()
        try:
            fig = await make()
        except (CaseFailed, AssertionError, Exception) as e:  # a case that broke is a failure
            traceback.print_exc()
            fig = Figures(case=label, backend="", tried=0, extra=f"{type(e).__name__}: {e}"[:300])
            fig.ok = False
            fig.seconds = time.monotonic() - t
        figures.append(fig)
        print(fig.line(), flush=True)
        if not fig.ok:
            failed.append(f"{fig.case} [{fig.backend}]")

    started = time.monotonic()
    print(f"chaos: {'long' if args.long else 'fast'} variant on {machine()}", flush=True)
    try:
        for backend in backends:
            if "agent-kill" in cases:
                modes = [("py", "direct"), ("py", "remote")]
                if node_agent().exists():
                    modes.append(("ts", "direct"))
                elif os.environ.get("INLOOP_REQUIRE_TS") == "1":
                    failed.append(f"TypeScript agent missing at {node_agent()}")
                for lang, mode in modes:
                    await one(
                        f"agent-kill {lang} {mode} {backend}",
                        lambda lang=lang, mode=mode, backend=backend: case_agent_kill.run(
                            backend, db(backend, f"kill-{lang}-{mode}"), work, lang, mode,
                            n("agent_kills"),
                        ),
                    )  # fmt: skip
            if "serve-kill" in cases:
                await one(
                    f"serve-kill {backend}",
                    lambda backend=backend: case_serve_kill.run(
                        backend, db(backend, "serve-kill"), work, n("serve_kills")
                    ),
                )
            if "race" in cases:
                await one(
                    f"race {backend}",
                    lambda backend=backend: case_race.run(
                        backend, db(backend, "race"), work, n("race_rounds")
                    ),
                )
            if "load" in cases:
                await one(
                    f"load {backend}",
                    lambda backend=backend: case_load.load(
                        backend,
                        db(backend, "load"),
                        n("load_seconds"),
                        n("load_agents"),
                        args.load_ramp,
                    ),
                )
            if backend == "sqlite" and "sqlite-contention" in cases:
                await one(
                    "sqlite-contention",
                    lambda: case_load.contention(db("sqlite", "contention"), n("sqlite_seconds")),
                )
            if backend == "postgres" and "pg-restart" in cases:
                assert pg is not None
                for mode in ("direct", "remote"):
                    await one(
                        f"pg-restart {mode}",
                        lambda mode=mode: case_pg_restart.run(pg, work, mode, n("pg_waiters")),
                    )
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"chaos figures ({'long' if args.long else 'fast'} variant, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, "
          f"{time.monotonic() - started:.0f} s):")  # fmt: skip
    print(HEADER)
    for f in figures:
        print(f.line())
    if failed:
        print(f"\nchaos: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
