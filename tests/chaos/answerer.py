"""Answers given tasks from a process of its own, retrying while the database is down.

    python answerer.py DATABASE_URL NAMESPACE IDS_FILE

Waits for a line on stdin, then answers every id in IDS_FILE (one a line) with
`{"approved": true, "note": ID}` as `answerer`, 20 at a time, retrying each while the database
does not answer (up to 120 s). Prints one JSON line: how many it answered, the errors that
were not the database being away, and when (Unix seconds) the first answer landed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from inloop import Client, InloopError


async def main(url: str, namespace: str, ids_file: str) -> None:
    ids = [line.strip() for line in open(ids_file) if line.strip()]
    client = Client(url, namespace=namespace)
    await client.list(limit=1)  # open (and migrate) before the signal
    print(json.dumps({"event": "ready"}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    sem = asyncio.Semaphore(20)
    answered = 0
    retries = 0
    errors: list[str] = []
    first: float | None = None

    async def one(task_id: str) -> None:
        nonlocal answered, retries, first
        deadline = time.monotonic() + 120
        async with sem:
            while True:
                try:
                    await client.answer(task_id, {"approved": True, "note": task_id}, by="answerer")
                    answered += 1
                    first = first or time.time()
                    return
                except InloopError as e:
                    if e.code == "database" and time.monotonic() < deadline:
                        retries += 1
                        await asyncio.sleep(0.02)
                        continue
                    errors.append(f"{task_id}: {e.code}: {e}")
                    return

    await asyncio.gather(*(one(i) for i in ids))
    print(
        json.dumps(
            {"event": "done", "answered": answered, "retries": retries, "errors": errors,
             "first_at": first}
        ),
        flush=True,
    )  # fmt: skip
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
