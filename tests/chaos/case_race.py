"""50 concurrent submitters on one task through two replicas (two `inloop serve` on one
database): exactly one answer is accepted, the other 49 get `Conflict` naming who answered
(the submitters' API key may see that) and the task holds the winner's answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from common import Figures, Server, check, create_key, p99
from inloop import Client, Conflict, InloopError, Status


async def run(backend: str, db_url: str, work: Path, rounds: int, submitters: int = 50) -> Figures:
    started = time.monotonic()
    ns = f"race-{uuid.uuid4().hex[:8]}"
    key = create_key(db_url, ns)
    replicas = [Server(db_url, work, f"race-{backend}-{i}") for i in range(2)]
    for r in replicas:
        r.start()
    # One client per submitter (its own connections), half on each replica.
    clients = [
        Client(url=replicas[i % 2].url, api_key=key, namespace=ns) for i in range(submitters)
    ]
    admin = Client(db_url, namespace=ns)
    accepted_total = told_total = wrong_by = errors = 0
    lat: list[float] = []
    schema = {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]}
    try:
        for r in range(rounds):
            task = await admin.create(f"Race {r}", payload={"r": r}, response=schema, key=f"r{r}")
            go = asyncio.Event()

            async def submit(
                i: int, task_id: str = task.id, go: asyncio.Event = go
            ) -> tuple[str, Any]:
                await go.wait()
                t0 = time.monotonic()
                try:
                    await clients[i].answer(task_id, {"who": f"s{i}"}, by=f"s{i}", channel="api")
                    return "accepted", f"s{i}"
                except Conflict as conflict:
                    return "conflict", conflict.details.get("by")
                except InloopError as err:
                    return "error", f"{err.code}: {err}"
                finally:
                    lat.append((time.monotonic() - t0) * 1000)

            # Warm every client's connection first, so the answers really race.
            await asyncio.gather(*(c.get(task.id) for c in clients))
            runs = [asyncio.create_task(submit(i)) for i in range(submitters)]
            await asyncio.sleep(0.05)
            go.set()
            results = await asyncio.gather(*runs)
            winners = [who for kind, who in results if kind == "accepted"]
            told = [who for kind, who in results if kind == "conflict"]
            errs = [who for kind, who in results if kind == "error"]
            errors += len(errs)
            check(not errs, f"round {r}: errors {errs[:3]}")
            check(len(winners) == 1, f"round {r}: {len(winners)} answers accepted")
            stored = await admin.get(task.id)
            check(stored.status is Status.COMPLETED, f"round {r}: task {stored.status}")
            check(stored.answered_by == winners[0], f"round {r}: stored {stored.answered_by}")
            check(stored.response == {"who": winners[0]}, f"round {r}: stored {stored.response}")
            wrong_by += sum(1 for who in told if who != winners[0])
            check(wrong_by == 0, f"round {r}: a Conflict named someone else than the winner")
            answered_rows = [e for e in await admin.audit(task.id) if e.kind == "answer_accepted"]
            check(len(answered_rows) == 1, f"round {r}: {len(answered_rows)} answered audit rows")
            accepted_total += len(winners)
            told_total += len(told)
    finally:
        for c in clients:
            await c.close()
        await admin.close()
        for s in replicas:
            s.stop()
    return Figures(
        case=f"{submitters} concurrent submitters, one task, two replicas",
        backend=backend,
        tried=rounds * submitters,
        duplicated=accepted_total - rounds,
        errors=errors,
        p99_ms=p99(lat),
        extra=(
            f"{rounds} rounds: {accepted_total} accepted, {told_total} told already answered "
            f"by the winner; p99 = one submit"
        ),
        seconds=time.monotonic() - started,
    )
