"""An OpenAI Agents SDK agent whose refund tool needs a person's approval (`needs_approval`).

Run it, then answer from a second terminal:

    .venv/bin/inloop tasks list
    .venv/bin/inloop tasks answer ID '{"decision": "approve"}'
    #   or '{"decision": "reject", "reason": "not eligible"}'   (the model reads the reason)

The model is the SDK's ScriptedModel (no API key needed); swap in a real one. The run stops on
the approval, inloop stores its RunState with one task per call, and the run goes on when the
task is answered: kill the script while it waits and run it again, and it picks the run up by
its id.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from agents import Agent, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

from inloop import openai_agents

RUN_ID = "refund-order-A-1"
set_tracing_disabled(True)


def scripted(call: ModelCall) -> Any:
    items = call.input if isinstance(call.input, list) else []
    done = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    if done:
        return [assistant_message(f"Done: {done[-1]['output']}")]
    args = {"order_id": "A-1", "amount": 500.0}
    return [function_call("refund", json.dumps(args), call_id="refund-1")]


@function_tool(needs_approval=True)
def refund(order_id: str, amount: float) -> str:
    """Refunds an order (a person approves every refund)."""
    return f"refunded {amount} EUR on order {order_id}"


agent = Agent(
    name="refunds",
    model=ScriptedModel([ModelStep.respond(scripted) for _ in range(4)]),
    tools=[refund],
)


async def main() -> None:
    print("agent: refunding order A-1; a person approves it with")
    print("         .venv/bin/inloop tasks list")
    print('         .venv/bin/inloop tasks answer ID \'{"decision": "approve"}\'', flush=True)
    result = await openai_agents.run(
        agent,
        "Customer says parcel A-1 arrived broken; refund 500 EUR.",
        run_id=RUN_ID,
        timeout=timedelta(hours=4),
    )
    print(f"agent: {result.final_output if result else 'another process resumed this run'}")


if __name__ == "__main__":
    asyncio.run(main())
