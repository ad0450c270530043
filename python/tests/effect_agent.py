"""A process that runs one exactly-once effect, for the crash tests of ``once``.

    python effect_agent.py MODE LOG NAMESPACE KEY DATABASE_URL [SERVER_URL API_KEY]

The effect appends a line to LOG (the side effect the tests count) and returns how many lines
LOG has. MODE:
  run                  once(KEY, effect); prints {"event": "result", "result": ...} or
                       {"event": "error", "code", "details"}
  hang                 the effect appends, prints {"event": "inside"} and sleeps: the test
                       SIGKILLs the process inside the effect
  kill-after-record    SIGKILLs itself right after the result was recorded, before once returns
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import inloop
from inloop import Client, InloopError, _effects, once


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


async def main(mode: str, log: Path, namespace: str, key: str, url: str, remote: list[str]) -> None:
    if remote:
        client = Client(namespace=namespace, url=remote[0], api_key=remote[1])
    else:
        client = Client(url, namespace=namespace)

    def effect() -> dict[str, int]:
        with log.open("a") as f:
            f.write(f"{os.getpid()}\n")
            f.flush()
            os.fsync(f.fileno())
        if mode == "hang":
            emit({"event": "inside", "pid": os.getpid()})
            time.sleep(60)
        return {"lines": len(log.read_text().splitlines())}

    if mode == "kill-after-record":
        original = _effects._record

        async def record_then_die(*args: Any) -> Any:
            await original(*args)
            emit({"event": "recorded"})
            os.kill(os.getpid(), signal.SIGKILL)

        _effects._record = record_then_die  # type: ignore[assignment]

    try:
        result = await once(key, effect, client=client)
        emit({"event": "result", "result": result, "pid": os.getpid()})
    except InloopError as e:
        emit({"event": "error", "code": e.code, "details": e.details, "message": str(e)})
    finally:
        await client.close()


if __name__ == "__main__":
    assert inloop.once is once
    mode, log, namespace, key, url, *remote = sys.argv[1:]
    asyncio.run(main(mode, Path(log), namespace, key, url, remote))
