"""Completion callbacks from Python: ``callback_url`` on ``await_human`` and ``Client.create``,
delivered by a real ``inloop serve`` to a receiver on 127.0.0.1, checked with
:func:`inloop.webhooks.verify_webhook`; on SQLite and PostgreSQL (docs/channels.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_remote import Server

from inloop import Client, InloopError, InvalidArgument, Status, TimedOut, await_human
from inloop.webhooks import verify_webhook

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}},
    "required": ["approved"],
}


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (headers and raw body)."""

    def __init__(self) -> None:
        self.hits: list[tuple[dict[str, str], bytes]] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                hits.append((dict(self.headers.items()), self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


class CallbackServer(Server):
    """`inloop serve` delivering callbacks to what `allow` permits, signed with `secret`."""

    def __init__(self, database_url: str, tmp: Path, allow: str, secret: str) -> None:
        super().__init__(database_url, tmp)
        self.allow = allow
        self.secret = secret

    def env(self) -> dict[str, str]:
        env = super().env()
        env["INLOOP_CALLBACK_ALLOW"] = self.allow
        env["INLOOP_CALLBACK_SECRET"] = self.secret
        env["INLOOP_CHANNEL_POLL_MS"] = "50"
        return env


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def server(
    database_url: str, tmp_path: Path, receiver: Receiver, secret: str
) -> Iterator[CallbackServer]:
    s = CallbackServer(database_url, tmp_path, f"{receiver.origin}/cb/", secret)
    s.start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture
async def agent(server: CallbackServer, namespace: str) -> AsyncIterator[Client]:
    c = Client(namespace=namespace, url=server.url, api_key=server.apikey(namespace))
    yield c
    await c.close()


Hit = tuple[dict[str, str], bytes]


async def hits(receiver: Receiver, n: int, timeout: float = 20) -> list[Hit]:
    deadline = time.monotonic() + timeout
    while len(receiver.hits) < n:
        assert time.monotonic() < deadline, f"{len(receiver.hits)} of {n} callbacks arrived"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a double delivery would show now
    return list(receiver.hits)


async def test_the_end_reaches_the_callback_signed(
    agent: Client, receiver: Receiver, secret: str
) -> None:
    url = f"{receiver.origin}/cb/timed-out"
    with pytest.raises(TimedOut):
        await await_human(
            "Approve?",
            payload={"n": 1},
            response=SCHEMA,
            timeout=0.3,
            client=agent,
            callback_url=url,
        )
    task = await agent.create(
        "Approve?",
        payload={"n": 2},
        response=SCHEMA,
        key=f"cb-{uuid.uuid4()}",
        callback_url=f"{receiver.origin}/cb/./x/../cancelled",
    )
    assert task.callback_url == f"{receiver.origin}/cb/cancelled"  # stored normalized
    await agent.cancel(task.id, by="ops", reason="not needed")
    got = await hits(receiver, 2)
    assert len(got) == 2
    by_status = {}
    for headers, body in got:
        verify_webhook(secret, headers, body)  # raises if the signature does not hold
        event = json.loads(body)
        assert event["type"] == "task.ended"
        by_status[event["data"]["task"]["status"]] = event["data"]["task"]
    assert by_status["timed_out"]["callback_url"] == url
    assert by_status["cancelled"]["id"] == task.id
    assert by_status["cancelled"]["cancel_reason"] == "not needed"
    # Tampering shows.
    headers, body = got[0]
    with pytest.raises(InloopError) as err:
        verify_webhook(secret, headers, body.replace(b"task.ended", b"task.other"))
    assert err.value.code == "unauthorized"


async def test_disallowed_urls_are_refused_or_never_sent(
    agent: Client, server: CallbackServer, receiver: Receiver, namespace: str
) -> None:
    # Through the server: refused at creation, clearly.
    for url, why in [
        ("https://evil.example/cb/", "not allowed"),
        (f"{receiver.origin}/other", "not allowed"),
        ("ftp://127.0.0.1/cb/", "http or https"),
    ]:
        with pytest.raises(InvalidArgument) as err:
            await agent.create("Approve?", payload={}, response=SCHEMA, callback_url=url)
        assert "callback_url" in str(err.value) and why in str(err.value), err.value
    # Direct mode cannot know the server's list: the URL is accepted, and the server's
    # dispatcher refuses to send it (delivery_failed, naming why).
    direct = Client(namespace=namespace, database_url=server.database_url)
    try:
        with pytest.raises(InvalidArgument):
            await direct.create("Approve?", payload={}, response=SCHEMA, callback_url="/relative")
        task = await direct.create(
            "Approve?", payload={}, response=SCHEMA, callback_url=f"{receiver.origin}/other"
        )
        assert task.status == Status.PENDING
        await direct.cancel(task.id, by="ops")
        deadline = time.monotonic() + 20
        while True:
            failed = [e for e in await direct.audit(task.id) if e.kind == "delivery_failed"]
            if failed:
                break
            assert time.monotonic() < deadline, "no delivery_failed row"
            await asyncio.sleep(0.05)
        assert failed[0].channel == "callback"
        assert "not allowed" in failed[0].data["error"]
        assert receiver.hits == []
    finally:
        await direct.close()
