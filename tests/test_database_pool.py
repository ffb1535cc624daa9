"""The pool behind the ``dsn`` fixture: a reused database is as empty as a new one, or it is replaced."""

from __future__ import annotations

import asyncpg
import pytest

from tests.helpers import DatabasePool, fingerprint

DIRT = [
    "CREATE TABLE account (id serial PRIMARY KEY, email text UNIQUE)",
    "CREATE SCHEMA dataflow_backup",
    "CREATE TABLE dataflow_backup.account_email AS SELECT 1 AS id",
    "CREATE SCHEMA tenant_a",
    "CREATE TYPE tenant_a.mood AS ENUM ('ok')",
    "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE VIEW v AS SELECT * FROM account",
    "CREATE EXTENSION hstore",
    "CREATE EXTENSION earthdistance CASCADE",  # and cube, which it needs
    "CREATE EXTENSION pageinspect",
    "SELECT lo_create(0)",
    "REVOKE USAGE ON SCHEMA public FROM PUBLIC",
    "COMMENT ON SCHEMA public IS 'changed'",
]


async def objects_of(conn: asyncpg.Connection) -> list[str]:
    return [
        r[0]
        for r in await conn.fetch(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        )
    ]


async def test_a_used_database_comes_back_as_fresh_as_a_new_one(server_dsn: str) -> None:
    pool = DatabasePool(server_dsn)
    try:
        name = await pool.take()
        conn = await asyncpg.connect(pool.dsn(name))
        for sql in DIRT:
            await conn.execute(sql)
        assert await fingerprint(conn) != pool.pristine
        lingering = await asyncpg.connect(pool.dsn(name))  # a session a test forgot, holding locks
        await lingering.execute("BEGIN; LOCK TABLE account; SELECT pg_advisory_lock(42)")
        await conn.close()

        await pool.give_back(name)
        assert (pool.free, pool.replaced) == ([name], 0)
        assert lingering.is_closed() or not await _alive(lingering)
        lingering.terminate()
        assert await pool.take() == name
        conn = await asyncpg.connect(pool.dsn(name))
        try:
            assert await fingerprint(conn) == pool.pristine
            assert await objects_of(conn) == []
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
                )
                == 0
            )
            for sql in DIRT:  # everything can be made again: nothing of the last test is in the way
                await conn.execute(sql)
        finally:
            await conn.close()
        await pool.give_back(name)
        assert pool.free == [name]
    finally:
        await pool.close()
    admin = await asyncpg.connect(server_dsn)
    assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 0
    await admin.close()


async def _alive(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
        return True
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False


@pytest.mark.parametrize(
    "change",
    [
        "ALTER DATABASE {db} SET work_mem = '1MB'",
        "CREATE FUNCTION pg_catalog.dataflow_left_behind() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FOREIGN DATA WRAPPER dataflow_fdw",
    ],
)
async def test_a_database_the_reset_cannot_clean_is_dropped_not_reused(server_dsn: str, change: str) -> None:
    pool = DatabasePool(server_dsn)
    try:
        name = await pool.take()
        conn = await asyncpg.connect(pool.dsn(name))
        await conn.execute(change.format(db=f'"{name}"'))
        await conn.close()
        await pool.give_back(name)
        assert (pool.free, pool.replaced) == ([], 1)
        admin = await asyncpg.connect(server_dsn)
        try:
            assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 0
        finally:
            await admin.close()
        fresh = await pool.take()
        assert fresh != name
        conn = await asyncpg.connect(pool.dsn(fresh))
        assert await fingerprint(conn) == pool.pristine
        await conn.close()
        await pool.give_back(fresh)
    finally:
        await pool.close()


@pytest.mark.parametrize("run", [1, 2, 3])
async def test_each_test_starts_on_an_empty_database(
    conn: asyncpg.Connection, database_pool: DatabasePool, run: int
) -> None:
    """Three runs on (most likely) the same pooled database: each starts as fresh, whatever the last one left."""
    assert await fingerprint(conn) == database_pool.pristine
    assert await objects_of(conn) == []
    for sql in DIRT:
        await conn.execute(sql)
    await conn.execute("INSERT INTO account (email) VALUES ($1)", f"run{run}@x.io")
