"""Python and TypeScript on one database: each side's agent is answered by the other side.

Needs the TypeScript package built (`typescript/dist`); the test command builds it first and
sets INLOOP_REQUIRE_TS=1, so a missing build fails here instead of skipping.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inloop import Client, Status

ROOT = Path(__file__).resolve().parents[2]
CROSS = ROOT / "tests" / "cross"
BUILT = ROOT / "typescript" / "dist" / "src" / "index.js"
NODE = shutil.which("node")


@pytest.fixture(autouse=True)
def _need_typescript() -> None:
    if NODE and BUILT.exists():
        return
    if os.environ.get("INLOOP_REQUIRE_TS") == "1":
        pytest.fail(f"INLOOP_REQUIRE_TS=1 but node or {BUILT} is missing")
    pytest.skip("the TypeScript package is not built (cd typescript && npm run build)")


def last_json(out: str) -> dict[str, object]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines, out
    return lines[-1]


async def test_typescript_agent_answered_from_python(
    client: Client, database_url: str, namespace: str
) -> None:
    assert NODE
    proc = subprocess.Popen(
        [NODE, str(CROSS / "ts_agent.mjs"), database_url, namespace, "ts-agent-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(2000):
            page = await client.list(key_prefix="ts-agent-1")
            if page:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the TypeScript agent never created its task")
        done = await client.answer(page[0].id, {"approved": True, "note": "from python"}, by="py")
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        proc.kill()
    assert done.status is Status.COMPLETED
    result = last_json(out)
    assert result["event"] == "answered", (out, err)
    assert result["decision"] == {"approved": True, "note": "from python"}
    assert result["task_ids"] == [page[0].id]


async def test_python_agent_answered_from_typescript(
    client: Client, database_url: str, namespace: str
) -> None:
    assert NODE
    agent = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "python/tests/agent_script.py"),
            database_url,
            namespace,
            "py-agent-1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(2000):
            if await client.list(key_prefix="py-agent-1"):
                break
            await asyncio.sleep(0.01)
        answer = await asyncio.to_thread(
            subprocess.run,
            [
                NODE,
                str(CROSS / "ts_answer.mjs"),
                database_url,
                namespace,
                "py-agent-1",
                '{"approved": false, "note": "from typescript"}',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert last_json(answer.stdout) == {
            "event": "answered",
            "status": "completed",
            "by": "ts-reviewer",
        }
        out, err = await asyncio.to_thread(agent.communicate, timeout=30)
    finally:
        agent.kill()
    result = last_json(out)
    assert result["event"] == "answered", (out, err)
    assert result["decision"] == {"approved": False, "note": "from typescript"}
