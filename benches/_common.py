"""Shared helpers for the benchmark programs (not tests: they print figures)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    s = sorted(samples_ms)

    def pct(p: float) -> float:
        return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]

    return {
        "n": len(s),
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": s[-1],
        "mean": statistics.fmean(s),
    }


def fmt(p: dict[str, float]) -> str:
    return (
        f"n={int(p['n'])} p50={p['p50']:.2f} ms p95={p['p95']:.2f} ms "
        f"p99={p['p99']:.2f} ms max={p['max']:.2f} ms"
    )


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh database URL: a temp SQLite file, or a throwaway PostgreSQL with durable
    settings (fsync and synchronous_commit on: benchmarks measure what production gets)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite://{d}/bench.db"
        return
    if os.environ.get("INLOOP_BENCH_PG_URL"):
        yield os.environ["INLOOP_BENCH_PG_URL"]
        return
    d = tempfile.mkdtemp()
    env = dict(os.environ, PG_DURABLE="1")
    url = subprocess.run(
        ["bash", str(ROOT / "scripts/pg.sh"), "start", d],
        check=True, capture_output=True, text=True, env=env,
    ).stdout.strip()
    try:
        yield url
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/pg.sh"), "stop", d], capture_output=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"
