"""await_human end to end, on both backends."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from pydantic import BaseModel, Field

from inloop import (
    Cancelled,
    Client,
    Conflict,
    InvalidAnswer,
    InvalidArgument,
    InvalidSchema,
    KeyReused,
    NotFound,
    Status,
    TimedOut,
    TooLarge,
    await_human,
    await_human_sync,
)


class Refund(BaseModel):
    order_id: str
    amount: float


class Decision(BaseModel):
    approved: bool
    note: str | None = None


class Rated(BaseModel):
    score: int = Field(ge=1, le=5)
    tags: list[str] = []


async def first_pending(c: Client) -> str:
    for _ in range(500):
        page = await c.list(status="pending")
        if page:
            return page[0].id
        await asyncio.sleep(0.01)
    raise AssertionError("no pending task appeared")


async def test_typed_roundtrip_answered_from_another_client(client: Client, other: Client) -> None:
    async def human() -> None:
        task_id = await first_pending(other)
        await other.answer(task_id, {"approved": True}, by="alice@example.com")

    h = asyncio.create_task(human())
    decision = await asyncio.wait_for(
        await_human(
            "Approve this refund?",
            payload=Refund(order_id="A-1", amount=500.0),
            response=Decision,
            key="refund-A-1",
            timeout=timedelta(hours=4),
            client=client,
        ),
        timeout=10,
    )
    await h
    assert isinstance(decision, Decision)
    assert decision == Decision(approved=True, note=None)
    task = (await client.list())[0]
    assert task.status is Status.COMPLETED
    assert task.answered_by == "alice@example.com"
    assert task.payload == {"order_id": "A-1", "amount": 500.0}
    assert task.payload_schema is not None and task.deadline is not None


async def test_json_schema_response_returns_json(client: Client, other: Client) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

    async def human() -> None:
        await other.answer(await first_pending(other), {"ok": False}, by="bob")

    h = asyncio.create_task(human())
    out = await asyncio.wait_for(
        await_human("Ship it?", payload={"build": 7}, response=schema, client=client), 10
    )
    await h
    assert out == {"ok": False}


async def test_defaults_are_optional_for_the_human_and_filled_in(
    client: Client, other: Client
) -> None:
    async def human() -> None:
        await other.answer(await first_pending(other), {"score": 4}, by="bob")

    h = asyncio.create_task(human())
    out = await asyncio.wait_for(
        await_human("Rate it", payload={}, response=Rated, client=client), 10
    )
    await h
    assert out == Rated(score=4, tags=[])


async def test_same_key_same_task_and_reused_key_is_an_error(client: Client) -> None:
    a = await client.create("Approve?", payload={"n": 1}, response=Decision, key="k1")
    b = await client.create("Approve?", payload={"n": 1}, response=Decision, key="k1")
    assert a.id == b.id
    assert (a.created, b.created) == (True, False)
    with pytest.raises(KeyReused) as e:
        await client.create("Approve?", payload={"n": 2}, response=Decision, key="k1")
    assert e.value.code == "key_reused"
    assert e.value.details["existing_task"] == a.id
    assert len(await client.list()) == 1


async def test_invalid_answer_has_field_errors_and_leaves_task_pending(client: Client) -> None:
    t = await client.create("Rate", payload={}, response=Rated)
    with pytest.raises(InvalidAnswer) as e:
        await client.answer(t.id, {"score": 9, "tags": "x"}, by="bob")
    paths = sorted(err.path for err in e.value.errors)
    assert paths == ["/score", "/tags"]
    assert (await client.get(t.id)).status is Status.PENDING
    kinds = [ev.kind for ev in await client.audit(t.id)]
    assert kinds == ["created", "answer_refused"]
    done = await client.answer(t.id, Rated(score=5), by="bob")
    assert done.status is Status.COMPLETED and done.response == {"score": 5, "tags": []}


async def test_second_answer_is_a_conflict_naming_the_first(client: Client, other: Client) -> None:
    t = await client.create("Approve?", payload={}, response=Decision)
    await client.answer(t.id, {"approved": True}, by="alice")
    with pytest.raises(Conflict) as e:
        await other.answer(t.id, {"approved": False}, by="mallory")
    assert "alice" in str(e.value)
    assert e.value.details["by"] == "alice" and e.value.details["status"] == "completed"
    assert (await client.get(t.id)).response == {"approved": True}


async def test_timeout_raises_and_late_answer_is_refused(client: Client) -> None:
    with pytest.raises(TimedOut) as e:
        await asyncio.wait_for(
            await_human(
                "Quick?", payload={}, response=Decision, key="q", timeout=0.3, client=client
            ),
            10,
        )
    assert e.value.code == "timed_out"
    t = (await client.list())[0]
    assert t.status is Status.TIMED_OUT
    with pytest.raises(Conflict) as late:
        await client.answer(t.id, {"approved": True}, by="slowpoke")
    assert "timed out" in str(late.value)
    kinds = [ev.kind for ev in await client.audit(t.id)]
    assert kinds == ["created", "timed_out", "answer_refused"]
    # Re-running with the same key reports the same outcome, never a fake answer.
    with pytest.raises(TimedOut):
        await await_human(
            "Quick?", payload={}, response=Decision, key="q", timeout=0.3, client=client
        )


async def test_cancel_reaches_the_waiter(client: Client, other: Client) -> None:
    async def human() -> None:
        await other.cancel(await first_pending(other), by="admin", reason="duplicate")

    h = asyncio.create_task(human())
    with pytest.raises(Cancelled) as e:
        await asyncio.wait_for(
            await_human("Approve?", payload={}, response=Decision, client=client), 10
        )
    await h
    assert e.value.details["by"] == "admin" and e.value.details["reason"] == "duplicate"


async def test_cancelling_the_coroutine_leaves_the_task_pending(
    client: Client, other: Client
) -> None:
    waiter = asyncio.create_task(
        await_human("Approve?", payload={}, response=Decision, key="c1", client=client)
    )
    task_id = await first_pending(other)
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (await other.get(task_id)).status is Status.PENDING
    await other.answer(task_id, {"approved": False, "note": "no"}, by="bob")
    again = await asyncio.wait_for(
        await_human("Approve?", payload={}, response=Decision, key="c1", client=client), 10
    )
    assert again == Decision(approved=False, note="no")


async def test_wait_with_limit_returns_pending_task(client: Client) -> None:
    t = await client.create("Approve?", payload={}, response=Decision)
    out = await client.wait(t.id, timeout=0.1)
    assert out.status is Status.PENDING


async def test_bad_input_gets_clear_errors(client: Client) -> None:
    with pytest.raises(InvalidSchema):
        await client.create("x", payload={}, response={"type": "nope"})
    with pytest.raises(TooLarge) as big:
        await client.create("x", payload={"blob": "a" * 300_000}, response=Decision)
    assert big.value.details["limit"] == 256 * 1024
    with pytest.raises(InvalidArgument):
        await client.create("x", payload={"when": object()}, response=Decision)
    with pytest.raises(InvalidArgument):
        await client.create("x", payload={}, response=Decision, timeout=-1)
    with pytest.raises(InvalidArgument):
        await client.create("x", payload={}, response=int)
    with pytest.raises(InvalidArgument):
        await client.create("", payload={}, response=Decision)
    with pytest.raises(InvalidArgument):
        await client.create("x", payload={}, response=Decision, notify=["nowhere"])
    with pytest.raises(InvalidArgument):
        await client.get("not-a-uuid")
    with pytest.raises(NotFound):
        await client.get("01a213b7-ab7a-7523-bc19-f091f6a7803d")
    with pytest.raises(NotFound):
        await client.answer("01a213b7-ab7a-7523-bc19-f091f6a7803d", {}, by="x")
    assert await client.list() == []


async def test_list_filters_and_pages(client: Client) -> None:
    ids = [
        (await client.create(f"t{i}", payload={"i": i}, response=Decision, key=f"k-{i}")).id
        for i in range(5)
    ]
    await client.answer(ids[0], {"approved": True}, by="a")
    assert len(await client.list(status="pending")) == 4
    assert [t.key for t in await client.list(key_prefix="k-3")] == ["k-3"]
    seen: list[str] = []
    page = await client.list(limit=2)
    seen += [t.id for t in page]
    while page.next_cursor:
        page = await client.list(limit=2, cursor=page.next_cursor)
        seen += [t.id for t in page]
    assert seen == list(reversed(ids))
    with pytest.raises(InvalidArgument):
        await client.list(limit=0)


async def test_audit_chain_verifies(client: Client) -> None:
    t = await client.create("Approve?", payload={}, response=Decision)
    await client.answer(t.id, {"approved": True}, by="alice", channel="test")
    events = await client.audit(t.id)
    assert [(e.seq, e.kind) for e in events] == [(1, "created"), (2, "answer_accepted")]
    assert events[1].actor == "alice" and events[1].channel == "test"
    assert events[1].prev_hash == events[0].hash
    check = await client.verify_audit(t.id)
    assert check.ok and check.rows == 2


def test_sync_variant_from_a_thread_and_refused_inside_a_loop(
    database_url: str, namespace: str
) -> None:
    client = Client(database_url, namespace=namespace)
    result: dict[str, object] = {}

    def agent() -> None:
        result["decision"] = await_human_sync(
            "Approve?", payload={}, response=Decision, key="sync-1", client=client
        )

    th = threading.Thread(target=agent)
    th.start()

    async def human() -> None:
        answerer = Client(database_url, namespace=namespace)
        await answerer.answer(await first_pending(answerer), {"approved": True}, by="bob")
        with pytest.raises(RuntimeError, match="running event loop"):
            await_human_sync("Nope", payload={}, response=Decision, client=answerer)
        await answerer.close()

    asyncio.run(human())
    th.join(10)
    assert result["decision"] == Decision(approved=True)


async def test_a_burst_of_first_calls_opens_one_engine(database_url: str, namespace: str) -> None:
    """A thousand concurrent first calls on a fresh Client share one database engine."""
    setup = Client(database_url, namespace=namespace)
    ids = [(await setup.create("t", payload={}, response=Decision)).id for _ in range(200)]
    await setup.close()
    fresh = Client(database_url, namespace=namespace)
    done = await asyncio.gather(*(fresh.answer(i, {"approved": True}, by="a") for i in ids))
    assert {t.status for t in done} == {Status.COMPLETED}
    await fresh.close()


async def test_get_by_key_names_the_task(client: Client, namespace: str) -> None:
    created = await client.create("Approve?", payload={"a": 1}, response=Decision, key="by-key-1")
    found = await client.get_by_key("by-key-1")
    assert found.id == created.id
    assert found.claimed_by is None and found.claimed_at is None
    assert (await client.get_by_key("by-key-1", namespace=namespace)).id == created.id
    with pytest.raises(NotFound):
        await client.get_by_key("no-such-key")
