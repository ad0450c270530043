"""inloop for MCP, driven by the `mcp` package's own client and server over stdio (and one
streamable-HTTP run): ask_human answered from the CLI, a SIGKILLed server restarted with the
same key, bad schemas, and the elicitation bridge answered accept / decline / cancel."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from inloop import Client, Status
from inloop.mcp import elicitation_handler

HERE = Path(__file__).resolve().parent
INLOOP = shutil.which("inloop", path=str(Path(sys.executable).parent))
SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
    "required": ["approved"],
}


def env_for(database_url: str, namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INLOOP_")}
    env["INLOOP_DATABASE_URL"] = database_url
    env["INLOOP_NAMESPACE"] = namespace
    return env


@asynccontextmanager
async def session(
    command: list[str], env: dict[str, str], **kwargs: Any
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write, **kwargs) as s:
        await s.initialize()
        yield s


async def answer_with_cli(key: str, answer: Any, env: dict[str, str], tmp: Path) -> None:
    """The person answers by key from the `inloop` CLI, another process."""
    assert INLOOP, "the inloop console script is not installed next to this Python"
    proc = await asyncio.create_subprocess_exec(
        INLOOP, "tasks", "answer", "--key", key, json.dumps(answer), "--by", "alice",
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def pending(client: Client, key: str) -> str:
    for _ in range(300):
        tasks = await client.list(status="pending")
        for t in tasks:
            if t.key == key:
                return t.id
        await asyncio.sleep(0.05)
    raise AssertionError(f"no pending task with key {key}")


async def test_ask_human_answered_from_the_cli(
    database_url: str, namespace: str, client: Client, tmp_path: Path
) -> None:
    env = env_for(database_url, namespace)
    progress: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    async with session([sys.executable, "-m", "inloop.mcp"], env) as s:
        tools = await s.list_tools()
        assert [t.name for t in tools.tools] == ["ask_human"]
        call = asyncio.ensure_future(
            s.call_tool(
                "ask_human",
                {"title": "Ship it?", "payload": {"order": "A-1"}, "response_schema": SCHEMA,
                 "key": "ship-A-1", "notify": ["email:ops@example.com"], "timeout": 600},
                progress_callback=on_progress,
            )
        )  # fmt: skip
        await pending(client, "ship-A-1")
        await answer_with_cli("ship-A-1", {"approved": True, "note": "go"}, env, tmp_path)
        result = await asyncio.wait_for(call, 30)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["answer"] == {"approved": True, "note": "go"}
    assert result.structured_content["answered_by"] == "alice"
    assert json.loads(result.content[0].text) == {"approved": True, "note": "go"}  # type: ignore[union-attr]
    assert progress, "ask_human reported no progress while it waited"
    task = await client.get_by_key("ship-A-1")
    assert task.notify == ["email:ops@example.com"] and task.requested_by == "mcp"


async def test_killed_server_restarted_with_the_same_key_returns_the_same_answer(
    database_url: str, namespace: str, client: Client, tmp_path: Path
) -> None:
    """SIGKILL the MCP server while ask_human waits; the person answers; a new server with the
    same key returns that answer at once and no second task exists."""
    env = env_for(database_url, namespace)
    server = subprocess.Popen(
        [sys.executable, "-m", "inloop.mcp"], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stdin and server.stdout
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "ask_human", "arguments": {"title": "Refund?", "key": "refund-9",
                                               "response_schema": SCHEMA}}},
    ]  # fmt: skip
    server.stdin.write("".join(json.dumps(m) + "\n" for m in lines).encode())
    server.stdin.flush()
    first = await pending(client, "refund-9")
    server.send_signal(signal.SIGKILL)
    server.wait(10)
    await answer_with_cli("refund-9", {"approved": False}, env, tmp_path)
    async with session([sys.executable, "-m", "inloop.mcp"], env) as s:
        result = await s.call_tool(
            "ask_human", {"title": "Refund?", "key": "refund-9", "response_schema": SCHEMA}
        )
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["task_id"] == first
    assert result.structured_content["answer"] == {"approved": False}
    assert [t.id for t in await client.list() if t.key == "refund-9"] == [first]


async def test_bad_schema_timeout_and_cancel_are_tool_errors(
    database_url: str, namespace: str, client: Client
) -> None:
    env = env_for(database_url, namespace)
    async with session([sys.executable, "-m", "inloop.mcp"], env) as s:
        bad = await s.call_tool(
            "ask_human", {"title": "x", "response_schema": {"type": "no-such-type"}}
        )
        assert bad.is_error
        assert "InvalidSchema" in bad.content[0].text  # type: ignore[union-attr]
        late = await s.call_tool("ask_human", {"title": "x", "key": "late", "timeout": 0.2})
        assert late.is_error
        assert "TimedOut" in late.content[0].text  # type: ignore[union-attr]
        call = asyncio.ensure_future(s.call_tool("ask_human", {"title": "x", "key": "gone"}))
        await client.cancel(await pending(client, "gone"), by="bob", reason="not needed")
        gone = await asyncio.wait_for(call, 30)
        assert gone.is_error
        assert "Cancelled" in gone.content[0].text  # type: ignore[union-attr]
        assert "not needed" in gone.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("choice", ["accept", "decline", "cancel"])
async def test_elicitation_bridge(
    database_url: str, namespace: str, client: Client, choice: str
) -> None:
    """The `mcp` package's server elicits; the bridge makes it an inloop task; the person's
    choice (accept with content, decline) or a cancelled task comes back to the server."""
    bridge = elicitation_handler(client, timeout=600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INLOOP_")}
    command = [sys.executable, str(HERE / "mcp_elicit_server.py")]
    async with session(command, env, elicitation_callback=bridge) as s:
        call = asyncio.ensure_future(s.call_tool("ship", {}))
        for _ in range(300):
            tasks = await client.list(status="pending")
            if tasks:
                break
            await asyncio.sleep(0.05)
        (task,) = tasks
        assert task.title == "Where should we ship order A-1?"
        content_schema = task.response_schema["properties"]["content"]
        assert set(content_schema["properties"]) == {"address", "express"}
        if choice == "accept":
            answer = {"action": "accept", "content": {"address": "1 Main St", "express": True}}
            await client.answer(task.id, answer, by="alice")
        elif choice == "decline":
            await client.answer(task.id, {"action": "decline"}, by="alice")
        else:
            await client.cancel(task.id, by="alice")
        result = await asyncio.wait_for(call, 30)
    text = result.content[0].text  # type: ignore[union-attr]
    expected = {"accept": "accept 1 Main St express=True", "decline": "decline", "cancel": "cancel"}
    assert text == expected[choice]
    assert (await client.get(task.id)).status in (Status.COMPLETED, Status.CANCELLED)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_streamable_http(tmp_path: Path, namespace: str) -> None:
    url = f"sqlite://{tmp_path / 'inloop.db'}"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "inloop.mcp", "--db", url, "--namespace", namespace,
         "--transport", "http", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = Client(url, namespace=namespace)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        async with (
            streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            call = asyncio.ensure_future(
                s.call_tool("ask_human", {"title": "Deploy?", "key": "deploy-1"})
            )
            await client.answer(await pending(client, "deploy-1"), True, by="carol")
            result = await asyncio.wait_for(call, 30)
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert result.structured_content["answer"] is True
    finally:
        server.terminate()
        server.wait(10)
        await client.close()


def rust_inloop() -> str:
    """The Rust `inloop` binary: `$INLOOP_BIN`, else built (a no-op once `cargo test` ran)."""
    if os.environ.get("INLOOP_BIN"):
        return os.environ["INLOOP_BIN"]
    root = HERE.parent.parent
    target = os.environ.get("CARGO_TARGET_DIR", str(root / "target"))
    triple = os.environ.get("CARGO_BUILD_TARGET", "")
    subprocess.run(
        ["cargo", "build", "-q", "-p", "inloop-core", "--bin", "inloop"], cwd=root, check=True
    )
    return str(Path(target, triple, "debug", "inloop"))


@pytest.mark.parametrize("binary", ["rust", "console-script"])
async def test_the_rust_cli_runs_the_python_server(
    database_url: str, namespace: str, client: Client, binary: str
) -> None:
    """`inloop --database-url URL --namespace NS mcp` through the Rust CLI (the binary, or the
    console script, which hands anything but a leading `mcp` to it): the SDK's client lists the
    tools over stdio and ask_human creates its task in that database and namespace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INLOOP_")}
    if binary == "rust":
        env["INLOOP_PYTHON"] = sys.executable
        program = rust_inloop()
    else:
        assert INLOOP, "the inloop console script is not installed next to this Python"
        program = INLOOP
    command = [program, "--database-url", database_url, "--namespace", namespace, "mcp"]
    async with session(command, env) as s:
        tools = await s.list_tools()
        assert [t.name for t in tools.tools] == ["ask_human"]
        call = asyncio.ensure_future(s.call_tool("ask_human", {"title": "Go?", "key": "rust-1"}))
        await client.answer(await pending(client, "rust-1"), True, by="dana")
        result = await asyncio.wait_for(call, 30)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["answer"] is True
