"""A process that runs a CrewAI crew through inloop:
`python crew_child.py <inloop-url> <namespace> <run-id>`; prints one JSON line with the
crew's final output (or the error) when it ends."""

from __future__ import annotations

import json
import sys

from crew_setup import EFFECTS, make_crew

from inloop import Client, InloopError
from inloop.crewai import HumanReview


def main() -> None:
    url, namespace, run_id = sys.argv[1:4]
    client = Client(url, namespace=namespace)
    try:
        with HumanReview(run_id=run_id, client=client):
            out: dict[str, object] = {"output": make_crew(run_id, client).kickoff().raw}
    except InloopError as e:
        out = {"error": type(e).__name__, "message": e.message}
    print(json.dumps({**out, "effects": EFFECTS}), flush=True)


main()
