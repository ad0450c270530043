"""A loopback fake of the Anthropic Messages API (`POST /v1/messages`, JSON or SSE stream) for
the Claude Agent SDK tests, Python and TypeScript: no network, no LLM.

Its script: a request whose tools include one named like ``INLOOP_FAKE_TOOL`` (default
``refund``, matched as a suffix, so ``mcp__shop__refund`` counts) and whose last user turn holds
no ``tool_result`` gets a ``tool_use`` of that tool with the JSON input ``INLOOP_FAKE_INPUT``;
once a ``tool_result`` came back, the reply is the text ``Done: <result>``; any other request
(titles, summaries) gets the text ``ok``. Every request is appended to the file
``INLOOP_FAKE_LOG`` (one JSON line), when set.

Run: ``python anthropic_messages.py`` prints ``http://127.0.0.1:PORT`` on its first line and
serves until killed. From Python: ``serve()`` returns ``(server, base_url)``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for block in content or []:
        if isinstance(block, dict):
            if block.get("type") == "text":
                out.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                out.append(_text_of(block.get("content")))
    return " ".join(out)


def reply(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks the fake answers ``body`` with."""
    want = os.environ.get("INLOOP_FAKE_TOOL", "refund")
    tools = [t.get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]
    tool = next((t for t in tools if t == want or t.endswith("__" + want)), None)
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content") if isinstance(last, dict) else None
    results = (
        [b for b in content or [] if isinstance(b, dict) and b.get("type") == "tool_result"]
        if isinstance(content, list)
        else []
    )
    if tool is None:
        return [{"type": "text", "text": "ok"}]
    if results:
        result = _text_of(results[-1].get("content")).strip().splitlines()
        return [{"type": "text", "text": "Done: " + (result[0] if result else "")}]
    raw = os.environ.get("INLOOP_FAKE_INPUT", '{"order_id": "A-1", "amount": 500}')
    n = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
    return [{"type": "tool_use", "id": f"toolu_fake_{n}", "name": tool, "input": json.loads(raw)}]


def _events(blocks: list[dict[str, Any]], model: str) -> list[tuple[str, dict[str, Any]]]:
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    msg = {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }  # fmt: skip
    ev: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": msg})
    ]
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": b["text"]}
        else:
            start = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
        ev.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": start},
            )
        )
        ev.append(
            ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta})
        )
        ev.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    ev.append((
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
         "usage": {"output_tokens": 5}},
    ))  # fmt: skip
    ev.append(("message_stop", {"type": "message_stop"}))
    return ev


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": "no"}})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?")[0]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "not JSON"}})  # fmt: skip
            return
        log = os.environ.get("INLOOP_FAKE_LOG")
        if log:
            with open(log, "a") as f:
                f.write(
                    json.dumps(
                        {
                            "path": path,
                            "tools": [t.get("name") for t in body.get("tools") or []],
                            "stream": body.get("stream", False),
                        }
                    )
                    + "\n"
                )
        if path.endswith("/count_tokens"):
            self._send(200, {"input_tokens": 10})
            return
        if not path.endswith("/v1/messages"):
            self._send(
                404, {"type": "error", "error": {"type": "not_found_error", "message": path}}
            )
            return
        blocks = reply(body)
        model = str(body.get("model") or "claude-fake")
        if not body.get("stream"):
            stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
            self._send(200, {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": blocks, "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 5},
            })  # fmt: skip
            return
        data = "".join(
            f"event: {name}\ndata: {json.dumps(payload)}\n\n"
            for name, payload in _events(blocks, model)
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve() -> tuple[ThreadingHTTPServer, str]:
    """Starts the fake on a free loopback port in a daemon thread: ``(server, base_url)``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


if __name__ == "__main__":
    srv, url = serve()
    print(url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sys.exit(0)
