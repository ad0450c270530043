"""OpenTelemetry from the embedded engine: a real OTLP/HTTP receiver on loopback decodes the
protobuf export of an agent process (tests/otel_agent.py) and checks the spans of one
approval: names, the task's id and key, and the agent's span as their parent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

HERE = Path(__file__).parent


class Receiver:
    def __init__(self) -> None:
        self.requests = 0
        self.spans: list[dict[str, Any]] = []
        self.problems: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests += 1
                if self.path != "/v1/traces":
                    receiver.problems.append(f"path {self.path}")
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    receiver.problems.append(f"content-type {self.headers.get('Content-Type')}")
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                for rs in req.resource_spans:
                    service = next(
                        (
                            a.value.string_value
                            for a in rs.resource.attributes
                            if a.key == "service.name"
                        ),
                        "",
                    )
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            receiver.spans.append(
                                {
                                    "service": service,
                                    "name": s.name,
                                    "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent": s.parent_span_id.hex(),
                                    "start": s.start_time_unix_nano,
                                    "end": s.end_time_unix_nano,
                                    "attrs": {
                                        a.key: a.value.string_value or a.value.int_value
                                        for a in s.attributes
                                    },
                                }
                            )
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def run_agent(db: str, key: str, env: dict[str, str], *extra: str) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, str(HERE / "otel_agent.py"), db, key, *extra],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("how", ["current_span", "explicit"])
def test_the_agents_trace_shows_the_wait(receiver: Receiver, tmp_path: Path, how: str) -> None:
    db = f"sqlite://{tmp_path / 'x.db'}"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "py-agent",
        # Nothing is sent before exit: what arrives proves the flush at interpreter exit.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    extra = ("explicit",) if how == "explicit" else ()
    got = run_agent(db, f"refund-{how}", env, *extra)
    assert got["answer"] == {"approved": True}
    assert receiver.problems == []
    mine = [s for s in receiver.spans if s["attrs"].get("inloop.task.id") == got["task_id"]]
    names = sorted(s["name"] for s in mine)
    assert names == ["inloop.answer", "inloop.create", "inloop.resume"], mine
    for s in mine:
        assert s["service"] == "py-agent", s
        assert s["trace_id"] == got["trace_id"], s
        assert s["parent"] == got["span_id"], s
        assert s["attrs"]["inloop.task.key"] == f"refund-{how}", s
    by = {s["name"]: s for s in mine}
    resume, answer = by["inloop.resume"], by["inloop.answer"]
    assert resume["start"] <= answer["start"] and resume["end"] >= answer["end"]
    assert resume["end"] - resume["start"] >= 200_000_000


def test_no_endpoint_no_export(receiver: Receiver, tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 'x.db'}"
    got = run_agent(db, "refund-quiet", {"OTEL_SERVICE_NAME": "py-agent"})
    assert got["answer"] == {"approved": True}
    assert receiver.requests == 0


def test_a_protocol_inloop_cannot_speak_warns_and_stays_off(
    receiver: Receiver, tmp_path: Path
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import inloop"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "RuntimeWarning" in out.stderr and "http/protobuf" in out.stderr, out.stderr
    assert receiver.requests == 0


ROOT = HERE.parents[1]
TS_AGENT = ROOT / "tests" / "cross" / "ts_otel_agent.mjs"
TS_BUILT = ROOT / "typescript" / "dist" / "src" / "index.js"


def test_the_typescript_embedded_engine_exports_too(receiver: Receiver, tmp_path: Path) -> None:
    node = shutil.which("node")
    if not (node and TS_BUILT.exists()):
        if os.environ.get("INLOOP_REQUIRE_TS") == "1":
            pytest.fail(f"INLOOP_REQUIRE_TS=1 but node or {TS_BUILT} is missing")
        pytest.skip("the TypeScript package is not built (cd typescript && npm run build)")
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env = {
        **base,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "ts-agent",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # only the flush at exit sends
    }
    out = subprocess.run(
        [
            node,
            str(TS_AGENT),
            f"sqlite://{tmp_path / 'x.db'}",
            "ts-refund",
            f"00-{trace_id}-{span_id}-01",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["answer"] == {"approved": True}
    mine = [s for s in receiver.spans if s["attrs"].get("inloop.task.id") == got["task_id"]]
    assert sorted(s["name"] for s in mine) == ["inloop.answer", "inloop.create", "inloop.resume"]
    for s in mine:
        assert (s["service"], s["trace_id"], s["parent"]) == ("ts-agent", trace_id, span_id), s
        assert s["attrs"]["inloop.task.key"] == "ts-refund", s
