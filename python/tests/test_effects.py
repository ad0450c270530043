"""``once``: exactly-once effects, in this process and across real processes killed with
SIGKILL (inside the effect, and between recording its result and returning), on SQLite and
PostgreSQL, directly and through ``inloop serve``."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from test_remote import Server

from inloop import (
    Client,
    Conflict,
    EffectInDoubt,
    EffectState,
    InvalidArgument,
    TooLarge,
    once,
    once_sync,
)

HERE = Path(__file__).parent
AGENT = HERE / "effect_agent.py"


class Receipt(BaseModel):
    charge: str
    amount: float


class Other(BaseModel):
    tracking: str


async def test_runs_once_and_replays_the_recorded_result(client: Client) -> None:
    calls: list[int] = []

    def charge() -> dict[str, Any]:
        calls.append(1)
        return {"charge": "ch_1", "items": (1, 2)}

    first = await once("charge-A-1", charge, client=client)
    again = await once("charge-A-1", charge, client=client)
    other = Client(client._url, namespace=client.namespace)
    try:
        third = await once("charge-A-1", charge, client=other)
    finally:
        await other.close()
    assert calls == [1]
    # the recorded JSON, on the first run as on every replay
    assert first == again == third == {"charge": "ch_1", "items": [1, 2]}
    effect = await client.effect("charge-A-1")
    assert effect.state is EffectState.DONE and effect.attempt == 1
    assert effect.started_by is not None and effect.started_by.startswith("python:")
    assert not effect.in_doubt


async def test_async_functions_and_models(client: Client) -> None:
    async def charge() -> Receipt:
        await asyncio.sleep(0)
        return Receipt(charge="ch_2", amount=12.5)

    got = await once("charge-2", charge, client=client, result_type=Receipt)
    assert got == Receipt(charge="ch_2", amount=12.5)
    replay = await once("charge-2", charge, client=client)
    assert replay == {"charge": "ch_2", "amount": 12.5}
    with pytest.raises(InvalidArgument, match="does not fit"):
        await once("charge-2", charge, client=client, result_type=Other)


async def test_a_raising_function_releases_the_effect(client: Client) -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("card network unreachable")
        return "ok"

    with pytest.raises(ConnectionError):
        await once("pay", flaky, client=client)
    failed = await client.effect("pay")
    assert failed.state is EffectState.FAILED
    assert failed.error == "ConnectionError: card network unreachable"
    assert await once("pay", flaky, client=client) == "ok"
    assert len(attempts) == 2
    assert (await client.effect("pay")).attempt == 2


async def test_without_release_on_error_an_exception_leaves_it_in_doubt(client: Client) -> None:
    def timeout_after_sending() -> None:
        raise TimeoutError("sent, no answer")

    with pytest.raises(TimeoutError):
        await once("wire", timeout_after_sending, client=client, release_on_error=False)
    with pytest.raises(EffectInDoubt) as caught:
        await once("wire", lambda: "never", client=client)
    e = caught.value
    assert (e.key, e.namespace, e.attempt) == ("wire", client.namespace, 1)
    assert isinstance(e.started_at, datetime) and e.started_at.tzinfo is not None
    assert e.started_by is not None and e.started_by.startswith("python:")
    assert "in doubt" in str(e)


async def test_a_concurrent_call_is_in_doubt_never_a_second_run(client: Client) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()
    runs: list[int] = []

    async def slow() -> int:
        runs.append(1)
        inside.set()
        await release.wait()
        return 7

    first = asyncio.create_task(once("slow", slow, client=client))
    await inside.wait()
    with pytest.raises(EffectInDoubt):
        await once("slow", slow, client=client)
    release.set()
    assert await first == 7
    assert await once("slow", slow, client=client) == 7
    assert runs == [1]


async def test_cancelled_inside_the_function_is_in_doubt(client: Client) -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    t = asyncio.create_task(once("cancelled", forever, client=client))
    await started.wait()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert (await client.effect("cancelled")).in_doubt


async def test_results_that_cannot_be_recorded_leave_it_in_doubt(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="not JSON-serializable"):
        await once("odd", lambda: {1, 2}, client=client)
    with pytest.raises(TooLarge):
        await once("huge", lambda: "x" * (300 * 1024), client=client)
    in_doubt = {e.key for e in await client.effects(state="in_doubt")}
    assert in_doubt == {"odd", "huge"}
    # a person marks it done with the result the agent should get
    done = await client.resolve_effect(
        "odd", "mark_done", by="alice", result=[1, 2], note="checked", attempt=1
    )
    assert done.state is EffectState.DONE and done.resolved_by == "alice"
    assert await once("odd", lambda: "never", client=client) == [1, 2]
    # resolving it again is refused
    with pytest.raises(Conflict):
        await client.resolve_effect("odd", "allow_retry", by="alice")
    await client.resolve_effect("huge", "allow_retry", by="alice")
    assert await once("huge", lambda: "small", client=client) == "small"


async def test_bad_input_is_a_clear_error_and_runs_nothing(client: Client) -> None:
    ran: list[int] = []
    for key in ["", "x" * 600, "a\x00b"]:
        with pytest.raises(InvalidArgument):
            await once(key, lambda: ran.append(1), client=client)
    with pytest.raises(InvalidArgument):
        await once(7, lambda: ran.append(1), client=client)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await once("k", "not callable", client=client)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await client.resolve_effect("k", "maybe", by="alice")  # type: ignore[arg-type]
    assert ran == []


def test_once_sync(database_url: str, namespace: str) -> None:
    client = Client(database_url, namespace=namespace)
    calls: list[int] = []
    assert once_sync("s", lambda: calls.append(1) or "done", client=client) == "done"
    assert once_sync("s", lambda: calls.append(1) or "again", client=client) == "done"
    assert calls == [1]

    async def inside_a_loop() -> None:
        with pytest.raises(RuntimeError, match="running event loop"):
            once_sync("s", lambda: None, client=client)

    asyncio.run(inside_a_loop())
    # from a worker thread, fine
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(once_sync("s", lambda: 0, client=client)))
    t.start()
    t.join()
    assert out == ["done"]
    asyncio.run(client.close())


# -------------------------------------------------------------------------------------------
# Real processes, SIGKILL


def agent(mode: str, log: Path, namespace: str, key: str, url: str, *remote: str) -> list[str]:
    return [sys.executable, str(AGENT), mode, str(log), namespace, key, url, *remote]


def run_agent(*args: Any) -> dict[str, Any]:
    out = subprocess.run(agent(*args), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert events, out.stdout + out.stderr
    last: dict[str, Any] = events[-1]
    return last


def kill_inside(*args: Any) -> int:
    """Starts the agent in `hang` mode and SIGKILLs it once it is inside the effect (after
    the side effect happened); returns its pid."""
    proc = subprocess.Popen(agent("hang", *args), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line)["event"] == "inside", line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        return proc.pid
    finally:
        proc.kill()


def lines(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def http(server: Server, api_key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        server.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    s = Server(database_url, tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.kill()


async def test_sigkill_inside_the_effect_is_in_doubt_until_a_person_resolves(
    client: Client, database_url: str, namespace: str, tmp_path: Path, server: Server
) -> None:
    """(a) Killed inside `fn`, after the side effect: the next process (direct or remote) gets
    EffectInDoubt and does not run `fn`; the API lists it; "allow retry" runs it again once;
    "mark done" makes every later call return the given result without running `fn`."""
    key = server.apikey(namespace)
    remote = (server.url, key)
    log = tmp_path / "charge.log"
    pid = kill_inside(log, namespace, "charge-1", database_url)
    assert lines(log) == 1
    for extra in [(), remote]:
        out = run_agent("run", log, namespace, "charge-1", database_url, *extra)
        assert out["event"] == "error" and out["code"] == "effect_in_doubt", out
        assert out["details"]["attempt"] == 1
        assert out["details"]["started_by"].endswith(f":{pid}")
    assert lines(log) == 1, "nothing ran again"
    status, listed = http(server, key, "GET", "/api/v1/effects?state=in_doubt")
    assert status == 200
    assert [(e["key"], e["state"], e["attempt"]) for e in listed] == [("charge-1", "running", 1)]
    assert [e.key for e in await client.effects(state="in_doubt")] == ["charge-1"]

    # a person allows a retry (through the API): the next call runs it, once
    status, resolved = http(
        server,
        key,
        "POST",
        "/api/v1/effects/charge-1/resolve",
        {"action": "allow_retry", "attempt": 1, "by": "alice", "note": "not in the ledger"},
    )
    assert status == 200, resolved
    assert resolved["state"] == "retry_allowed" and resolved["resolved_by"] == "alice"
    out = run_agent("run", log, namespace, "charge-1", database_url, *remote)
    assert out == {"event": "result", "result": {"lines": 2}, "pid": out["pid"]}
    out = run_agent("run", log, namespace, "charge-1", database_url)
    assert out["result"] == {"lines": 2}
    assert lines(log) == 2

    # killed inside again (remote this time); a person marks it done with a result
    log2 = tmp_path / "ship.log"
    kill_inside(log2, namespace, "ship-1", database_url, *remote)
    out = run_agent("run", log2, namespace, "ship-1", database_url)
    assert out["code"] == "effect_in_doubt"
    await client.resolve_effect(
        "ship-1", "mark_done", by="bob", result={"lines": 1, "by_hand": True}, attempt=1
    )
    for extra in [(), remote]:
        out = run_agent("run", log2, namespace, "ship-1", database_url, *extra)
        assert out["result"] == {"lines": 1, "by_hand": True}
    assert lines(log2) == 1
    status, audit = http(server, key, "GET", "/api/v1/effects/ship-1/audit")
    assert status == 200
    assert [(a["kind"], a["actor"]) for a in audit][-1] == ("marked_done", "bob")


async def test_sigkill_after_recording_returns_the_recorded_result(
    client: Client, database_url: str, namespace: str, tmp_path: Path
) -> None:
    """(b) Killed between the result being recorded and `once` returning: a new process gets
    the recorded result without running `fn`."""
    log = tmp_path / "refund.log"
    proc = subprocess.run(
        agent("kill-after-record", log, namespace, "refund-1", database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert '"recorded"' in proc.stdout and '"result"' not in proc.stdout
    assert lines(log) == 1
    for _ in range(2):
        out = run_agent("run", log, namespace, "refund-1", database_url)
        assert out["event"] == "result" and out["result"] == {"lines": 1}, out
    assert lines(log) == 1
    effect = await client.effect("refund-1")
    assert effect.state is EffectState.DONE and effect.attempt == 1
