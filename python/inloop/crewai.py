"""CrewAI adapter: CrewAI's terminal ``input()`` for humans replaced by inloop tasks.

Two ways a crew asks a person, both durable by key:

- :class:`HumanTool`, a CrewAI ``BaseTool`` (``ask_human``) an agent calls with a question;
  the question becomes an inloop task (key ``crewai:{run_id}:ask:{digest of the question}:
  {repeat}``) and the person's answer is the tool's result.
- :class:`HumanReview`, a CrewAI ``HumanInputProvider`` for tasks with ``human_input=True``:
  each final answer of such a task becomes a review task (approve, or revise with feedback the
  agent reworks the answer from), instead of the prompt CrewAI prints in the terminal.

A crew does not checkpoint its progress: if the process dies while a person is asked, run the
crew again with the same ``run_id``. It reaches the same question (or the same answer to
review), finds the same task, answered meanwhile or still pending, and goes on: the person is
asked once. Side effects before the question run again on such a rerun: guard them with
:func:`inloop.once_sync`.

Example::

    from crewai import Agent, Crew, Task
    from inloop import crewai as inloop_crewai

    run_id = "refund-A-1"
    agent = Agent(role="refunds", goal="...", backstory="...", llm=llm,
                  tools=[inloop_crewai.HumanTool(run_id=run_id, timeout=timedelta(hours=4))])
    task = Task(description="Refund order A-1", expected_output="a summary", agent=agent,
                human_input=True)
    with inloop_crewai.HumanReview(run_id=run_id, notify=["slack:#refunds"]):
        result = Crew(agents=[agent], tasks=[task]).kickoff()

Needs ``pip install 'inloop[crewai]'`` (its pins conflict with other adapters': see
docs/adapters.md). See docs/adapters.md.
"""

from __future__ import annotations

from collections import Counter
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field, PrivateAttr

try:
    from crewai.core.providers.human_input import (
        HumanInputProvider,
        SyncHumanInputProvider,
        reset_provider,
        set_provider,
    )
    from crewai.tools import BaseTool
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("inloop.crewai needs CrewAI: pip install 'inloop[crewai]'") from e

from ._adapters import args_digest, check_run_id, wait_ended
from ._sync import run_sync
from .client import Client, Timeout, default_client
from .errors import InvalidArgument
from .types import Status, Task
from .verifiers import Verification, Verifier

if TYPE_CHECKING:
    from crewai.agents.parser import AgentFinish
    from crewai.core.providers.human_input import AsyncExecutorContext, ExecutorContext

__all__ = [
    "HumanReview",
    "HumanTool",
    "answer_schema",
    "ask_key",
    "review_key",
    "review_schema",
]

KEY_PREFIX = "crewai:"


def ask_key(run_id: str, question: str, repeat: int) -> str:
    """The idempotency key of the ``repeat``-th (0 first) identical question of the run.

    Example::

        ask_key("refund-A-1", "Which amount?", 0)   # "crewai:refund-A-1:ask:<24 hex>:0"
    """
    return f"{KEY_PREFIX}{run_id}:ask:{args_digest(question)[:24]}:{repeat}"


def review_key(run_id: str, task_ref: str, round: int, output: str) -> str:
    """The idempotency key of the review of one answer: the run, the CrewAI task (its name or
    a digest of its description), the review round (0 first) and a digest of the answer shown
    (another answer is another review).

    Example::

        review_key("refund-A-1", "summary", 0, "Refunded 500 EUR")
    """
    return f"{KEY_PREFIX}{run_id}:review:{task_ref}:{round}:{args_digest(output)[:16]}"


