"""Claude Agent SDK adapter: a person allows or denies the agent's tool calls through inloop.

:class:`HumanPermissions` is a ``can_use_tool`` callback: every permission request becomes an
inloop task (key ``claude-agent:{run_id}:{digest of tool and input}:{repeat}``) with a typed
allow / deny form (an optional edited input and a message), and the callback returns the
SDK's ``PermissionResultAllow`` / ``PermissionResultDeny``. The wait is durable: if the process
dies while waiting, running the same agent again with the same ``run_id`` finds the same task
(answered meanwhile, or still pending) instead of asking again, so an allowed tool runs once.

Example::

    from claude_agent_sdk import ClaudeAgentOptions, query
    from inloop.claude_agent import HumanPermissions

    ask = HumanPermissions("ticket-4711", timeout=timedelta(hours=1), notify=["slack:#ops"])
    options = ClaudeAgentOptions(can_use_tool=ask, mcp_servers={"shop": shop})
    async for message in query(prompt=messages(), options=options):
        ...

Needs ``pip install 'inloop[claude-agent]'``. See docs/adapters.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

try:
    from claude_agent_sdk import (
        PermissionResultAllow,
        PermissionResultDeny,
        ToolPermissionContext,
    )
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "inloop.claude_agent needs the Claude Agent SDK: pip install 'inloop[claude-agent]'"
    ) from e

from ._adapters import args_digest, no_answer, wait_ended
from .client import Client, Timeout, default_client
from .errors import InvalidArgument
from .types import Status, Task
from .verifiers import Verification, Verifier

__all__ = ["HumanPermissions", "permission_key", "permission_result", "permission_schema"]

KEY_PREFIX = "claude-agent:"


def permission_key(run_id: str, tool_name: str, tool_input: dict[str, Any], repeat: int) -> str:
    """The idempotency key of the task for the ``repeat``-th request (0 first) of this tool
    with this input in the run ``run_id``.

    Example::

        permission_key("ticket-4711", "Bash", {"command": "ls"}, 0)
    """
    digest = args_digest({"tool": tool_name, "input": tool_input})
    return f"{KEY_PREFIX}{run_id}:{digest[:32]}:{repeat}"


def permission_schema(allow_edit: bool = True) -> dict[str, Any]:
    """The answer form: ``{"behavior": "allow", "updated_input"?: {...}, "message"?: str}`` or
    ``{"behavior": "deny", "message"?: str, "interrupt"?: bool}``. ``updated_input`` replaces
    the tool's input (offered when ``allow_edit``); a denial's message is what the model reads.

    Example::

        permission_schema()["oneOf"][1]["properties"]["behavior"]   # {"const": "deny"}
    """
    allow: dict[str, Any] = {"behavior": {"const": "allow"}, "message": {"type": "string"}}
    if allow_edit:
        allow["updated_input"] = {"type": "object", "title": "Edited input"}
    return {
        "oneOf": [
            {
                "type": "object",
                "title": "Allow",
                "properties": allow,
                "required": ["behavior"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "title": "Deny",
                "properties": {
                    "behavior": {"const": "deny"},
                    "message": {"type": "string", "maxLength": 10_000},
                    "interrupt": {"type": "boolean"},
                },
                "required": ["behavior"],
                "additionalProperties": False,
            },
        ]
    }


def permission_result(task: Task) -> PermissionResultAllow | PermissionResultDeny:
    """The SDK's permission result for an ended task: ``allow`` (with the edited input, if
    any) or ``deny`` with the person's message; a task that timed out, was cancelled or
    exhausted its verification denies, saying so: never a silent allow.

    Example::

        result = permission_result(await client.get(task_id))
    """
    if task.status is not Status.COMPLETED:
        return PermissionResultDeny(message=no_answer(task))
    answer = task.response
    if answer.get("behavior") == "allow":
        return PermissionResultAllow(updated_input=answer.get("updated_input"))
    return PermissionResultDeny(
        message=answer.get("message") or "A person denied this tool call.",
        interrupt=bool(answer.get("interrupt", False)),
    )


class HumanPermissions:
    """A ``can_use_tool`` callback that asks a person through inloop.

    ``run_id`` names the agent run (a ticket, an order): the same run asking for the same tool
    with the same input again (after a restart) finds the same task. ``tools``, if given, is
    the set of tool names that ask a person (the others are allowed without asking);
    ``timeout``, ``notify`` (channels), ``assign_to``, ``verification``
    (the core checks every answer) and ``verifier`` (``fn(payload, answer)``, run here; a
    rejection sends the answer back to the person) go to each task. ``title`` builds the
    task's title from the tool name and input.

    Example::

        ask = HumanPermissions("ticket-4711", tools={"mcp__shop__refund"},
                               timeout=timedelta(hours=1))
        options = ClaudeAgentOptions(can_use_tool=ask)
    """

    def __init__(
        self,
        run_id: str,
        *,
        client: Client | None = None,
        tools: set[str] | frozenset[str] | None = None,
        timeout: Timeout | None = None,
        notify: list[str] | None = None,
        assign_to: list[str] | None = None,
        verification: Verification | None = None,
        verifier: Verifier | None = None,
        allow_edit: bool = True,
        title: Callable[[str, dict[str, Any]], str] | None = None,
    ) -> None:
        if not isinstance(run_id, str) or not run_id.strip() or len(run_id) > 200:
            raise InvalidArgument(
                f"run_id must be a non-empty string of at most 200 characters, not {run_id!r}"
            )
        self.run_id = run_id
        self.client = client
        self.tools = None if tools is None else frozenset(tools)
        self.timeout = timeout
        self.notify = notify
        self.assign_to = assign_to
        self.verification = verification
        self.verifier = verifier
        self.allow_edit = allow_edit
        self.title = title or (lambda name, _input: f"Allow {name}?")
        self._seen: Counter[str] = Counter()
        self._lock = asyncio.Lock()

    async def request(self, tool_name: str, tool_input: dict[str, Any]) -> Task:
        """Creates (or finds) the task for this request; the next identical request in this
        run gets the next ``repeat``.

        Example::

            task = await ask.request("Bash", {"command": "rm -rf build"})
        """
        if not isinstance(tool_input, dict):
            raise InvalidArgument(f"tool input must be a JSON object, not {type(tool_input)}")
        async with self._lock:
            base = permission_key(self.run_id, tool_name, tool_input, 0).rsplit(":", 1)[0]
            repeat = self._seen[base]
            self._seen[base] += 1
        c = self.client or default_client()
        return await c.create(
            self.title(tool_name, tool_input),
            payload={
                "tool": tool_name,
                "input": tool_input,
                "input_digest": args_digest(tool_input),
                "run_id": self.run_id,
                "repeat": repeat,
            },
            response=permission_schema(self.allow_edit),
            key=permission_key(self.run_id, tool_name, tool_input, repeat),
            timeout=self.timeout,
            notify=self.notify,
            assign_to=self.assign_to,
            verification=self.verification,
        )

    async def __call__(
        self, tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        """The ``can_use_tool`` callback: asks, waits (push-woken) and returns the decision."""
        if self.tools is not None and tool_name not in self.tools:
            return PermissionResultAllow()
        task = await self.request(tool_name, tool_input)
        c = self.client or default_client()
        return permission_result(await wait_ended(c, task.id, self.verifier))
