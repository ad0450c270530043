"""Fuzzes the REST API of a real `inloop serve` from its own OpenAPI document (schemathesis).

For each backend (SQLite always; PostgreSQL when a server URL is given) this creates a fresh
database, an API key allowed to answer (so the authenticated routes, answering included, are
exercised), starts `inloop serve` on a free loopback port and runs schemathesis against
`/api/v1/openapi.json` with the checks that hold the server to its document: no 5xx, only
documented status codes, content types, headers and response bodies that match their schemas,
auth enforced, methods refused with 405. Every phase runs (examples, coverage, fuzzing,
stateful sequences that chain created tasks into answers, claims and cancels).

Prints one summary line per backend and exits non-zero if schemathesis found anything.

    python tests/fuzz/fuzz.py --bin target/debug/inloop --seconds 40 [--pg-url URL] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "ignored_auth",
        "unsupported_method",
        "use_after_free",
        "ensure_resource_availability",
    ]
)


def start_server(binary: str, db_url: str, log_path: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "INLOOP_DATABASE_URL": db_url, "INLOOP_LOG": "warn"}
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (http://[\d.:]+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit(f"fuzz: inloop serve did not start (log: {log_path})")


def create_key(binary: str, db_url: str) -> str:
    out = subprocess.run(
        [binary, "apikey", "create", "--name", "fuzz", "--allow-answer", "--json"],
        env={**os.environ, "INLOOP_DATABASE_URL": db_url},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)["secret"]


def pg_database(base: str) -> tuple[str, str]:
    """A fresh database on the server of `base`: (its URL, its name)."""
    import psycopg

    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    head, _, query = base.partition("?")
    root = head[: head.rindex("/")] if head.count("/") > 2 else head
    return f"{root}/{name}" + (f"?{query}" if query else ""), name


def drop_pg_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# CPython 3.11's `ast.parse` can raise this spuriously (python/cpython#106905) when two
# threads parse at once (Hypothesis describing a lambda): a crash of the fuzzer itself, not a
# finding about the server. One worker thread avoids the race; the retry is a backstop.
FUZZER_CRASH = "AST constructor recursion depth mismatch"


def fuzz(binary: str, backend: str, db_url: str, seconds: int, seed: int, work: str) -> bool:
    for attempt in range(3):
        ok, out = fuzz_once(binary, backend, db_url, seconds, seed + attempt, work)
        if ok or FUZZER_CRASH not in out or "unique failure" in out:
            return ok
        print(f"fuzz {backend}: the fuzzer itself crashed ({FUZZER_CRASH}); again with the next seed")
    print(out[-20000:], file=sys.stderr)
    return False


def fuzz_once(
    binary: str, backend: str, db_url: str, seconds: int, seed: int, work: str
) -> tuple[bool, str]:
    key = create_key(binary, db_url)
    proc, base = start_server(binary, db_url, os.path.join(work, f"serve-{backend}.log"))
    report = os.path.join(work, f"report-{backend}")
    started = time.monotonic()
    try:
        cmd = [
            sys.executable, "-m", "schemathesis.cli", "run", f"{base}/api/v1/openapi.json",
            "-H", f"Authorization: Bearer {key}",
            "--checks", CHECKS,
            "--max-time", str(seconds),
            "--seed", str(seed),
            "--workers", "1",
            "--request-timeout", "70",
            "--generation-database", "none",
            "--report", "junit", "--report-dir", report,
            "--no-color", "--output-truncate", "false",
        ]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    took = time.monotonic() - started
    out = run.stdout + run.stderr
    with open(os.path.join(work, f"schemathesis-{backend}.txt"), "w") as f:
        f.write(out)
    generated = re.search(r"(\d+) generated", out)
    failures = re.search(r"(\d+) unique failure", out)
    ok = run.returncode == 0
    print(
        f"fuzz {backend}: {generated.group(1) if generated else '?'} requests generated, "
        f"{failures.group(1) if failures else 0} unique failures, {took:.0f} s, seed {seed}"
        + ("" if ok else f" (exit {run.returncode})"),
        flush=True,
    )
    if not ok and FUZZER_CRASH not in out:
        print(out[-20000:], file=sys.stderr)
    return ok, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the inloop binary")
    ap.add_argument("--seconds", type=int, default=40, help="schemathesis budget per backend")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--pg-url", default=os.environ.get("INLOOP_TEST_PG_URL"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
    work = tempfile.mkdtemp(prefix="inloop-fuzz-")
    ok = True
    try:
        ok &= fuzz(a.bin, "sqlite", f"sqlite:{work}/fuzz.db", a.seconds, seed, work)
        if a.pg_url:
            url, name = pg_database(a.pg_url)
            try:
                ok &= fuzz(a.bin, "postgres", url, a.seconds, seed, work)
            finally:
                drop_pg_database(a.pg_url, name)
        else:
            print("fuzz postgres: skipped (no --pg-url / INLOOP_TEST_PG_URL)", flush=True)
    finally:
        if a.keep or not ok:
            print(f"fuzz: logs and reports in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
