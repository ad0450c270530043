"""Fixtures: every test that takes `database_url` runs on SQLite and on PostgreSQL.

PostgreSQL comes from `INLOOP_TEST_PG_URL` (the test command starts a throwaway server with
`scripts/pg.sh`). Without it the PostgreSQL variants skip, unless `INLOOP_REQUIRE_PG=1`, which
turns the skip into a failure (CI sets it, so a missing server cannot pass silently).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inloop import Client

BACKENDS = ["sqlite", "postgres"]


def pg_url() -> str | None:
    url = os.environ.get("INLOOP_TEST_PG_URL")
    if not url:
        if os.environ.get("INLOOP_REQUIRE_PG") == "1":
            pytest.fail("INLOOP_REQUIRE_PG=1 but INLOOP_TEST_PG_URL is not set")
        pytest.skip("INLOOP_TEST_PG_URL not set")
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'inloop.db'}"
    url = pg_url()
    assert url is not None
    return url


@pytest.fixture
def pg_database_url() -> str:
    """The PostgreSQL URL alone, for tests that only make sense there."""
    url = pg_url()
    assert url is not None
    return url


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own, so tests sharing one PostgreSQL never see each other."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(database_url: str, namespace: str) -> AsyncIterator[Client]:
    c = Client(database_url, namespace=namespace)
    yield c
    await c.close()


@pytest.fixture
async def other(database_url: str, namespace: str) -> AsyncIterator[Client]:
    """A second client on the same database: its own connections and its own waker."""
    c = Client(database_url, namespace=namespace)
    yield c
    await c.close()
