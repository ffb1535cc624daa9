"""Many resources on one database: the operator's sessions stay within its pool (issue 9, item 4).

Real Kopf against the emulated API server and real PostgreSQL, as in tests/test_operator.py. The
test samples ``pg_stat_activity`` for the database every ~50 ms from the server's admin database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from dataflow.ledger import Ledger
from dataflow.lock import MigrationLease
from tests.kube.emulator import ApiServer
from tests.test_operator import (  # noqa: F401 - fixtures
    NS,
    RESOURCE,
    api,
    column,
    eventually,
    make_secret,
    operator,
    phase,
    resource,
    secret_dsn,
    status_of,
)

RESOURCES = 200
SCHEMAS = 8  # resources on one schema apply in turn; several schemas let the pool fill up
POOL_MAX = 5


def small_table(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "primaryKey": ["id"],
        "columns": [column("id", "BIGINT", nullable=False), column("note", "TEXT")],
    }


# client sessions only: autovacuum workers of the database show up in pg_stat_activity too
SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'"


class Sampler:
    """Counts the sessions open on one database every ~50 ms, from a session on another one."""

    def __init__(self, server_dsn: str, database: str) -> None:
        self.server_dsn = server_dsn
        self.database = database
        self.peak = 0
        self.samples = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Sampler]:
        conn = await asyncpg.connect(self.server_dsn)
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                n = await conn.fetchval(SESSIONS, self.database)
                self.peak, self.samples = max(self.peak, n), self.samples + 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)

        task = asyncio.create_task(sample())
        try:
            yield self
        finally:
            stop.set()
            await task
            await conn.close()


@pytest.fixture
def pool_max(monkeypatch: pytest.MonkeyPatch) -> int:
    """The operator's pool size (requested before ``operator``, which reads it at startup)."""
    monkeypatch.setenv("DATAFLOW_POOL_MAX", str(POOL_MAX))
    return POOL_MAX


@pytest.fixture
def one_session(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("DATAFLOW_POOL_MAX", "1")
    return 1


def refusals(server: ApiServer) -> list[str]:
    """Every event or status message that says the server refused a client."""
    texts = [e.get("message", "") for e in server.list_objects("v1/events", NS)]
    texts += [(o.get("status") or {}).get("message", "") for o in server.list_objects(RESOURCE, NS)]
    return [t for t in texts if "too many clients" in t or "DatabaseUnavailable" in t or "refused" in t]


async def test_200_resources_on_one_database_stay_within_the_pool(
    pool_max: int,
    api: ApiServer,  # noqa: F811 - the fixtures imported from test_operator
    operator: Any,  # noqa: F811
    dsn: str,
    secret_dsn: str,  # noqa: F811
    server_dsn: str,
) -> None:
    database = urlsplit(dsn).path.lstrip("/")  # the embedded server's DSN has a path in its query too
    make_secret(api, "shared-db", secret_dsn)
    names = [f"app{i:03d}" for i in range(RESOURCES)]
    async with Sampler(server_dsn, database).running() as sampler:
        for i, name in enumerate(names):
            body = resource(name, "shared-db", [small_table(f"t_{name}")])
            body["spec"]["database"]["schema"] = f"s{i % SCHEMAS}"
            api.create(RESOURCE, body, namespace=NS)
        await eventually(
            lambda: all(status_of(api, n).get("phase") == "Applied" for n in names),
            timeout=90,
            what="every resource Applied: "
            + str(sorted({status_of(api, n).get("phase", "") for n in names})),
        )
    assert sampler.samples > 20
    # the pool's sessions and the shared heartbeat; nothing else of the operator's
    assert 2 <= sampler.peak <= pool_max + 2, sampler.peak
    assert len(api.list_objects("v1/events", NS)) >= RESOURCES  # one per apply: the events were read
    assert refusals(api) == []
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname LIKE 's_' AND tablename LIKE 't\\_app%'"
        )
    finally:
        await conn.close()
    assert tables == RESOURCES


async def test_a_resource_waiting_for_a_lease_holds_no_session(
    one_session: int,
    api: ApiServer,  # noqa: F811 - the fixtures imported from test_operator
    operator: Any,  # noqa: F811
    dsn: str,
    secret_dsn: str,  # noqa: F811
) -> None:
    """With a single pooled session: while ``a`` waits for a lease another process holds on its
    schema, ``b`` (another schema, same database) gets that session and applies."""
    make_secret(api, "shared-db", secret_dsn)
    other = await asyncpg.connect(dsn)
    try:
        await other.execute('CREATE SCHEMA "a"')
        ledger = Ledger("a")
        await ledger.ensure(other)
        foreign = MigrationLease(ledger, "schema:a", holder="another-process", ttl=120)
        assert await foreign.try_acquire(other)

        waiting = resource("waiter", "shared-db", [small_table("waits")])
        waiting["spec"]["database"]["schema"] = "a"
        api.create(RESOURCE, waiting, namespace=NS)
        await _until_waiting(other)
        free = resource("free", "shared-db", [small_table("free_table")])
        free["spec"]["database"]["schema"] = "b"
        await other.execute('CREATE SCHEMA "b"')
        api.create(RESOURCE, free, namespace=NS)
        await phase(api, "free", "Applied", timeout=20)
        assert status_of(api, "waiter").get("phase") != "Applied"

        await foreign.release(other)
        await phase(api, "waiter", "Applied", timeout=20)
    finally:
        await other.close()


async def _until_waiting(conn: asyncpg.Connection, timeout: float = 20.0) -> None:
    """Until an operator session has tried to take the lease (its last statement is the lease INSERT)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        ' AND pid <> pg_backend_pid() AND query LIKE \'INSERT INTO "a"."dataflow_migration_lock"%\''
    ):
        assert asyncio.get_running_loop().time() < deadline, "the waiter never tried the lease"
        await asyncio.sleep(0.05)
