"""Across processes: another process answers, a killed agent loses nothing, configuration."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inloop import Client, Status

HERE = Path(__file__).parent
AGENT = HERE / "agent_script.py"
CRASH_ITERATIONS = int(os.environ.get("INLOOP_CRASH_ITERATIONS", "20"))


def spawn_agent(url: str, namespace: str, key: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(AGENT), url, namespace, key, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_for_task(client: Client, key: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.list(key_prefix=key)
        if page:
            return page[0].id
        await asyncio.sleep(0.01)
    raise AssertionError(f"the agent never created task {key}")


def finish(proc: subprocess.Popen[str], timeout: float = 20) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["event"] != "started", f"agent output: {out!r} {err!r}"
    return lines[-1]


async def test_answer_from_this_process_wakes_an_agent_process(
    client: Client, database_url: str, namespace: str
) -> None:
    proc = spawn_agent(database_url, namespace, "xproc-1")
    try:
        task_id = await wait_for_task(client, "xproc-1")
        await asyncio.sleep(0.1)
        await client.answer(task_id, {"approved": True, "note": "ok"}, by="alice")
        result = await asyncio.to_thread(finish, proc)
    finally:
        proc.kill()
    assert result["event"] == "answered"
    assert result["decision"] == {"approved": True, "note": "ok"}
    assert result["task_ids"] == [task_id]


async def test_sigkilled_agent_loses_nothing(
    client: Client, database_url: str, namespace: str
) -> None:
    """Kill the waiting agent with SIGKILL (sometimes mid-create), answer while it is down,
    re-run it with the same key: it gets the answer, and there is only ever one task."""
    rng = random.Random(1234)
    for i in range(CRASH_ITERATIONS):
        key = f"crash-{i}"
        proc = spawn_agent(database_url, namespace, key)
        if i % 4 == 3:
            # Kill at a random moment around start-up and creation.
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            page = await client.list(key_prefix=key)
            assert len(page) <= 1
            if not page:
                proc = spawn_agent(database_url, namespace, key)
                task_id = await wait_for_task(client, key)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            else:
                task_id = page[0].id
        else:
            task_id = await wait_for_task(client, key)
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        task = await client.get(task_id)
        assert task.status is Status.PENDING
        await client.answer(task_id, {"approved": i % 2 == 0}, by="alice")
        rerun = await asyncio.to_thread(finish, spawn_agent(database_url, namespace, key))
        assert rerun["event"] == "answered", rerun
        assert rerun["decision"] == {"approved": i % 2 == 0, "note": None}
        assert rerun["task_ids"] == [task_id]
    assert len(await client.list(limit=1000)) == CRASH_ITERATIONS


async def test_timeout_is_enforced_for_an_agent_process(
    client: Client, database_url: str, namespace: str
) -> None:
    proc = spawn_agent(database_url, namespace, "slow-1", "0.3")
    result = await asyncio.to_thread(finish, proc)
    assert result["event"] == "error" and result["code"] == "timed_out"
    assert (await client.list())[0].status is Status.TIMED_OUT


def run_snippet(
    code: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh Python process (the inloop runtime and configuration from zero)."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )


def test_default_database_is_dot_inloop_under_cwd(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "INLOOP_DATABASE_URL"}
    code = (
        "import asyncio, inloop\n"
        "async def main():\n"
        "    c = inloop.Client()\n"
        "    t = await c.create('hi', payload={}, response={'type': 'boolean'})\n"
        "    print(c.database_url)\n"
        "asyncio.run(main())\n"
    )
    out = run_snippet(code, tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / ".inloop" / "inloop.db").exists()
    assert out.stdout.strip().endswith("/.inloop/inloop.db")


def test_env_var_configures_the_database(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "x.db"
    env = dict(os.environ, INLOOP_DATABASE_URL=f"sqlite:{target}")
    code = (
        "import asyncio, inloop\n"
        "async def main():\n"
        "    await inloop.Client().create('hi', payload={}, response={'type': 'boolean'})\n"
        "asyncio.run(main())\n"
    )
    out = run_snippet(code, tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert target.exists() and not (tmp_path / ".inloop").exists()


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    env = dict(os.environ, INLOOP_DATABASE_URL="mysql://nope")
    code = (
        "import asyncio, inloop\n"
        "async def main():\n"
        "    try:\n"
        "        await inloop.Client().list()\n"
        "    except inloop.ConfigError as e:\n"
        "        print('config:', e)\n"
        "asyncio.run(main())\n"
    )
    out = run_snippet(code, tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("config: configuration error: unsupported database URL")


@pytest.mark.parametrize("runs", [8])
def test_short_scripts_exit_cleanly(tmp_path: Path, runs: int) -> None:
    """The owned runtime shuts down at exit: no crash at interpreter finalization."""
    code = (
        "import asyncio, inloop\n"
        "async def main():\n"
        "    c = inloop.Client()\n"
        "    t = await c.create('hi', payload={}, response={'type': 'boolean'})\n"
        "    await c.wait(t.id, timeout=0.01)\n"
        "asyncio.run(main())\n"
    )
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""
