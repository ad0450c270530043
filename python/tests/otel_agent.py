"""An agent traced with OpenTelemetry: inside its own span "agent-step", it asks with
``await_human`` (the embedded engine) and answers itself from a second client, then exits
(the atexit hook flushes inloop's spans). Prints the agent span's ids as JSON.

Usage: otel_agent.py DATABASE_URL KEY [explicit]
``explicit`` passes ``traceparent=`` instead of relying on the current span.
"""

from __future__ import annotations

import asyncio
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from inloop import Client, await_human

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("otel-agent")


async def main(url: str, key: str, explicit: bool) -> None:
    asker = Client(url)
    answerer = Client(url)
    with tracer.start_as_current_span("agent-step") as span:
        ctx = span.get_span_context()
        tp = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"

        async def answer() -> None:
            while not (page := await answerer.list(key_prefix=key)):
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # the wait shows in the trace
            await answerer.answer(page[0].id, {"approved": True}, by="alice")

        answering = asyncio.create_task(answer())
        if explicit:
            # Outside any span: the explicit argument is what carries the context.
            with trace.use_span(trace.INVALID_SPAN):
                out = await await_human(
                    "Approve?",
                    payload={"order": key},
                    response={
                        "type": "object",
                        "properties": {"approved": {"type": "boolean"}},
                        "required": ["approved"],
                    },
                    key=key,
                    client=asker,
                    traceparent=tp,
                )
        else:
            out = await await_human(
                "Approve?",
                payload={"order": key},
                response={
                    "type": "object",
                    "properties": {"approved": {"type": "boolean"}},
                    "required": ["approved"],
                },
                key=key,
                client=asker,
            )
        await answering
    task = await asker.get_by_key(key)
    print(
        json.dumps(
            {
                "answer": out,
                "task_id": task.id,
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "explicit"))
