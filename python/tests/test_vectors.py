"""The shared test vectors (tests/vectors/*.json) through the Python SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inloop import Client, Conflict, InloopError, Status
from inloop.errors import InvalidAnswer, InvalidPayload

VECTORS = sorted((Path(__file__).resolve().parents[2] / "tests" / "vectors").glob("*.json"))


def shape(e: InloopError) -> dict[str, Any]:
    paths = (
        sorted({f.path for f in e.errors}) if isinstance(e, InvalidAnswer | InvalidPayload) else []
    )
    return {"error": e.code, "paths": paths}


def test_vectors_exist() -> None:
    assert len(VECTORS) >= 5


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
async def test_vector(path: Path, tmp_path: Path) -> None:
    v = json.loads(path.read_text())
    client = Client(f"sqlite://{tmp_path / 'v.db'}", namespace="vectors")
    try:
        try:
            task = await client.create(
                v["title"],
                payload=v["payload"],
                response=v["response_schema"],
                key=v["name"],
                payload_schema=v["payload_schema"],
            )
        except InloopError as e:
            assert v["create"] != "ok", f"create failed: {e}"
            assert shape(e) == v["create"]
            return
        assert v["create"] == "ok"
        accepted = None
        for i, step in enumerate(v["answers"]):
            expect = step["expect"]
            try:
                done = await client.answer(task.id, step["answer"], by=f"person-{i}")
            except Conflict:
                assert expect == "conflict", f"answer {i}"
                continue
            except InloopError as e:
                assert shape(e) == expect, f"answer {i}"
                assert (await client.get(task.id)).status is Status.PENDING
                continue
            assert expect == "accepted", f"answer {i}"
            assert done.response == step["answer"]
            accepted = step["answer"]
        assert (await client.get(task.id)).response == accepted
    finally:
        await client.close()
