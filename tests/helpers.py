"""Small helpers shared by the engine tests, and the pool of test databases behind the ``dsn`` fixture."""

from __future__ import annotations

import asyncio
import io
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from rich.console import Console

from dataflow import DataFlow
from dataflow.introspect import introspect
from dataflow.reconcile import plan
from dataflow.sqltext import quote_ident, quote_literal


def dataflow(dsn: str, **config: object) -> DataFlow:
    """A DataFlow whose preview goes to a buffer (read it with ``output(db)``)."""
    return DataFlow(dsn, migration_config=dict(config), console=Console(file=io.StringIO(), width=160))


def output(db: DataFlow) -> str:
    return db.console.file.getvalue()  # type: ignore[attr-defined]


async def snapshot(conn: asyncpg.Connection) -> tuple[object, dict[str, list[tuple]]]:
    """The schema and every row of every table, to compare before and after."""
    state = await introspect(conn)
    data = {}
    for table in state.schema.tables:
        rows = await conn.fetch(f'SELECT * FROM "{table.name}" ORDER BY 1')
        data[table.name] = [tuple(r) for r in rows]
    return state.schema, data


async def replans_empty(db: DataFlow) -> None:
    """Nothing left to do for ``db``'s models: by a full plan (no fingerprint shortcut) and by the
    fingerprint path (the in-process cache and the ledger's record), and no table claimed by another owner."""
    async with db.connection() as conn:
        full, conflicts = await plan(conn, db.schema(), db.owner, db.options, fast=False)
        fast, _ = await plan(conn, db.schema(), db.owner, db.options, dsn=db.dsn)
    assert conflicts == {}
    assert [(op.kind, op.table, op.details) for op in full.operations] == []
    assert [(op.kind, op.table, op.details) for op in fast.operations] == []


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


# Catalogs of one database whose rows have an OID; a row at or above FirstNormalObjectId was made by a user.
_USER_CATALOGS = """
SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'oid'
WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r' AND NOT c.relisshared ORDER BY 1
"""
_DATABASE_STATE = """
SELECT 'database ' || pg_get_userbyid(d.datdba) || ' ' || coalesce(d.datacl::text, '') || ' ' || d.datconnlimit
       || ' ' || coalesce((SELECT string_agg(setrole || ':' || array_to_string(setconfig, ','), ' ' ORDER BY setrole)
                           FROM pg_db_role_setting WHERE setdatabase = d.oid), '')
FROM pg_database d WHERE d.datname = current_database()
UNION ALL
SELECT 'schema ' || n.nspname || ' ' || pg_get_userbyid(n.nspowner) || ' ' || coalesce(n.nspacl::text, '')
       || ' ' || coalesce(obj_description(n.oid, 'pg_namespace'), '')
FROM pg_namespace n WHERE n.nspname !~ '^pg_(toast_)?temp_'
UNION ALL
SELECT 'prepared transaction ' || gid FROM pg_prepared_xacts WHERE database = current_database()
"""
_SYSTEM_SCHEMAS = (
    "nspname NOT IN ('pg_catalog', 'information_schema') AND nspname !~ '^pg_(toast|temp_|toast_temp_)'"
)
FIRST_USER_OID = 16384


class DatabasePool:
    """Empty test databases, created once per session and reset between tests.

    ``CREATE DATABASE`` costs about 0.2 s; a reset (end every other session, drop every extension
    and non-system schema, re-create ``public``) a few milliseconds. Isolation does not rest on the
    reset being complete: afterwards the database's fingerprint (schemas with owners and ACLs,
    database settings and ACL, prepared transactions, and every user-made catalog row: tables,
    functions, types, extensions, casts, event triggers, foreign servers, large objects, ...)
    must equal that of a fresh database, else the database is dropped and a new one made.
    """

    def __init__(self, server_dsn: str) -> None:
        self.server_dsn = server_dsn
        self.prefix = f"dataflow_test_{uuid.uuid4().hex[:12]}"
        self.free: list[str] = []
        self.created: set[str] = set()
        self.pristine: list[str] | None = None
        self.replaced = 0

    def dsn(self, name: str) -> str:
        return with_database(self.server_dsn, name)

    async def take(self) -> str:
        """The name of an empty database, reused when one is free."""
        return self.free.pop() if self.free else await self._create()

    async def give_back(self, name: str) -> None:
        """Reset ``name`` for the next test, or drop it when the reset cannot make it fresh again."""
        if await self._reset(name):
            self.free.append(name)
        else:
            self.replaced += 1
            await self._drop(name)

    async def close(self) -> None:
        for name in sorted(self.created):
            await self._drop(name)
        self.free.clear()

    async def _create(self) -> str:
        name = f"{self.prefix}_{len(self.created) + self.replaced}"
        admin = await asyncpg.connect(self.server_dsn)
        try:
            for attempt in range(
                20
            ):  # another client of the shared server may be connected to template1 briefly
                try:
                    await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
                    break
                except asyncpg.ObjectInUseError:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            await admin.close()
        self.created.add(name)
        if self.pristine is None:
            conn = await asyncpg.connect(self.dsn(name))
            try:
                self.pristine = await fingerprint(conn)
            finally:
                await conn.close()
        return name

    async def _drop(self, name: str) -> None:
        admin = await asyncpg.connect(self.server_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await admin.close()
        self.created.discard(name)

    async def _reset(self, name: str) -> bool:
        """Empty ``name``; True when it is now indistinguishable from a fresh database."""
        try:
            conn = await asyncpg.connect(self.dsn(name))
        except (asyncpg.PostgresError, OSError):
            return False
        try:
            await reset_database(conn)
            return await fingerprint(conn) == self.pristine
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return False
        finally:
            await conn.close()


async def reset_database(conn: asyncpg.Connection) -> None:
    """End every other session on the database; drop its extensions, large objects and schemas; a new ``public``."""
    await conn.execute("SET lock_timeout = '5s'")
    await conn.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    extensions = [
        r[0] for r in await conn.fetch("SELECT extname FROM pg_extension WHERE oid >= $1", FIRST_USER_OID)
    ]
    schemas = [r[0] for r in await conn.fetch(f"SELECT nspname FROM pg_namespace WHERE {_SYSTEM_SCHEMAS}")]
    async with conn.transaction():
        for extension in extensions:
            await conn.execute(f"DROP EXTENSION IF EXISTS {quote_ident(extension)} CASCADE")
        await conn.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await conn.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
        await conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
        await conn.execute("COMMENT ON SCHEMA public IS 'standard public schema'")


async def fingerprint(conn: asyncpg.Connection) -> list[str]:
    """What tells a used database from a fresh one: database and schema state, and every user-made object."""
    catalogs = [r[0] for r in await conn.fetch(_USER_CATALOGS)]
    rows = " UNION ALL ".join(
        f"SELECT {quote_literal(c)} AS catalog, oid FROM pg_catalog.{quote_ident(c)} WHERE oid >= {FIRST_USER_OID}"
        for c in catalogs
    )
    objects = (
        await conn.fetch(  # a catalog row's OID, not its description: pg_describe_object misses some classes
            f"SELECT catalog || ' ' || oid FROM ({rows}) o WHERE NOT (catalog = 'pg_namespace' "
            "AND (SELECT nspname FROM pg_namespace WHERE oid = o.oid) ~ '^(public$|pg_(toast_)?temp_)')"
        )
    )
    state = await conn.fetch(_DATABASE_STATE)
    return sorted([r[0] for r in state] + [f"object {r[0]}" for r in objects])
