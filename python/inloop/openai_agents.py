"""OpenAI Agents SDK adapter: a person approves or rejects the tool calls that need approval.

Tools with ``needs_approval`` interrupt a run; each interruption becomes an inloop task (key
``openai-agents:{run_id}:{call_id}``) and the run's serialized ``RunState`` is stored in inloop,
so the process that asked may exit or die: any process resumes the run once people answered.

Example::

    from agents import Agent, function_tool
    from inloop import openai_agents

    @function_tool(needs_approval=True)
    def refund(order_id: str, amount: float) -> str: ...

    agent = Agent(name="refunds", tools=[refund])
    result = await openai_agents.run(agent, "Refund order A-1", run_id="order-A-1",
                                     timeout=timedelta(hours=4))
    print(result.final_output)
    # if that process died while waiting, any other one continues the run:
    result = await openai_agents.run(agent, None, run_id="order-A-1")

Needs ``pip install 'inloop[openai-agents]'``. See docs/adapters.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

try:
    from agents import Agent, Runner, RunResult, RunState
    from agents.items import ToolApprovalItem
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "inloop.openai_agents needs the OpenAI Agents SDK: pip install 'inloop[openai-agents]'"
    ) from e

from ._adapters import (
    ArgumentsChanged,
    already_resumed,
    args_digest,
    check_run_id,
    claim_stop,
    latest_record,
    no_answer,
    pending_record,
    runs_namespace,
    wait_all,
)
from .client import Client, Timeout, default_client
from .errors import InvalidArgument, NotFound
from .types import Status, Task
from .verifiers import Verification, Verifier

__all__ = [
    "ArgumentsChanged",
    "PendingRun",
    "approval_schema",
    "args_digest",
    "call_key",
    "decide",
    "record_key",
    "request_approvals",
    "run",
]

KEY_PREFIX = "openai-agents:"
RECORD_PREFIX = "openai-agents-run:"
_RECORD_SCHEMA: dict[str, Any] = {"type": "object"}


def call_key(run_id: str, call_id: str) -> str:
    """The idempotency key of the task for one tool call of one run.

    Example::

        call_key("order-A-1", "call_9")   # "openai-agents:order-A-1:call_9"
    """
    return f"{KEY_PREFIX}{run_id}:{call_id}"


def record_key(run_id: str, round: int) -> str:
    """The key of the record task holding the run's ``RunState`` for its ``round``-th stop.

    Example::

        record_key("order-A-1", 1)   # "openai-agents-run:order-A-1:1"
    """
    return f"{RECORD_PREFIX}{run_id}:{round}"


def approval_schema() -> dict[str, Any]:
    """The form of an approval: approve or reject, each with an optional reason. A rejection's
    reason is what the model reads as the tool's result.

    Example::

        approval_schema()["properties"]["decision"]   # {"enum": ["approve", "reject"], ...}
    """
    return {
        "type": "object",
        "properties": {
            "decision": {"enum": ["approve", "reject"], "title": "Decision"},
            "reason": {"type": "string", "maxLength": 10_000, "title": "Reason"},
        },
        "required": ["decision"],
        "additionalProperties": False,
    }


def _arguments(item: ToolApprovalItem) -> Any:
    raw = item.arguments
    if raw is None:
        return {}
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw  # not JSON: shown as the text the model produced


def _call_id(item: ToolApprovalItem) -> str:
    cid = item.call_id
    if not cid:
        raise InvalidArgument(f"the interruption for tool {item.tool_name!r} has no call id")
    return cid


def _request(run_id: str, item: ToolApprovalItem) -> tuple[str, dict[str, Any]]:
    args = _arguments(item)
    payload: dict[str, Any] = {
        "tool": item.tool_name or item.name,
        "args": args,
        "args_digest": args_digest(args),
        "call_id": _call_id(item),
        "agent": item.agent.name,
        "run_id": run_id,
    }
    return f"Approve {payload['tool']}?", payload


def decide(state: RunState[Any, Any], tasks: Mapping[str, Task]) -> None:
    """Applies ended tasks to the run's pending interruptions: an accepted ``approve`` approves
    the call, ``reject`` rejects it with the person's reason as the rejection message, and a
    task that ended without an answer (timed out, cancelled, verification exhausted) rejects it
    saying so: never a silent approval. Raises :class:`ArgumentsChanged` if a call's arguments
    are not the ones its task showed, :class:`inloop.NotFound` if an interruption has no task.

    Example::

        state = await RunState.from_string(agent, text)
        decide(state, {"call_9": await client.get(task_id)})
        result = await Runner.run(agent, state)
    """
    for item in state.get_interruptions():
        cid = _call_id(item)
        task = tasks.get(cid)
        if task is None:
            raise NotFound(f"no inloop task for the tool call {cid} ({item.tool_name})")
        args = _arguments(item)
        shown = task.payload.get("args_digest")
        if shown != args_digest(args) or task.payload.get("args") != args:
            raise ArgumentsChanged(
                f"tool call {cid} ({item.tool_name}) has other arguments than the ones task "
                f"{task.id} asked about; the decision does not apply",
                details={"task_id": task.id, "approved_digest": shown},
            )
        if task.status is Status.COMPLETED and task.response.get("decision") == "approve":
            state.approve(item)
        elif task.status is Status.COMPLETED:
            reason = task.response.get("reason") or "A person rejected this tool call."
            state.reject(item, rejection_message=reason)
        else:
            state.reject(item, rejection_message=no_answer(task))


@dataclass(frozen=True)
class PendingRun:
    """A run stopped on interruptions: its serialized ``RunState``, its round (1 for the first
    stop, 2 for the next, ...) and the inloop task of each call. Stored in a record task (key
    ``openai-agents-run:{run_id}:{round}``, namespace ``{namespace}.runs``), so any process can
    :meth:`load` it by run id.

    Example::

        pending = await PendingRun.load("order-A-1", client=client)
        result = await pending.resume(agent)
    """

    run_id: str
    round: int
    state: dict[str, Any]
    task_ids: dict[str, str]
    record_id: str
    client: Client

    async def tasks(self) -> dict[str, Task]:
        """The current state of each call's task, by call id."""
        return {cid: await self.client.get(tid) for cid, tid in self.task_ids.items()}

    async def wait(self, *, verifier: Verifier | None = None) -> dict[str, Task]:
        """Waits, push-woken, until every task ended (judging answers with ``verifier`` if
        given); returns them by call id."""
        ids = list(self.task_ids.items())
        ended = await wait_all(self.client, [tid for _, tid in ids], verifier)
        return {cid: t for (cid, _), t in zip(ids, ended, strict=True)}

    async def resume(
        self,
        agent: Agent[Any],
        *,
        wait: bool = True,
        verifier: Verifier | None = None,
        **run_kwargs: Any,
    ) -> RunResult | None:
        """Continues the run with the people's decisions: at most once across all processes.

        Waits for the tasks (``wait=False``: ``None`` while some are pending), claims this
        round (answers the record task: compare-and-set in the core, so a second resumer gets
        ``None``), applies the decisions (:func:`decide`) and calls ``Runner.run(agent, state,
        **run_kwargs)``. Claiming first means a crash during that run is not retried: approved
        tools never run twice. The result may stop on new interruptions: hand it to
        :func:`request_approvals` (:func:`run` does all of this in a loop).

        Example::

            pending = await PendingRun.load("order-A-1")
            result = await pending.resume(agent)
        """
        if wait:
            tasks = await self.wait(verifier=verifier)
        else:
            tasks = await self.tasks()
            if any(t.status is Status.PENDING for t in tasks.values()):
                return None
        state = await RunState.from_json(agent, self.state)
        decide(state, tasks)
        if not await claim_stop(self.client, self.record_id, "openai-agents"):
            return None
        return await Runner.run(agent, state, **run_kwargs)

    @classmethod
    async def load(
        cls,
        run_id: str,
        *,
        client: Client | None = None,
        record_namespace: str | None = None,
    ) -> PendingRun:
        """The newest stop of the run ``run_id`` that nobody resumed yet (from any process on
        the same database or server); :class:`inloop.NotFound` if there is none.

        Example::

            pending = await PendingRun.load("order-A-1", client=client)
        """
        c = client or default_client()
        found = await pending_record(c, record_key, run_id, record_namespace, "OpenAI Agents run")
        return cls._from_record(found, c)

    @classmethod
    def _from_record(cls, record: Task, client: Client) -> PendingRun:
        p = record.payload
        return cls(
            run_id=p["run_id"],
            round=p["round"],
            state=p["state"],
            task_ids=dict(p["tasks"]),
            record_id=record.id,
            client=client,
        )


