"""A Pydantic AI agent whose refund tool needs a person's approval (durable deferred tools).

Run it, then answer from a second terminal:

    .venv/bin/inloop tasks list
    .venv/bin/inloop tasks answer ID '{"decision": "approve"}'
    #   or '{"decision": "deny", "message": "not eligible"}'
    #   or '{"decision": "edit", "args": {"order_id": "A-1", "amount": 250}}'

The model is scripted (FunctionModel: no API key needed); swap in a real one. The run ends with
DeferredToolRequests, inloop stores it with one task per call, and the agent resumes when the
task is answered: run the script again after killing it and it picks the run up by its id.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests

from inloop import NotFound
from inloop.pydantic_ai import PendingRun, needs_human, request_humans

RUN_ID = "refund-order-A-1"


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    if done:
        return ModelResponse(parts=[TextPart(f"Done: {done[-1].content}")])
    args = {"order_id": "A-1", "amount": 500.0}
    return ModelResponse(parts=[ToolCallPart("refund", json.dumps(args), tool_call_id="refund-1")])


agent: Agent[None, str | DeferredToolRequests] = Agent(
    FunctionModel(model), output_type=[str, DeferredToolRequests]
)


@agent.tool
@needs_human("Approve this refund?", when=lambda order_id, amount: amount > 100)
async def refund(ctx: RunContext[None], order_id: str, amount: float) -> str:
    """Refunds an order (amounts over 100 EUR need a person's approval)."""
    return f"refunded {amount} EUR on order {order_id}"


async def main() -> None:
    try:
        pending = await PendingRun.load(RUN_ID)
        print("agent: found the run waiting for a person; resuming it")
    except NotFound:
        result = await agent.run("Customer says parcel A-1 arrived broken; refund 500 EUR.")
        if not isinstance(result.output, DeferredToolRequests):
            print(f"agent: {result.output}")
            return
        pending = await request_humans(
            result, agent=agent, run_id=RUN_ID, timeout=timedelta(hours=4)
        )
        print("agent: the refund needs approval; answer it with")
        print("         .venv/bin/inloop tasks list")
        print("         .venv/bin/inloop tasks answer ID '{\"decision\": \"approve\"}'")
    done = await pending.resume(agent)
    print(f"agent: {done.output if done else 'another process already resumed this run'}")


if __name__ == "__main__":
    asyncio.run(main())
