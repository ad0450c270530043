"""SIGKILL the waiting agent (Python direct, Python remote through `inloop serve`, TypeScript
direct), answer while it is down, re-run it with the same key: it gets that answer, and the
key names one task. Every fourth kill lands at a random moment around start-up and creation
(possibly before the task exists, possibly mid-transaction)."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

from common import (
    HERE,
    Figures,
    Server,
    check,
    create_key,
    node_agent,
    python_exe,
    read_json_lines,
)
from inloop import Client, Status


def spawn(lang: str, mode: str, target: str, ns: str, key: str, api_key: str | None):
    if lang == "ts":
        cmd = ["node", str(node_agent()), target, ns, key]
    else:
        cmd = [python_exe(), str(HERE / "agent.py"), mode, target, ns, key]
        if api_key:
            cmd.append(api_key)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def task_for(
    client: Client, key: str, proc: subprocess.Popen[str], timeout: float = 30
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the agent of key {key} exited: {out} {err}")
        page = await client.list(key_prefix=key)
        if page:
            return page[0].id
        await asyncio.sleep(0.01)
    raise AssertionError(f"the agent never created the task of key {key}")


async def run(backend: str, db_url: str, work: Path, lang: str, mode: str, kills: int) -> Figures:
    started = time.monotonic()
    ns = f"kill-{uuid.uuid4().hex[:8]}"
    server = None
    api_key = None
    target = db_url
    if mode == "remote":
        api_key = create_key(db_url, ns)
        server = Server(db_url, work, f"kill-{backend}")
        server.start()
        target = server.url
    human = Client(db_url, namespace=ns)
    rng = random.Random(13)
    lost = duplicated = errors = 0
    resume_ms: list[float] = []
    try:
        for i in range(kills):
            key = f"k{i}"
            proc = spawn(lang, mode, target, ns, key, api_key)
            if i % 4 == 3:
                await asyncio.sleep(rng.uniform(0.0, 0.6))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                page = await human.list(key_prefix=key)
                duplicated += max(0, len(page) - 1)
                if not page:  # killed before it asked: ask again, kill once it waits
                    proc = spawn(lang, mode, target, ns, key, api_key)
                    task_id = await task_for(human, key, proc)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                else:
                    task_id = page[0].id
            else:
                task_id = await task_for(human, key, proc)
                await asyncio.sleep(rng.uniform(0.0, 0.05))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            check(proc.returncode == -signal.SIGKILL, f"agent {key} was not SIGKILLed")
            check((await human.get(task_id)).status is Status.PENDING, f"{key} not pending")
            answer = {"approved": i % 2 == 0, "note": f"answer {i} while the agent was down"}
            await human.answer(task_id, answer, by="oncall")
            t0 = time.monotonic()
            rerun = spawn(lang, mode, target, ns, key, api_key)
            out, err = await asyncio.to_thread(rerun.communicate, timeout=60)
            resume_ms.append((time.monotonic() - t0) * 1000)
            lines = read_json_lines(out)
            got = lines[-1].get("decision") if lines else None
            if rerun.returncode != 0:
                errors += 1
                print(f"agent-kill {lang}/{mode}/{backend} {key}: exit {rerun.returncode}: {err}")
            if got != answer:
                lost += 1
                print(f"agent-kill {lang}/{mode}/{backend} {key}: got {got!r}, want {answer!r}")
            page = await human.list(key_prefix=key)
            duplicated += max(0, len(page) - 1)
            check([t.id for t in page] == [task_id], f"{key}: tasks {[t.id for t in page]}")
        total = await human.list(limit=1000)
        duplicated += max(0, len(total) - kills)
    finally:
        await human.close()
        if server:
            server.stop()
    label = {"py": "Python", "ts": "TypeScript"}[lang]
    fig = Figures(
        case=f"SIGKILL waiting agent ({label}, {mode})",
        backend=backend,
        tried=kills,
        lost=lost,
        duplicated=duplicated,
        errors=errors,
        p99_ms=None,
        extra=f"re-run to answer p99 {p99_or(resume_ms):.0f} ms (process start included)",
        seconds=time.monotonic() - started,
    )
    fig.ok = lost == 0 and duplicated == 0 and errors == 0
    return fig


def p99_or(samples: list[float]) -> float:
    from common import p99

    return p99(samples)