def answer_schema() -> dict[str, Any]:
    """The form of an ``ask_human`` question: a free-text answer.

    Example::

        answer_schema()["required"]   # ["answer"]
    """
    return {
        "type": "object",
        "properties": {"answer": {"type": "string", "minLength": 1, "title": "Answer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }


def review_schema() -> dict[str, Any]:
    """The form of a task review: approve the answer, or ask for a revision with feedback
    (required then, by the core's validation).

    Example::

        review_schema()["properties"]["decision"]   # {"enum": ["approve", "revise"], ...}
    """
    return {
        "type": "object",
        "properties": {
            "decision": {"enum": ["approve", "revise"], "title": "Decision"},
            "feedback": {"type": "string", "maxLength": 10_000, "title": "Feedback"},
        },
        "required": ["decision"],
        "if": {"properties": {"decision": {"const": "revise"}}},
        "then": {"required": ["feedback"], "properties": {"feedback": {"minLength": 1}}},
        "additionalProperties": False,
    }


class _Asking:
    """What the tool and the review share: the client, the task options and the wait."""

    def __init__(
        self,
        run_id: str,
        client: Client | None,
        timeout: Timeout | None,
        notify: list[str] | None,
        assign_to: list[str] | None,
        verification: Verification | None,
        verifier: Verifier | None,
    ) -> None:
        self.run_id = check_run_id(run_id)
        self.client = client or default_client()
        self.timeout = timeout
        self.notify = notify
        self.assign_to = assign_to
        self.verification = verification
        self.verifier = verifier

    async def ask(self, title: str, payload: dict[str, Any], form: Any, key: str) -> Task:
        task = await self.client.create(
            title,
            payload=payload,
            response=form,
            key=key,
            timeout=self.timeout,
            notify=self.notify,
            assign_to=self.assign_to,
            verification=self.verification,
        )
        if task.status is Status.PENDING:
            return await wait_ended(self.client, task.id, self.verifier)
        return task


class _AskInput(BaseModel):
    question: str = Field(description="The question for the person, with the context needed")


class HumanTool(BaseTool):  # type: ignore[misc]
    """A CrewAI tool (``ask_human``) that asks a person through inloop and returns the answer.

    Each question becomes a task, key ``crewai:{run_id}:ask:{digest of the question}:{repeat}``
    (``repeat`` counts identical questions in this tool's life, from 0), payload
    ``{"question", "run_id", "agent", "repeat"}``, form ``{"answer": string}``. The tool waits,
    push-woken, and returns the answer; a question that timed out, was cancelled or exhausted
    its verification returns a sentence saying nobody answered (the agent reads it; never an
    invented answer). Durable: a crew run again with the same ``run_id`` asking the same
    question finds the same task.

    Example::

        ask = HumanTool(run_id="refund-A-1", timeout=timedelta(hours=4), notify=["slack:#ops"])
        agent = Agent(role="refunds", goal="...", backstory="...", llm=llm, tools=[ask])
    """

    name: str = "ask_human"
    description: str = (
        "Ask a person a question and wait for their answer. Use it when you need a decision, "
        "a fact only a person knows, or an approval."
    )
    args_schema: type[BaseModel] = _AskInput
    run_id: str
    title: str = "A question from the crew"
    _asking: _Asking = PrivateAttr()
    _repeats: Counter[str] = PrivateAttr(default_factory=Counter)

    def __init__(
        self,
        *,
        run_id: str,
        client: Client | None = None,
        timeout: Timeout | None = None,
        notify: list[str] | None = None,
        assign_to: list[str] | None = None,
        verification: Verification | None = None,
        verifier: Verifier | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(run_id=check_run_id(run_id), **fields)
        self._asking = _Asking(run_id, client, timeout, notify, assign_to, verification, verifier)

    def ask(self, question: str, agent: str | None = None) -> Task:
        """Asks (or finds the task of) ``question`` and waits until it ended.

        Example::

            task = HumanTool(run_id="r-1").ask("Which amount?")
        """
        if not isinstance(question, str) or not question.strip():
            raise InvalidArgument("ask_human needs a non-empty question")
        repeat = self._repeats[question]
        self._repeats[question] += 1
        payload = {"question": question, "run_id": self.run_id, "agent": agent,
                   "repeat": repeat}  # fmt: skip
        key = ask_key(self.run_id, question, repeat)
        return run_sync(self._asking.ask(self.title, payload, answer_schema(), key))

    def _run(self, question: str) -> str:
        task = self.ask(question)
        if task.status is Status.COMPLETED:
            return str(task.response["answer"])
        why = task.status.value.replace("_", " ")
        return f"No answer from a person: the question {why}. Do not assume an answer."


def _task_ref(context: ExecutorContext) -> str:
    task = context.task
    if task is None:
        return "task"
    name = getattr(task, "name", None)
    if isinstance(name, str) and name.strip():
        return name.strip()[:80]
    return args_digest(str(task.description))[:16]


class HumanReview(SyncHumanInputProvider):  # type: ignore[misc]
    """A CrewAI ``HumanInputProvider``: the review of a ``human_input=True`` task goes to a
    person through inloop instead of the terminal.

    Each final answer becomes a task, key :func:`review_key`, payload ``{"task",
    "expected_output", "agent", "output", "round", "run_id"}``, form :func:`review_schema`:
    ``approve`` ends the review with that answer; ``revise`` with ``feedback`` gives the
    feedback to the agent (CrewAI's own feedback message), which answers again, and the new
    answer is reviewed in the next round. A review that timed out, was cancelled or exhausted
    its verification keeps the answer as it is (CrewAI's "no feedback"), and
    :attr:`unreviewed` lists it. Use it as a context manager (sets and resets CrewAI's
    provider for the current context) or call :meth:`install`.

    Example::

        with HumanReview(run_id="refund-A-1", timeout=timedelta(hours=1)):
            result = crew.kickoff()
    """

    def __init__(
        self,
        *,
        run_id: str,
        client: Client | None = None,
        timeout: Timeout | None = None,
        notify: list[str] | None = None,
        assign_to: list[str] | None = None,
        verification: Verification | None = None,
        verifier: Verifier | None = None,
        title: str = "Review the crew's answer",
    ) -> None:
        self._asking = _Asking(run_id, client, timeout, notify, assign_to, verification, verifier)
        self.title = title
        self.unreviewed: list[Task] = []
        self._token: Token[HumanInputProvider | None] | None = None

    @property
    def run_id(self) -> str:
        """The run this review belongs to (part of every key)."""
        return self._asking.run_id

    def install(self) -> Token[HumanInputProvider | None]:
        """Makes this CrewAI's human input provider in the current context; returns the
        token for ``crewai.core.providers.human_input.reset_provider``."""
        return cast("Token[HumanInputProvider | None]", set_provider(self))

    def __enter__(self) -> HumanReview:
        self._token = self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            reset_provider(self._token)
            self._token = None

    async def review(self, output: str, context: ExecutorContext, round: int) -> Task:
        """Asks (or finds) the review of ``output`` in ``round`` and waits until it ended.

        Example::

            task = await review.review("Refunded 500 EUR", context, 0)
        """
        task = context.task
        payload = {
            "task": None if task is None else str(task.description),
            "expected_output": None if task is None else str(task.expected_output),
            "agent": None if context.agent is None else str(context.agent.role),
            "output": output,
            "round": round,
            "run_id": self.run_id,
        }
        key = review_key(self.run_id, _task_ref(context), round, output)
        return await self._asking.ask(self.title, payload, review_schema(), key)

    def _feedback(self, task: Task) -> str:
        """CrewAI's convention: an empty feedback ends the review."""
        if task.status is not Status.COMPLETED:
            self.unreviewed.append(task)
            return ""
        if task.response.get("decision") == "approve":
            return ""
        return str(task.response.get("feedback") or "")

    def handle_feedback(self, formatted_answer: AgentFinish, context: ExecutorContext) -> Any:
        """CrewAI's synchronous review loop, answered through inloop."""
        answer = formatted_answer
        round = 0
        while True:
            task = run_sync(self.review(self._get_output_string(answer), context, round))
            feedback = self._feedback(task)
            if context._is_training_mode():
                return self._handle_training_feedback(answer, feedback or "ok", context)
            if not feedback.strip():
                context.ask_for_human_input = False
                return answer
            context.messages.append(context._format_feedback_message(feedback))
            answer = context._invoke_loop()
            round += 1

    async def handle_feedback_async(
        self, formatted_answer: AgentFinish, context: AsyncExecutorContext
    ) -> Any:
        """CrewAI's asynchronous review loop (``kickoff_async``), answered through inloop."""
        answer = formatted_answer
        round = 0
        while True:
            task = await self.review(self._get_output_string(answer), context, round)
            feedback = self._feedback(task)
            if context._is_training_mode():
                return await self._handle_training_feedback_async(answer, feedback or "ok", context)
            if not feedback.strip():
                context.ask_for_human_input = False
                return answer
            context.messages.append(context._format_feedback_message(feedback))
            answer = await context._ainvoke_loop()
            round += 1