async def request_approvals(
    result: RunResult,
    *,
    run_id: str,
    client: Client | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    verification: Verification | None = None,
    record_namespace: str | None = None,
) -> PendingRun:
    """Hands a run that stopped on interruptions to people: one task per tool call (key
    ``openai-agents:{run_id}:{call_id}``, an approve / reject form bound to the SHA-256 of the
    exact arguments shown) and a record of the serialized ``RunState`` so any process can
    resume it. ``timeout``, ``notify`` (channels), ``assign_to`` and ``verification`` (checked
    by the core on every answer) go to each task. Idempotent: asking again for the same stop
    returns the same tasks and record.

    Example::

        result = await Runner.run(agent, "Refund order A-1")
        if result.interruptions:
            pending = await request_approvals(result, run_id="order-A-1")
    """
    rid = check_run_id(run_id)
    if not result.interruptions:
        raise InvalidArgument("request_approvals() takes a run that stopped on interruptions")
    c = client or default_client()
    tasks: dict[str, Task] = {}
    for item in result.interruptions:
        title, payload = _request(rid, item)
        tasks[payload["call_id"]] = await c.create(
            title,
            payload=payload,
            response=approval_schema(),
            key=call_key(rid, payload["call_id"]),
            timeout=timeout,
            notify=notify,
            assign_to=assign_to,
            verification=verification,
        )
    task_ids = {cid: t.id for cid, t in tasks.items()}
    latest = await latest_record(c, record_key, rid, record_namespace)
    if latest is not None and latest.payload.get("tasks") == task_ids:
        return PendingRun._from_record(latest, c)  # this very stop, recorded before
    rnd = 1 if latest is None else int(latest.payload["round"]) + 1
    record = await c.create(
        "OpenAI Agents run waiting for people",
        payload={
            "run_id": rid,
            "round": rnd,
            "state": result.to_state().to_json(),
            "tasks": task_ids,
        },
        response=_RECORD_SCHEMA,
        key=record_key(rid, rnd),
        namespace=runs_namespace(c, record_namespace),
    )
    return PendingRun._from_record(record, c)


