"""Shared fixtures: an empty PostgreSQL database per test, taken from a pool reset between tests.

The server is ``DATAFLOW_TEST_DATABASE_URL`` when set (CI sets the machine's PostgreSQL),
otherwise an embedded PostgreSQL started once for the session. Shared helpers live in
tests/helpers.py: import from there, never from this module.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.kube` and `tests.helpers` imports

from tests.helpers import DatabasePool  # noqa: E402


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """The test server; the embedded one lives in .dataflow/test-pgdata (reused across runs)."""
    url = os.environ.get("DATAFLOW_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from dataflow.embedded import embedded_dsn

    yield embedded_dsn(ROOT / ".dataflow" / "test-pgdata")


@pytest.fixture(scope="session")
def database_pool(server_dsn: str) -> Iterator[DatabasePool]:
    """The session's test databases; all dropped at the end."""
    pool = DatabasePool(server_dsn)
    yield pool
    asyncio.run(pool.close())


@pytest.fixture
async def dsn(database_pool: DatabasePool) -> AsyncIterator[str]:
    """An empty database for one test, as fresh as a new one; reset (or replaced) afterwards."""
    name = await database_pool.take()
    try:
        yield database_pool.dsn(name)
    finally:
        await database_pool.give_back(name)


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(dsn)
    try:
        yield c
    finally:
        await c.close()
