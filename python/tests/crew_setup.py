"""A CrewAI crew for the adapter tests (imported by the tests and by child processes): a
scripted LLM (a ``BaseLLM`` subclass, no network) that asks a person with ``ask_human`` whether
to refund, refunds if the answer starts with "yes" and then gives its final answer; the review
of that answer (``human_input=True``) goes through inloop. Every refund is appended to EFFECTS
and, if ``INLOOP_TEST_EFFECTS`` names a file, to that file (one JSON line each, so a test counts
them across processes)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

from crewai import Agent, Crew, Task
from crewai.llms.base_llm import BaseLLM
from crewai.tools import BaseTool
from pydantic import BaseModel

from inloop import Client, once_sync
from inloop.crewai import HumanTool

EFFECTS: list[dict[str, Any]] = []
QUESTION = "Refund 500 EUR on order A-1?"
_STEP = re.compile(r"Action: (\S+)\s*\nAction Input: (\{.*?\})\s*\nObservation: (.*)", re.S)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


class ScriptedLLM(BaseLLM):  # type: ignore[misc]
    """Answers from the conversation so far, the same way in every process."""

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
        done: dict[str, str] = {}
        for m in msgs:
            if m.get("role") == "assistant":
                for action, _inp, obs in _STEP.findall(_text(m.get("content"))):
                    done[action] = obs.strip()
        feedback = [
            _text(m["content"]).split("\n")[0].removeprefix("User feedback: ")
            for m in msgs
            if _text(m.get("content")).startswith("User feedback:")
        ]
        if "ask_human" not in done:
            arg = json.dumps({"question": QUESTION})
            return f"Thought: I need a person\nAction: ask_human\nAction Input: {arg}"
        if done["ask_human"].lower().startswith("yes") and "refund" not in done:
            arg = json.dumps({"order_id": "A-1", "amount": 500})
            return f"Thought: approved\nAction: refund\nAction Input: {arg}"
        answer = done.get("refund") or f"No refund: {done['ask_human']}"
        if feedback:
            answer += " (" + "; ".join(feedback) + ")"
        return f"Thought: I now know the final answer\nFinal Answer: {answer}"

    def supports_function_calling(self) -> bool:
        return False


class RefundInput(BaseModel):
    order_id: str
    amount: float


class RefundTool(BaseTool):  # type: ignore[misc]
    """The side effect, at most once per run and order (``inloop.once_sync``): a rerun of the
    crew after a restart reaches it again and gets the recorded result."""

    name: str = "refund"
    description: str = "Refunds an order."
    args_schema: type[BaseModel] = RefundInput
    run_id: str
    client: Any = None

    def _run(self, order_id: str, amount: float) -> str:
        def pay() -> str:
            entry = {"effect": "refunded", "order_id": order_id, "amount": amount}
            EFFECTS.append(entry)
            path = os.environ.get("INLOOP_TEST_EFFECTS")
            if path:
                with open(path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
            return f"Refunded {amount} EUR on {order_id}"

        key = f"refund:{self.run_id}:{order_id}"
        return str(once_sync(key, pay, client=self.client))


def make_crew(
    run_id: str,
    client: Client,
    *,
    review: bool = True,
    timeout: float | None = None,
    **ask: Any,
) -> Crew:
    """The crew; ``ask`` goes to its ``HumanTool`` (``verification=``, ``verifier=``)."""
    llm = ScriptedLLM(model="scripted")
    agent = Agent(
        role="refund clerk",
        goal="Refund orders a person approves",
        backstory="Careful with money.",
        llm=llm,
        tools=[
            HumanTool(run_id=run_id, client=client, timeout=timeout, **ask),
            RefundTool(run_id=run_id, client=client),
        ],
        verbose=False,
        max_iter=8,
    )
    task = Task(
        name="refund-A-1",
        description="Refund order A-1 if a person approves it.",
        expected_output="What was done.",
        agent=agent,
        human_input=review,
    )
    return Crew(agents=[agent], tasks=[task], verbose=False)
