"""Shared pieces of the chaos cases: real `inloop serve` processes, a throwaway PostgreSQL that
can be restarted, a loopback webhook receiver, API keys, percentiles and the figures table.

Nothing here is a mock: servers are the `inloop` binary, PostgreSQL is a real cluster started
by `scripts/pg.sh`, signals are real SIGKILLs.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


class CaseFailed(AssertionError):
    """A guarantee did not hold."""


def check(cond: bool, what: str) -> None:
    """Fails the case with `what` unless `cond` holds."""
    if not cond:
        raise CaseFailed(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def p99(samples: list[float]) -> float:
    """The 99th percentile (nearest rank) of `samples`, 0 for none."""
    if not samples:
        return 0.0
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, math.ceil(0.99 * len(s)) - 1))]


def inloop_bin() -> str:
    """The `inloop` command: $INLOOP_BIN, else the venv's console script, which runs the CLI
    through the native module `maturin develop` installed (a copy of this checkout's core;
    the shared cargo target directory's binary may be another checkout's by now)."""
    if os.environ.get("INLOOP_BIN"):
        return os.environ["INLOOP_BIN"]
    return str(Path(sys.executable).parent / "inloop")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INLOOP_")}
    env["INLOOP_LOG"] = "warn"
    env.update(extra)
    return env


def create_key(db_url: str, namespace: str) -> str:
    """An API key for `namespace` allowed to answer (the CLI, as an operator does it)."""
    out = subprocess.run(
        [inloop_bin(), "apikey", "create", "--name", f"chaos-{uuid.uuid4().hex[:6]}",
         "--namespace", namespace, "--allow-answer", "--json"],
        env=clean_env(INLOOP_DATABASE_URL=db_url),
        check=True,
        capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    secret: str = json.loads(out)["secret"]
    return secret


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Server:
    """One `inloop serve` on a fixed loopback port; SIGKILL it and start it again at will."""

    def __init__(self, db_url: str, work: Path, name: str, **env: str) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / f"serve-{name}.log"
        self.env = clean_env(INLOOP_DATABASE_URL=db_url, **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [inloop_bin(), "serve", "--bind", f"127.0.0.1:{self.port}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CaseFailed(
                    f"inloop serve exited with {self.proc.returncode}: "
                    + self.log.read_text(errors="replace")[-3000:]
                )
            if http_status(f"{self.url}/healthz", 0.5) == 200:
                return
            time.sleep(0.02)
        raise CaseFailed(f"inloop serve did not answer /healthz within {timeout} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            check(self.proc.returncode == -signal.SIGKILL, "serve did not die by SIGKILL")
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def http_status(url: str, timeout: float) -> int | None:
    """The status of a GET (None when nothing answered within `timeout`)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


class Postgres:
    """A throwaway PostgreSQL cluster of the run's own (scripts/pg.sh), restartable."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="inloop-chaos-pg-"))
        self.url = subprocess.run(
            [str(ROOT / "scripts/pg.sh"), "start", str(self.dir)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def createdb(self) -> str:
        name = f"chaos_{uuid.uuid4().hex[:10]}"
        return subprocess.run(
            [str(ROOT / "scripts/pg.sh"), "createdb", str(self.dir), name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def _as_pg(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        import pwd

        prefix: list[str] = []
        if pwd.getpwuid(os.getuid()).pw_name != "postgres":
            prefix = ["runuser", "-u", "postgres", "--"]
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True)

    def restart_immediate(self, down_s: float = 1.0) -> float:
        """`pg_ctl restart -m immediate` in its two steps, with the server held down for
        `down_s` between them (so an outage is observable, not a sub-second blip): an
        immediate stop (every backend killed, no checkpoint: recovery on start), then a
        start. Returns the seconds from the stop until the server accepts connections."""
        t = time.monotonic()
        data, log = str(self.dir / "data"), str(self.dir / "log")
        out = self._as_pg(f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        check(out.returncode == 0, f"pg_ctl stop -m immediate failed: {out.stdout} {out.stderr}")
        time.sleep(down_s)
        out = self._as_pg(f"{PG_BIN}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start")
        check(out.returncode == 0, f"pg_ctl start failed: {out.stdout} {out.stderr}")
        return time.monotonic() - t

    def stop(self) -> None:
        subprocess.run(
            [str(ROOT / "scripts/pg.sh"), "stop", str(self.dir)], capture_output=True, check=False
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Receiver:
    """A loopback webhook receiver: verifies each delivery's signature with the SDK's check
    and records (webhook-id, event type, task id) for every arrival."""

    secret: str
    arrivals: list[tuple[str, str, str]] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        from inloop import InloopError
        from inloop.webhooks import verify_webhook

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    verify_webhook(receiver.secret, dict(self.headers.items()), body)
                    event = json.loads(body)
                    row = (self.headers["webhook-id"], event["type"], event["data"]["task"]["id"])
                    with receiver.lock:
                        receiver.arrivals.append(row)
                except (InloopError, KeyError, ValueError) as e:
                    with receiver.lock:
                        receiver.bad.append(repr(e))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def stop(self) -> None:
        self.httpd.shutdown()


@dataclass
class Figures:
    """One row of the figures table."""

    case: str
    backend: str
    tried: int
    lost: int = 0
    duplicated: int = 0
    errors: int = 0
    p99_ms: float | None = None
    extra: str = ""
    seconds: float = 0.0
    ok: bool = True

    def line(self) -> str:
        p = "-" if self.p99_ms is None else f"{self.p99_ms:.1f}"
        return (
            f"| {self.case} | {self.backend} | {self.tried} | {self.lost} | {self.duplicated} "
            f"| {self.errors} | {p} | {self.extra} | {self.seconds:.1f} | "
            f"{'ok' if self.ok else 'FAILED'} |"
        )


HEADER = (
    "| case | backend | tried | lost | duplicated | errors | p99 ms | other figures | s "
    "| result |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def python_exe() -> str:
    return sys.executable


def node_agent() -> Path:
    return ROOT / "typescript/dist/test/agent.js"


def read_json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def sqlite_url(work: Path, name: str) -> str:
    return f"sqlite://{work / (name + '.db')}"


def redact(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)
