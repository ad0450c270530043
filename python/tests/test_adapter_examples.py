"""The adapter examples, run as a new user would on the embedded default database
(.inloop/ under the working directory), answered with the CLI from another process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from claude_env import cli_env
from test_cli_and_example import ROOT, clean_env, inloop

TS_EXAMPLES = ROOT / "typescript" / "dist" / "examples"


def command(name: str) -> list[str]:
    if name.endswith(".py"):
        return [sys.executable, str(ROOT / "examples" / name)]
    node = shutil.which("node")
    compiled = TS_EXAMPLES / name.replace(".ts", ".js")
    if not (node and compiled.exists()):
        if os.environ.get("INLOOP_REQUIRE_TS") == "1":
            raise AssertionError(f"INLOOP_REQUIRE_TS=1 but node or {compiled} is missing")
        pytest.skip("the TypeScript package is not built")
    return [node, str(compiled)]


@pytest.mark.parametrize(
    ("example", "answer", "expected"),
    [
        ("langgraph_refund.py", {"approved": True, "note": "fine"}, "agent: refunded (fine)"),
        ("langgraph_refund.ts", {"approved": False}, "agent: refused (no note)"),
        ("mastra_refund.ts", {"approved": True, "note": "fine"}, "agent: refunded (fine)"),
        (
            "pydantic_ai_refund.py",
            {"decision": "edit", "args": {"order_id": "A-1", "amount": 250}},
            "refunded 250.0 EUR on order A-1",
        ),
        (
            "openai_agents_refund.py",
            {"decision": "reject", "reason": "not eligible"},
            "agent: Done: not eligible",
        ),
        (
            "claude_agent_refund.py",
            {"behavior": "allow", "updated_input": {"order_id": "A-1", "amount": 250}},
            "agent: Done: refunded 250 EUR on order A-1",
        ),
        ("llamaindex_refund.py", {"decision": "approve"}, "agent: refunded 500.0 EUR on order A-1"),
        (
            "openai_agents_refund.ts",
            {"decision": "reject", "reason": "not eligible"},
            "agent: Done: not eligible",
        ),
        (
            "claude_agent_refund.ts",
            {"behavior": "allow", "updated_input": {"order_id": "A-1", "amount": 250}},
            "agent: Done: refunded 250 EUR on order A-1",
        ),
    ],
)
def test_adapter_example_is_answered_with_the_cli(
    tmp_path: Path, example: str, answer: dict[str, object], expected: str
) -> None:
    env = clean_env()
    server = None
    if example.startswith("claude_agent"):  # its bundled CLI talks to the loopback fake API
        import anthropic_messages

        server, url = anthropic_messages.serve()
        env.update(cli_env(url, tmp_path / "home"))
    agent = subprocess.Popen(
        command(example), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the example never created its task"
            listed = inloop("tasks", "list", "--status", "pending", "--json", cwd=tmp_path, env=env)
            items = json.loads(listed.stdout)["items"] if listed.returncode == 0 else []
            if items:
                break
            time.sleep(0.05)
        [task] = items
        ok = inloop(
            "tasks", "answer", task["id"], json.dumps(answer), "--by", "alice", cwd=tmp_path,
            env=env,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        out, err = agent.communicate(timeout=30)
    finally:
        agent.kill()
        if server is not None:
            server.shutdown()
    assert agent.returncode == 0, err
    assert expected in out, out + err
