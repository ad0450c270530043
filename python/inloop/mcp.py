"""inloop for MCP: ``inloop mcp``, an MCP server with an ``ask_human`` tool, and an elicitation
bridge for MCP clients. Needs the ``mcp`` package (``pip install mcp``, tested with 2.3.0).

The server (stdio by default; ``--transport http --listen 127.0.0.1:7071`` for streamable
HTTP) exposes one tool, ``ask_human``: it creates an inloop task (title, payload, response
schema, timeout, notify, key) in the core and waits for the person's answer, reporting
progress while it waits, and returns the validated answer as the tool result (structured
content and text). The same ``key`` after a restart returns the same task's answer::

    inloop mcp --db sqlite:.inloop/inloop.db            # or: python -m inloop.mcp

The bridge answers an MCP server's ``elicitation/create`` through inloop::

    from mcp import ClientSession
    from inloop.mcp import elicitation_handler

    session = ClientSession(read, write, elicitation_callback=elicitation_handler())
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from .client import Client, Timeout
from .errors import InloopError
from .types import Status, Task

__all__ = ["build_server", "elicitation_handler", "main"]

#: How often a waiting ``ask_human`` reports progress (seconds).
PROGRESS_EVERY = 5.0


def _result_text(task: Task) -> str:
    return json.dumps(task.response)


def build_server(client: Client | None = None) -> MCPServer[Any]:
    """The MCP server with the ``ask_human`` tool, backed by ``client`` (default: the
    configured database, see :class:`inloop.Client`).

    Example::

        from inloop import Client
        from inloop.mcp import build_server

        build_server(Client("sqlite:inloop.db")).run("stdio")
    """
    inloop = client or Client()
    server: MCPServer[Any] = MCPServer(
        "inloop",
        instructions="ask_human asks a person and waits for the typed answer.",
    )

    @server.tool(
        description=(
            "Ask a person and wait for the answer. `response_schema` is the JSON Schema the "
            "answer must match (default: a yes/no boolean); `key` makes the request "
            "idempotent (the same key returns the same task's answer); `timeout` is the "
            "deadline in seconds (default: none)."
        )
    )
    async def ask_human(
        title: str,
        ctx: Context,
        payload: Any = None,
        response_schema: dict[str, Any] | None = None,
        timeout: float | None = None,
        notify: list[str] | None = None,
        key: str | None = None,
    ) -> types.CallToolResult:
        try:
            task = await inloop.create(
                title,
                payload=payload if payload is not None else {},
                response=response_schema or {"type": "boolean"},
                key=key,
                timeout=timeout,
                notify=notify,
                requested_by="mcp",
            )
            waited = 0.0
            while task.status is Status.PENDING:
                await ctx.report_progress(waited, None, f"waiting for a person (task {task.id})")
                task = await inloop.wait(task.id, PROGRESS_EVERY)
                waited += PROGRESS_EVERY
        except InloopError as e:
            raise ToolError(f"{type(e).__name__}: {e}") from e
        if task.status is Status.TIMED_OUT:
            raise ToolError(f"TimedOut: nobody answered task {task.id} before its deadline")
        if task.status is Status.CANCELLED:
            reason = f": {task.cancel_reason}" if task.cancel_reason else ""
            raise ToolError(
                f"Cancelled: task {task.id} was cancelled by {task.cancelled_by}{reason}"
            )
        if task.status is not Status.COMPLETED:
            raise ToolError(f"{task.status}: task {task.id} ended without an answer")
        structured = {
            "task_id": task.id,
            "key": task.key,
            "answer": task.response,
            "answered_by": task.answered_by,
        }
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=_result_text(task))],
            structured_content=structured,
        )

    return server


ElicitationCallback = Callable[
    [Any, types.ElicitRequestParams], Awaitable[types.ElicitResult | types.ErrorData]
]


def elicitation_handler(
    client: Client | None = None,
    *,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    key: Callable[[types.ElicitRequestParams], str | None] | None = None,
) -> ElicitationCallback:
    """An ``elicitation_callback`` for the ``mcp`` package's ``ClientSession`` that asks a
    person through inloop.

    The server's message becomes the task title and its requested schema the answer's
    ``content``; the person answers ``{"action": "accept", "content": {...}}`` or
    ``{"action": "decline"}``. A cancelled or timed-out task returns ``cancel``. ``key``
    derives an idempotency key from the request (default: none, a new task each time).

    Example::

        session = ClientSession(read, write,
                                elicitation_callback=elicitation_handler(timeout=600))
    """
    inloop = client or Client()

    async def callback(
        context: Any, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        requested = getattr(params, "requested_schema", None)
        content_schema: dict[str, Any] = (
            dict(requested) if isinstance(requested, dict) else {"type": "object"}
        )
        payload: dict[str, Any] = {"message": params.message}
        url = getattr(params, "url", None)
        if url is not None:
            payload["url"] = url
        schema = {
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["accept", "decline"]},
                "content": content_schema,
            },
            "required": ["action"],
        }
        try:
            task = await inloop.create(
                params.message,
                payload=payload,
                response=schema,
                key=key(params) if key else None,
                timeout=timeout,
                notify=notify,
                requested_by="mcp-elicitation",
            )
            task = await inloop.wait(task.id)
        except InloopError as e:
            return types.ErrorData(code=types.INVALID_PARAMS, message=f"{type(e).__name__}: {e}")
        if task.status is not Status.COMPLETED:
            return types.ElicitResult(action="cancel")
        answer = task.response or {}
        if answer.get("action") == "accept":
            content = answer.get("content")
            return types.ElicitResult(action="accept", content=content if url is None else None)
        return types.ElicitResult(action="decline")

    return callback


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """``inloop mcp`` (also ``python -m inloop.mcp``): runs the MCP server."""
    parser = argparse.ArgumentParser(
        prog="inloop mcp", description="An MCP server with the ask_human tool."
    )
    parser.add_argument("--db", help="database URL (default: INLOOP_DATABASE_URL or .inloop/)")
    parser.add_argument(
        "--namespace", default=os.environ.get("INLOOP_NAMESPACE", "default"), help="task namespace"
    )
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument(
        "--listen", type=_listen, default=("127.0.0.1", 7071), help="HOST:PORT for http"
    )
    args = parser.parse_args(argv)
    server = build_server(Client(args.db, namespace=args.namespace))
    if args.transport == "stdio":
        server.run("stdio")
    else:
        host, port = args.listen
        server.run("streamable-http", host=host, port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
