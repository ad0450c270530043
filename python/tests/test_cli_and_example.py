"""The `inloop` console script and the README's example, run as a new user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INLOOP = shutil.which("inloop", path=str(Path(sys.executable).parent))


def inloop(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert INLOOP, "the inloop console script is not installed next to this Python"
    return subprocess.run(
        [INLOOP, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("INLOOP_")}


TS_EXAMPLE = ROOT / "typescript" / "dist" / "examples" / "refund_approval.js"


def example_command(language: str) -> list[str]:
    if language == "python":
        return [sys.executable, str(ROOT / "examples" / "refund_approval.py")]
    node = shutil.which("node")
    if not (node and TS_EXAMPLE.exists()):
        if os.environ.get("INLOOP_REQUIRE_TS") == "1":
            raise AssertionError(f"INLOOP_REQUIRE_TS=1 but node or {TS_EXAMPLE} is missing")
        pytest.skip("the TypeScript package is not built")
    return [node, str(TS_EXAMPLE)]


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_example_agent_is_answered_with_the_cli(tmp_path: Path, language: str) -> None:
    """The README's main job: the example waits on .inloop/inloop.db, the CLI answers it by
    key from another process, the agent resumes and acts on the answer."""
    env = clean_env()
    agent = subprocess.Popen(
        example_command(language),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = inloop("tasks", "list", "--json", cwd=tmp_path, env=env)
            if listed.returncode == 0 and json.loads(listed.stdout)["items"]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the example never created its task")
        bad = inloop(
            "tasks", "answer", "--key", "refund-A-1", '{"approved": "yes"}', cwd=tmp_path, env=env
        )
        assert bad.returncode == 1
        assert "/approved" in bad.stderr and "still pending" in bad.stderr
        ok = inloop(
            "tasks",
            "answer",
            "--key",
            "refund-A-1",
            '{"approved": true, "note": "fine"}',
            "--by",
            "alice",
            cwd=tmp_path,
            env=env,
        )
        assert ok.returncode == 0, ok.stderr
        out, err = agent.communicate(timeout=30)
    finally:
        agent.kill()
    assert agent.returncode == 0, err
    assert "approved (fine); refunding A-1" in out
    audit = inloop("tasks", "audit", "--key", "refund-A-1", cwd=tmp_path, env=env)
    assert audit.returncode == 0, audit.stderr
    assert "answer_refused" in audit.stdout and "answer_accepted" in audit.stdout
    assert "chain: ok (3 rows)" in audit.stdout


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    env = clean_env()
    missing = inloop("tasks", "list", cwd=tmp_path, env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error [config]: there is no inloop database")
    assert not (tmp_path / ".inloop").exists()
    assert inloop("migrate", cwd=tmp_path, env=env).returncode == 0
    bad_id = inloop("tasks", "show", "nope", cwd=tmp_path, env=env)
    assert bad_id.returncode == 1 and "[invalid_argument]" in bad_id.stderr
    bad_json = inloop(
        "tasks", "answer", "0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f", "{nope", cwd=tmp_path, env=env
    )
    assert bad_json.returncode == 1 and "[invalid_json]" in bad_json.stderr
    unknown = inloop(
        "tasks", "answer", "0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f", "true", cwd=tmp_path, env=env
    )
    assert unknown.returncode == 1 and "[not_found]" in unknown.stderr
    usage = inloop("tasks", "frobnicate", cwd=tmp_path, env=env)
    assert usage.returncode == 2


def test_cli_on_postgres(pg_database_url: str, tmp_path: Path) -> None:
    env = dict(
        clean_env(), INLOOP_DATABASE_URL=pg_database_url, INLOOP_NAMESPACE=f"cli-{time.time_ns()}"
    )
    created = inloop(
        "tasks",
        "create",
        "--title",
        "Deploy?",
        "--response-schema",
        '{"type": "boolean"}',
        "--key",
        "d1",
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert created.returncode == 0, created.stderr
    answered = inloop("tasks", "answer", "--key", "d1", "true", cwd=tmp_path, env=env)
    assert answered.returncode == 0, answered.stderr
    late = inloop("tasks", "answer", "--key", "d1", "false", "--by", "bob", cwd=tmp_path, env=env)
    assert (
        late.returncode == 1 and "[conflict]" in late.stderr and "already answered" in late.stderr
    )