async def run(
    agent: Agent[Any],
    input: str | list[Any] | None,
    *,
    run_id: str,
    client: Client | None = None,
    timeout: Timeout | None = None,
    notify: list[str] | None = None,
    assign_to: list[str] | None = None,
    verification: Verification | None = None,
    verifier: Verifier | None = None,
    record_namespace: str | None = None,
    **run_kwargs: Any,
) -> RunResult | None:
    """Runs the agent until it ends, asking people through inloop whenever tools need approval.

    If the run ``run_id`` is waiting (it stopped earlier, in this process or one that exited or
    died), it continues from there and ``input`` is ignored (pass ``None``); if its last stop
    was already resumed it raises :class:`inloop.Conflict` (a new run needs a new ``run_id``);
    otherwise it starts with ``Runner.run(agent, input, **run_kwargs)``. At every stop on
    interruptions it calls :func:`request_approvals`, waits, push-woken, for the people's
    decisions (an answer the core's ``verification`` or your ``verifier(payload, answer)``
    rejects goes back to the person and the run keeps waiting) and resumes
    (:meth:`PendingRun.resume`). Returns the final ``RunResult``, or ``None`` if another
    process resumed this run meanwhile.

    Example::

        result = await run(agent, "Refund order A-1", run_id="order-A-1",
                           timeout=timedelta(hours=4), notify=["slack:#refunds"])
    """
    rid = check_run_id(run_id)
    c = client or default_client()
    latest = await latest_record(c, record_key, rid, record_namespace)
    result: RunResult | None
    if latest is not None and latest.status is Status.PENDING:
        result = await PendingRun._from_record(latest, c).resume(
            agent, verifier=verifier, **run_kwargs
        )
    elif latest is not None:
        raise already_resumed(latest, rid, "OpenAI Agents run")
    elif input is None:
        raise NotFound(f"no OpenAI Agents run {rid!r} is waiting, and no input to start one")
    else:
        result = await Runner.run(agent, input, **run_kwargs)
    while result is not None and result.interruptions:
        pending = await request_approvals(
            result,
            run_id=rid,
            client=c,
            timeout=timeout,
            notify=notify,
            assign_to=assign_to,
            verification=verification,
            record_namespace=record_namespace,
        )
        result = await pending.resume(agent, verifier=verifier, **run_kwargs)
    return result
