"""A LangGraph agent process for the cross-process tests:
`python lg_agent.py <inloop-url> <namespace> <thread-id>`.

Runs the single-question graph with inloop.langgraph.invoke (waits in this process) on a real
checkpointer next to the inloop database, and prints one JSON line with the final state.
"""

from __future__ import annotations

import json
import sys

from lg_graphs import checkpointer, single

from inloop import Client
from inloop.langgraph import invoke

url, namespace, thread_id = sys.argv[1:4]
client = Client(url, namespace=namespace)
calls: list[str] = []
with checkpointer(url) as saver:
    print(json.dumps({"event": "started"}), flush=True)
    out = invoke(
        single(saver, calls),
        {"order_id": "A-1", "amount": 500.0},
        {"configurable": {"thread_id": thread_id}},
        client=client,
    )
    print(json.dumps({"event": "done", "state": out.value, "calls": calls}), flush=True)
