"""The environment for the Claude Agent SDK's bundled CLI in tests: the loopback fake
Anthropic API (tests/fakes/anthropic_messages.py) and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent.parent.parent / "tests" / "fakes"
sys.path.insert(0, str(FAKES))


def cli_env(base_url: str, home: Path) -> dict[str, str]:
    """What the bundled CLI needs to talk to the fake only (no other traffic, its own HOME)."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "HOME": str(home),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "ENABLE_TOOL_SEARCH": "false",  # the MCP tool is offered directly, not deferred
    }
