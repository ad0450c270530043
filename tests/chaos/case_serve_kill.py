"""SIGKILL `inloop serve` again and again while 20 remote clients create and answer through it.

Guarantees checked afterwards, directly on the database:
- every key names exactly one task (creates retried with the same key after a kill);
- every answer is recorded whole or not at all: each task is either still pending or holds
  exactly the answer its client sent, by that client, with one `answered` audit row; clients
  retry an answer whose reply the kill swallowed, and a `Conflict` naming themselves is that
  earlier attempt having landed;
- every task's audit chain verifies (`Client.verify_audit`);
- every outbox row (webhook `task.created` and `task.ended`) reaches a loopback receiver that
  checks each signature, and every row arrives under one `webhook-id` only (a redelivery after
  a kill reuses the id: at least once, deduplicable to exactly once).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import Figures, Receiver, Server, check, create_key, p99, webhook_secret
from inloop import Client, Conflict, InloopError, Status

RETRYABLE = {"database"}  # the server is unreachable: the remote client says so


async def outbox_rows(db_url: str) -> list[tuple[str, str, str]]:
    """(task id, event, state) of every outbox row, read straight from the database."""
    sql = "SELECT task_id, event, state FROM inloop_outbox"
    if db_url.startswith("sqlite"):
        import sqlite3

        path = db_url.split("://", 1)[1].split("?")[0]
        with sqlite3.connect(path) as c:
            return [tuple(r) for r in c.execute(sql).fetchall()]  # type: ignore[misc]
    import psycopg

    async with await psycopg.AsyncConnection.connect(db_url) as c:
        cur = await c.execute(sql)
        return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]


async def run(backend: str, db_url: str, work: Path, kills: int, clients: int = 20) -> Figures:
    started = time.monotonic()
    ns = f"serve-{uuid.uuid4().hex[:8]}"
    secret = webhook_secret()
    receiver = Receiver(secret)
    hook = receiver.start()
    api_key = create_key(db_url, ns)
    server = Server(
        db_url, work, f"kill-{backend}",
        INLOOP_WEBHOOK_HOOK_URL=hook,
        INLOOP_WEBHOOK_HOOK_SECRET=secret,
        INLOOP_CHANNEL_LEASE_SECS="2",
        INLOOP_CHANNEL_POLL_MS="50",
        INLOOP_CHANNEL_RETRY_BASE_MS="100",
        INLOOP_CHANNEL_RETRY_MAX_SECS="1",
    )  # fmt: skip
    server.start()
    stop = asyncio.Event()
    sent: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (by, answer)
    retried = 0
    errors: list[str] = []
    cycle_ms: list[float] = []

    async def call(what: str, make: Any) -> Any:
        nonlocal retried
        deadline = time.monotonic() + 120
        while True:
            try:
                return await make()
            except Conflict:
                raise
            except InloopError as e:
                if e.code not in RETRYABLE or time.monotonic() > deadline:
                    errors.append(f"{what}: {e.code}: {e}")
                    raise
                retried += 1
                await asyncio.sleep(0.05)

    async def worker(w: int) -> None:
        c = Client(url=server.url, api_key=api_key, namespace=ns)
        by = f"client-{w}"
        j = 0
        try:
            while not stop.is_set():
                key = f"c{w}-{j}"
                j += 1
                answer = {"approved": j % 2 == 0, "note": f"{key} " + "x" * (j % 50)}
                t0 = time.monotonic()
                task = await call(
                    f"create {key}",
                    lambda key=key, j=j: c.create(
                        "Ship it?", payload={"key": key, "n": j}, key=key,
                        response={"type": "object", "properties": {
                            "approved": {"type": "boolean"}, "note": {"type": "string"}},
                            "required": ["approved"]},
                        notify=["webhook:hook"],
                    ),
                )  # fmt: skip
                sent[key] = (by, answer)
                try:
                    await call(
                        f"answer {key}",
                        lambda t=task, a=answer: c.answer(t.id, a, by=by, channel="api"),
                    )
                except Conflict as e:
                    if e.details.get("by") != by:
                        errors.append(f"answer {key}: conflict with {e.details}")
                cycle_ms.append((time.monotonic() - t0) * 1000)
        except InloopError:
            pass
        finally:
            await c.close()

    async def killer() -> None:
        rng = random.Random(7)
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.15, 0.6))
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            await asyncio.to_thread(server.start)
        await asyncio.sleep(0.3)
        stop.set()

    try:
        await asyncio.gather(killer(), *(worker(w) for w in range(clients)))
        check(not errors, f"errors reached callers: {errors[:5]}")
        human = Client(db_url, namespace=ns)
        try:
            tasks = []
            cursor = None
            while True:
                page = await human.list(limit=500, cursor=cursor)
                tasks.extend(page)
                cursor = page.next_cursor
                if not cursor:
                    break
            by_key: dict[str, list[Any]] = defaultdict(list)
            for t in tasks:
                by_key[t.key].append(t)
            duplicated = sum(len(v) - 1 for v in by_key.values())
            check(duplicated == 0, f"{duplicated} keys name more than one task")
            check(set(by_key) == set(sent), "tasks and the keys the clients used differ")
            torn = unverified = 0
            for key, (by, answer) in sent.items():
                t = by_key[key][0]
                events = await human.audit(t.id)
                answered = [e for e in events if e.kind == "answer_accepted"]
                if t.status is Status.COMPLETED:
                    ok = t.response == answer and t.answered_by == by and len(answered) == 1
                else:
                    ok = t.status is Status.PENDING and t.response is None and not answered
                if not ok:
                    torn += 1
                    if torn <= 3:
                        print(
                            f"serve-kill {key}: {t.status} {t.response!r} by {t.answered_by} "
                            f"(sent {answer!r} by {by}), audit {[e.kind for e in events]}"
                        )
                if not (await human.verify_audit(t.id)).ok:
                    unverified += 1
            check(torn == 0, f"{torn} answers not recorded whole")
            check(unverified == 0, f"{unverified} audit chains do not verify")
            completed = sum(1 for t in tasks if t.status is Status.COMPLETED)
            # Every outbox row delivered, each under exactly one id.
            expected = len(tasks) + completed
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with receiver.lock:
                    pairs = {(kind, tid) for _, kind, tid in receiver.arrivals}
                if len(pairs) >= expected:
                    break
                await asyncio.sleep(0.2)
            rows = await outbox_rows(db_url)
            ours = {t.id for t in tasks}
            rows = [r for r in rows if r[0] in ours]
            with receiver.lock:
                arrivals = list(receiver.arrivals)
            ids_of: dict[tuple[str, str], set[str]] = defaultdict(set)
            for wid, kind, tid in arrivals:
                ids_of[(kind, tid)].add(wid)
            undelivered = expected - len(ids_of)
            two_ids = sum(1 for v in ids_of.values() if len(v) > 1)
            distinct = sum(len(v) for v in ids_of.values())
            redelivered = len(arrivals) - distinct
            check(not receiver.bad, f"deliveries that did not verify: {receiver.bad[:3]}")
            check(len(rows) == expected, f"{len(rows)} outbox rows, expected {expected}")
            check(all(r[2] == "done" for r in rows), "outbox rows not done")
            check(undelivered == 0, f"{undelivered} outbox rows never delivered")
            check(two_ids == 0, f"{two_ids} outbox rows delivered under more than one id")
        finally:
            await human.close()
    finally:
        server.stop()
        receiver.stop()
    fig = Figures(
        case="SIGKILL `inloop serve` under 20 clients",
        backend=backend,
        tried=kills,
        lost=undelivered + torn,
        duplicated=duplicated + two_ids,
        errors=len(errors),
        p99_ms=p99(cycle_ms),
        extra=(
            f"{len(tasks)} tasks, {completed} answered, {len(rows)} outbox rows delivered "
            f"({redelivered} same-id redeliveries), {retried} retried calls, audit chains ok"
        ),
        seconds=time.monotonic() - started,
    )
    return fig
