"""A CrewAI crew that asks a person through inloop: an `ask_human` tool for the approval and
the review of the task's answer (`human_input=True`) instead of CrewAI's terminal prompt.

Run it (in the CrewAI environment: `scripts/test-crewai.sh` makes `.venv-crewai`), then answer
from a second terminal:

    .venv/bin/inloop tasks list
    .venv/bin/inloop tasks answer ID '{"answer": "yes"}'          # the question
    .venv/bin/inloop tasks answer ID '{"decision": "approve"}'    # the review
    #   or '{"decision": "revise", "feedback": "mention the order"}'

The LLM is scripted (a CrewAI BaseLLM subclass, no API key needed); swap in a real one. Kill the
script while it waits and run it again: the crew reaches the same question, finds the same task
and goes on, and the refund (behind inloop.once_sync) happens once.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from typing import Any

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

from crewai import Agent, Crew, Task
from crewai.llms.base_llm import BaseLLM
from crewai.tools import BaseTool
from pydantic import BaseModel

from inloop import once_sync
from inloop.crewai import HumanReview, HumanTool

RUN_ID = "refund-order-A-1"
_STEP = re.compile(r"Action: (\S+)\s*\nAction Input: (\{.*?\})\s*\nObservation: (.*)", re.S)


class ScriptedLLM(BaseLLM):
    """Asks, refunds on a "yes", then answers (with the reviewer's feedback, if any)."""

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
        texts = [(m.get("role"), str(m.get("content"))) for m in msgs]
        done = {a: o.strip() for r, t in texts if r == "assistant" for a, _, o in _STEP.findall(t)}
        if "ask_human" not in done:
            q = json.dumps({"question": "Refund 500 EUR on order A-1 (parcel arrived broken)?"})
            return f"Thought: a person decides\nAction: ask_human\nAction Input: {q}"
        if done["ask_human"].lower().startswith("yes") and "refund" not in done:
            args = json.dumps({"order_id": "A-1", "amount": 500})
            return f"Thought: approved\nAction: refund\nAction Input: {args}"
        answer = done.get("refund") or f"No refund: {done['ask_human']}"
        notes = [t.split("\n")[0][len("User feedback: ") :] for _, t in texts
                 if t.startswith("User feedback:")]  # fmt: skip
        return "Final Answer: " + answer + (f" ({'; '.join(notes)})" if notes else "")

    def supports_function_calling(self) -> bool:
        return False


class RefundInput(BaseModel):
    order_id: str
    amount: float


class Refund(BaseTool):
    name: str = "refund"
    description: str = "Refunds an order."
    args_schema: type[BaseModel] = RefundInput

    def _run(self, order_id: str, amount: float) -> str:
        def pay() -> str:
            return f"Refunded {amount} EUR on order {order_id}"  # your payment call here

        return str(once_sync(f"refund:{RUN_ID}:{order_id}", pay))


def main() -> None:
    print("agent: refunding order A-1; a person answers with")
    print("         .venv/bin/inloop tasks list")
    print('         .venv/bin/inloop tasks answer ID \'{"answer": "yes"}\'', flush=True)
    agent = Agent(
        role="refund clerk",
        goal="Refund orders a person approves",
        backstory="Careful with money.",
        llm=ScriptedLLM(model="scripted"),
        tools=[HumanTool(run_id=RUN_ID, timeout=timedelta(hours=4)), Refund()],
        verbose=False,
    )
    task = Task(
        name="refund-A-1",
        description="Refund order A-1 if a person approves it.",
        expected_output="What was done.",
        agent=agent,
        human_input=True,
    )
    with HumanReview(run_id=RUN_ID, timeout=timedelta(hours=4)):
        result = Crew(agents=[agent], tasks=[task], verbose=False).kickoff()
    print(f"agent: {result.raw}")


if __name__ == "__main__":
    main()
