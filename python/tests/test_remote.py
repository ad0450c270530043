"""Remote mode: the SDK against a real `inloop serve` (docs/api.md), on SQLite and PostgreSQL.

Each test starts the server from the venv's `inloop` console script
(`inloop serve --bind 127.0.0.1:PORT`, database from `INLOOP_DATABASE_URL`) and creates an API
key with `inloop apikey create --name agent --namespace NS --allow-answer --json`. The secret
is taken as the one string value in that JSON that starts with `ilk_` (the contract's key
format), so the test does not depend on the field's name.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from inloop import (
    Client,
    ConfigError,
    InloopError,
    InvalidAnswer,
    Status,
    TimedOut,
    await_human,
)
from inloop import client as client_module

INLOOP = Path(sys.executable).parent / "inloop"


class Decision(BaseModel):
    approved: bool
    note: str = ""


DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}},
    "required": ["approved"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_secret(value: Any) -> str | None:
    """The first string starting with `ilk_` anywhere in the CLI's JSON."""
    if isinstance(value, str) and value.startswith("ilk_"):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for item in items:
        found = find_secret(item)
        if found:
            return found
    return None


class Server:
    """One `inloop serve` process on a fixed port; can be killed and started again."""

    def __init__(self, database_url: str, tmp: Path) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["INLOOP_DATABASE_URL"] = self.database_url
        env.pop("INLOOP_URL", None)
        env.pop("INLOOP_API_KEY", None)
        return env

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(INLOOP), "serve", "--bind", f"127.0.0.1:{self.port}"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"`inloop serve` exited with {self.proc.returncode}:\n"
                    + self.log.read_text(errors="replace")
                )
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError("`inloop serve` did not answer /healthz within 30 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def apikey(self, namespace: str, *, allow_answer: bool = True) -> str:
        args = [str(INLOOP), "apikey", "create", "--name", "agent", "--namespace", namespace]
        if allow_answer:
            args.append("--allow-answer")
        out = subprocess.run(
            [*args, "--json"], env=self.env(), capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, f"`inloop apikey create` failed:\n{out.stdout}\n{out.stderr}"
        secret = find_secret(json.loads(out.stdout))
        assert secret, f"no ilk_ key in the JSON of `inloop apikey create`: {out.stdout}"
        return secret


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    s = Server(database_url, tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture
def api_key(server: Server, namespace: str) -> str:
    return server.apikey(namespace)


@pytest.fixture
async def agent(server: Server, api_key: str, namespace: str) -> AsyncIterator[Client]:
    c = Client(namespace=namespace, url=server.url, api_key=api_key)
    yield c
    await c.close()


@pytest.fixture
async def human(server: Server, api_key: str, namespace: str) -> AsyncIterator[Client]:
    c = Client(namespace=namespace, url=server.url, api_key=api_key)
    yield c
    await c.close()


async def pending_id(client: Client, key: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.list(key_prefix=key)
        if page:
            return page[0].id
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {key} never appeared")


async def test_await_human_answered_by_another_remote_client(agent: Client, human: Client) -> None:
    assert agent.remote
    key = f"refund-{uuid.uuid4()}"
    waiting = asyncio.create_task(
        await_human(
            "Approve this refund?",
            payload={"order_id": "A-1", "amount": 500.0},
            response=Decision,
            key=key,
            client=agent,
        )
    )
    task_id = await pending_id(human, key)
    task = await human.answer(task_id, {"approved": True, "note": "ok"}, by="alice")
    assert task.status == Status.COMPLETED
    decision = await asyncio.wait_for(waiting, 10)
    assert decision == Decision(approved=True, note="ok")
    assert (await agent.get(task_id)).answered_by == "alice"
    check = await agent.verify_audit(task_id)
    assert check.ok and check.rows >= 2
    # the engine behind the client is remote
    native = await agent._native()
    assert native.backend == "remote"
    assert native.parked() == 0


async def test_create_is_idempotent_by_key(agent: Client) -> None:
    key = f"k-{uuid.uuid4()}"
    first = await agent.create("Approve?", payload={"n": 1}, response=DECISION_SCHEMA, key=key)
    again = await agent.create("Approve?", payload={"n": 1}, response=DECISION_SCHEMA, key=key)
    assert first.created and not again.created
    assert first.id == again.id
    page = await agent.list(key_prefix=key)
    assert [t.id for t in page] == [first.id]
    # without a key every create is a new task
    a = await agent.create("Approve?", payload={"n": 2}, response=DECISION_SCHEMA)
    b = await agent.create("Approve?", payload={"n": 2}, response=DECISION_SCHEMA)
    assert a.id != b.id and a.created and b.created


async def test_invalid_answer_has_field_errors(agent: Client, human: Client) -> None:
    task = await agent.create("Approve?", payload={}, response=DECISION_SCHEMA)
    with pytest.raises(InvalidAnswer) as err:
        await human.answer(task.id, {"approved": "yes"}, by="bob")
    assert err.value.code == "invalid_answer"
    assert [e.path for e in err.value.errors] == ["/approved"]
    assert (await agent.get(task.id)).status == Status.PENDING


async def test_timeout_raises_timed_out(agent: Client) -> None:
    started = time.monotonic()
    with pytest.raises(TimedOut) as err:
        await await_human("Quick?", payload={}, response=DECISION_SCHEMA, timeout=0.3, client=agent)
    assert time.monotonic() - started < 10
    assert err.value.code == "timed_out"
    assert "at" in err.value.details


async def test_wait_with_a_limit_returns_pending(agent: Client) -> None:
    task = await agent.create("Later?", payload={}, response=DECISION_SCHEMA)
    started = time.monotonic()
    got = await agent.wait(task.id, timeout=0.3)
    assert got.status == Status.PENDING
    assert 0.25 < time.monotonic() - started < 10


async def test_agent_survives_a_server_restart(
    server: Server, agent: Client, namespace: str, api_key: str
) -> None:
    key = f"restart-{uuid.uuid4()}"
    waiting = asyncio.create_task(
        await_human("Approve?", payload={"x": 1}, response=Decision, key=key, client=agent)
    )
    task_id = await pending_id(agent, key)
    await asyncio.sleep(0.3)  # the agent is in a long poll now
    server.kill()
    await asyncio.sleep(1.0)  # the agent retries against a dead port meanwhile
    assert not waiting.done()
    server.start()
    human = Client(namespace=namespace, url=server.url, api_key=api_key)
    try:
        await human.answer(task_id, {"approved": False, "note": "after restart"}, by="carol")
        decision = await asyncio.wait_for(waiting, 30)
        assert decision == Decision(approved=False, note="after restart")
        page = await human.list(key_prefix=key)
        assert [t.id for t in page] == [task_id]  # no duplicate task
    finally:
        await human.close()


async def test_missing_api_key_is_a_config_error(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INLOOP_API_KEY", raising=False)
    c = Client(url=server.url)
    with pytest.raises(ConfigError):
        await c.get(str(uuid.uuid4()))
    monkeypatch.setenv("INLOOP_URL", server.url)
    with pytest.raises(ConfigError):
        await Client().get(str(uuid.uuid4()))
    with pytest.raises(ConfigError):
        await await_human("Approve?", payload={}, response=DECISION_SCHEMA)


async def test_wrong_api_key_is_unauthorized(server: Server) -> None:
    c = Client(url=server.url, api_key="ilk_" + "A" * 43)
    with pytest.raises(InloopError) as err:
        await c.get(str(uuid.uuid4()))
    assert err.value.code == "unauthorized"
    await c.close()


async def test_environment_selects_remote_mode(
    server: Server,
    human: Client,
    api_key: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INLOOP_URL", server.url)
    monkeypatch.setenv("INLOOP_API_KEY", api_key)
    monkeypatch.setenv("INLOOP_DATABASE_URL", "sqlite:/nonexistent/dir/never.db")
    monkeypatch.setattr(client_module, "_defaults", {})
    default = client_module.default_client(namespace)
    assert default.remote and default.database_url == server.url
    key = f"env-{uuid.uuid4()}"
    waiting = asyncio.create_task(
        await_human("Env?", payload={}, response=DECISION_SCHEMA, key=key, namespace=namespace)
    )
    task_id = await pending_id(human, key)
    await human.answer(task_id, {"approved": True}, by="dave")
    assert await asyncio.wait_for(waiting, 10) == {"approved": True}


async def test_sdk_verifier_over_a_server(agent: Client, human: Client) -> None:
    """The agent's own verifier in remote mode: the rejection goes through the server
    (`POST .../verdict`), the person sees the reason, the agent keeps waiting."""
    from inloop import verifiers

    def needs_note(payload: Any, d: Decision) -> verifiers.Verdict:
        return verifiers.passed() if d.note else verifiers.rejected("add a note")

    key = f"verified-{uuid.uuid4()}"
    waiting = asyncio.create_task(
        await_human(
            "Approve?",
            payload={"n": 1},
            response=Decision,
            key=key,
            client=agent,
            verifier=needs_note,
        )
    )
    task_id = await pending_id(human, key)
    await human.answer(task_id, {"approved": True}, by="alice")
    for _ in range(1000):
        t = await human.get(task_id)
        if t.status is Status.PENDING and t.attempts == 1:
            break
        await asyncio.sleep(0.01)
    assert t.rejections[0]["reason"] == "add a note"
    await human.answer(task_id, {"approved": True, "note": "checked"}, by="alice")
    assert await asyncio.wait_for(waiting, 20) == Decision(approved=True, note="checked")
