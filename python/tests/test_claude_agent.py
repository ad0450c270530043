"""The Claude Agent SDK adapter on SQLite and PostgreSQL. The callback contract directly
(allow, allow with an edited input, deny with a message, repeats, a restart finding its task,
timeouts, the core's verification and an SDK verifier, bad input), and the real SDK running
its bundled CLI against a loopback fake of the Anthropic Messages API: the asking process is
SIGKILLed while it waits, the person allows an edited refund, a new process runs the agent
again and the refund happens exactly once (counted in a file)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic_messages  # tests/fakes, put on the path by claude_env
import claude_env  # noqa: F401
import pytest
from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny, ToolPermissionContext

from inloop import (
    Client,
    InvalidAnswer,
    InvalidArgument,
    Status,
    Task,
    VerificationRejected,
    verifiers,
)
from inloop.claude_agent import HumanPermissions, permission_key

HERE = Path(__file__).parent

REFUND = {"order_id": "A-1", "amount": 500}
TOOL = "mcp__shop__refund"


def ctx(tool_use_id: str = "toolu_1") -> ToolPermissionContext:
    return ToolPermissionContext(tool_use_id=tool_use_id)


async def pending(client: Client, n: int = 1, timeout: float = 30) -> list[Task]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.list(key_prefix="claude-agent:", status="pending")
        if len(page) >= n:
            return list(page)
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} pending permission tasks")


async def test_allow_with_an_edited_input(client: Client) -> None:
    ask = HumanPermissions("run-allow", client=client, notify=["slack:#ops"])
    call = asyncio.ensure_future(ask(TOOL, REFUND, ctx()))
    [task] = await pending(client)
    assert task.key == permission_key("run-allow", TOOL, REFUND, 0)
    assert task.title == f"Allow {TOOL}?" and task.notify == ["slack:#ops"]
    assert task.payload["tool"] == TOOL and task.payload["input"] == REFUND
    with pytest.raises(InvalidAnswer):  # not a decision the form offers
        await client.answer(task.id, {"behavior": "maybe"}, by="alice")
    edited = {"order_id": "A-1", "amount": 250}
    await client.answer(task.id, {"behavior": "allow", "updated_input": edited}, by="alice")
    result = await asyncio.wait_for(call, 10)
    assert result == PermissionResultAllow(updated_input=edited)


async def test_deny_with_a_message_and_tools_that_do_not_ask(client: Client) -> None:
    ask = HumanPermissions("run-deny", client=client, tools={TOOL})
    assert await ask("Read", {"file_path": "x"}, ctx()) == PermissionResultAllow()
    call = asyncio.ensure_future(ask(TOOL, REFUND, ctx()))
    [task] = await pending(client)
    answer = {"behavior": "deny", "message": "not eligible", "interrupt": True}
    await client.answer(task.id, answer, by="bob")
    result = await asyncio.wait_for(call, 10)
    assert result == PermissionResultDeny(message="not eligible", interrupt=True)


async def test_repeats_get_their_own_task_and_a_restart_finds_its_own(client: Client) -> None:
    ask = HumanPermissions("run-rep", client=client)
    first = await ask.request(TOOL, REFUND)
    second = await ask.request(TOOL, REFUND)
    assert first.id != second.id and second.payload["repeat"] == 1
    await client.answer(first.id, {"behavior": "allow"}, by="carol")
    # A new process (a new callback) asking the same first question gets the same task, with
    # its answer: the person is not asked twice and the decision is the one they gave.
    again = HumanPermissions("run-rep", client=client)
    assert await asyncio.wait_for(again(TOOL, REFUND, ctx("toolu_other")), 10) == (
        PermissionResultAllow()
    )
    assert len(await client.list(key_prefix="claude-agent:")) == 2


async def test_timeout_denies(client: Client) -> None:
    ask = HumanPermissions("run-t", client=client, timeout=0.3)
    result = await asyncio.wait_for(ask(TOOL, REFUND, ctx()), 10)
    assert isinstance(result, PermissionResultDeny) and "timed out" in result.message
    [task] = await client.list(key_prefix="claude-agent:")
    assert task.status is Status.TIMED_OUT


async def test_core_verification_and_sdk_verifier_send_answers_back(client: Client) -> None:
    rule = verifiers.Rule(
        name="a denial needs a message",
        when={"==": [{"var": "/answer/behavior"}, "deny"]},
        check={"nonempty": {"var": "/answer/message"}},
        message="say why",
    )

    def no_big_edits(payload: dict[str, Any], answer: dict[str, Any]) -> verifiers.Verdict:
        edited = answer.get("updated_input") or payload["input"]
        if edited["amount"] > 300 and answer["behavior"] == "allow":
            return verifiers.rejected("allow at most 300")
        return verifiers.passed()

    ask = HumanPermissions(
        "run-v",
        client=client,
        verification=verifiers.Verification(rules=[rule]),
        verifier=no_big_edits,
    )
    call = asyncio.ensure_future(ask(TOOL, REFUND, ctx()))
    [task] = await pending(client)
    with pytest.raises(VerificationRejected):
        await client.answer(task.id, {"behavior": "deny"}, by="dora")
    await client.answer(task.id, {"behavior": "allow"}, by="dora")  # 500: the verifier says no
    deadline = time.monotonic() + 10
    while not any(
        r["verifier"] == "sdk:no_big_edits" for r in (await client.get(task.id)).rejections
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert (await client.get(task.id)).status is Status.PENDING and not call.done()
    edited = {"order_id": "A-1", "amount": 300}
    await client.answer(task.id, {"behavior": "allow", "updated_input": edited}, by="dora")
    assert await asyncio.wait_for(call, 10) == PermissionResultAllow(updated_input=edited)


async def test_bad_input(client: Client) -> None:
    with pytest.raises(InvalidArgument):
        HumanPermissions("", client=client)
    with pytest.raises(InvalidArgument):
        await HumanPermissions("r", client=client).request(TOOL, ["not", "an", "object"])  # type: ignore[arg-type]


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[str]:
    server, url = anthropic_messages.serve()
    try:
        yield url
    finally:
        server.shutdown()


async def test_real_sdk_and_cli_resume_after_sigkill(
    client: Client, database_url: str, namespace: str, fake_api: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.jsonl"
    cmd = [sys.executable, str(HERE / "ca_child.py"), database_url, namespace, "ticket-1",
           fake_api, str(effects)]  # fmt: skip
    asker = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        [task] = await pending(client)
        assert task.payload["input"] == {"order_id": "A-1", "amount": 500}
        os.killpg(asker.pid, signal.SIGKILL)  # the agent and its CLI
        asker.wait(10)
        assert asker.returncode == -signal.SIGKILL
    finally:
        if asker.poll() is None:
            os.killpg(asker.pid, signal.SIGKILL)
    assert not effects.exists()
    edited = {"order_id": "A-1", "amount": 250}
    await client.answer(task.id, {"behavior": "allow", "updated_input": edited}, by="erin")
    out = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    texts = json.loads(out.stdout.strip().splitlines()[-1])["texts"]
    assert "Done: refunded 250 on A-1" in texts, texts
    assert [json.loads(x) for x in effects.read_text().splitlines()] == [
        {"order_id": "A-1", "amount": 250}
    ]
    assert len(await client.list(key_prefix="claude-agent:")) == 1  # asked once
