"""Shared fixtures: a fresh PostgreSQL database per test.

The server is ``DATAFLOW_TEST_DATABASE_URL`` when set (CI sets the machine's PostgreSQL),
otherwise an embedded PostgreSQL started once for the session.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.kube` imports


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """The test server; the embedded one lives in .dataflow/test-pgdata (reused across runs)."""
    url = os.environ.get("DATAFLOW_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from dataflow.embedded import embedded_dsn

    yield embedded_dsn(ROOT / ".dataflow" / "test-pgdata")


@pytest.fixture
async def dsn(server_dsn: str) -> AsyncIterator[str]:
    """A new, empty database for one test; dropped afterwards."""
    name = f"dataflow_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(server_dsn, name)
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(dsn)
    try:
        yield c
    finally:
        await c.close()
