"""An OpenAI Agents SDK agent for the adapter tests (imported by the tests and by child
processes): the SDK's own ScriptedModel (no network) whose responder calls the tools named in
the prompt, round by round, then reports what the tools returned. Every refund that runs is
appended to EXECUTED and, if ``INLOOP_TEST_EFFECTS`` names a file, to that file (one JSON line
per side effect, so a test counts them across processes)."""

from __future__ import annotations

import json
import os
from typing import Any

from agents import Agent, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

set_tracing_disabled(True)
EXECUTED: list[dict[str, Any]] = []


def _items(call: ModelCall) -> list[dict[str, Any]]:
    return [i for i in call.input if isinstance(i, dict)] if isinstance(call.input, list) else []


def responder(call: ModelCall) -> Any:
    items = _items(call)
    done = {i["call_id"]: i["output"] for i in items if i.get("type") == "function_call_output"}
    # The prompt is a JSON list of rounds, each a list of [tool_name, args, call_id].
    prompt = next(str(i["content"]) for i in items if i.get("role") == "user")
    for round_calls in json.loads(prompt):
        if not all(cid in done for _, _, cid in round_calls):
            return [function_call(n, a, call_id=cid) for n, a, cid in round_calls]
    return [assistant_message("; ".join(str(v) for v in done.values()))]


async def over_100(_ctx: Any, args: dict[str, Any], _call_id: str) -> bool:
    return bool(args["amount"] > 100)


def make_agent() -> Agent[Any]:
    @function_tool(needs_approval=over_100)
    def refund(order_id: str, amount: float) -> str:
        """Refunds an order."""
        effect = {"order_id": order_id, "amount": amount}
        EXECUTED.append(effect)
        path = os.environ.get("INLOOP_TEST_EFFECTS")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(effect) + "\n")
        return f"refunded {amount} on {order_id}"

    model = ScriptedModel([ModelStep.respond(responder) for _ in range(20)])
    return Agent(name="refunds", model=model, tools=[refund])


def prompt(*rounds: list[tuple[str, dict[str, Any], str]]) -> str:
    return json.dumps([[list(c) for c in r] for r in rounds])
