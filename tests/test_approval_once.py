"""An approval names one plan at one database position, so it is used once (issue 9, item 1).

The scenario of the issue at engine level, on real PostgreSQL: a HIGH plan dropping a column is
approved by hash and applied; a DBA re-adds the column and writes to it; the same approval must not
apply the same-looking plan again, and the first migration's backup (which its rollback needs) must
survive. Also: a plan made twice on an unchanged database keeps its hash, and two databases that look
exactly alike never share one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dataflow import fingerprint as fp
from dataflow.options import MigrationOptions
from dataflow.reconcile import Outcome, Refusal, plan, reconcile
from dataflow.schema import Column, Schema, Table
from dataflow.sqlgen import BACKUP_SCHEMA
from tests.helpers import dataflow, with_database

OWNER = "shop"


def order(*extra: Column) -> Schema:
    columns = (Column("id", "BIGINT", nullable=False), Column("total", "INTEGER"), *extra)
    return Schema((Table("order", columns, primary_key=("id",)),), "public").normalised()


WITH_METADATA = order(Column("metadata", "TEXT"))
WITHOUT_METADATA = order()


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    fp.IN_SYNC.clear()


async def seeded(conn: asyncpg.Connection, dsn: str) -> None:
    """``order`` with metadata on every row, applied by this owner."""
    result = await reconcile(conn, dsn, WITH_METADATA, OWNER, MigrationOptions())
    assert result.outcome is Outcome.APPLIED, result.reason
    await conn.execute(
        'INSERT INTO "order" (id, total, metadata) SELECT g, g * 10, $1 || g FROM generate_series(1, 20) g',
        "meta-",
    )


async def backups(conn: asyncpg.Connection) -> dict[str, int]:
    """Each backup table and its row count."""
    names = [
        r[0]
        for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", BACKUP_SCHEMA
        )
    ]
    return {n: await conn.fetchval(f'SELECT count(*) FROM "{BACKUP_SCHEMA}"."{n}"') for n in names}


async def test_an_applied_approval_never_applies_again_and_the_backup_survives(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await seeded(conn, dsn)

    # dropping the column is HIGH: refused, and the same refusal twice names the same plan
    refused = await reconcile(conn, dsn, WITHOUT_METADATA, OWNER, MigrationOptions())
    assert refused.outcome is Outcome.REFUSED and refused.refusal is Refusal.RISK_ABOVE_POLICY
    again = await reconcile(conn, dsn, WITHOUT_METADATA, OWNER, MigrationOptions())
    approved = refused.plan_hash
    assert approved is not None and again.plan_hash == approved

    # approved by hash: applied, the values kept in a backup
    first = await reconcile(conn, dsn, WITHOUT_METADATA, OWNER, MigrationOptions(approved_plan=approved))
    assert first.outcome is Outcome.APPLIED, first.reason
    assert first.migration is not None and first.migration.plan_hash == approved
    kept = await backups(conn)
    assert list(kept.values()) == [20], kept

    # a DBA re-adds the column by hand and writes to it
    await conn.execute('ALTER TABLE "order" ADD COLUMN metadata TEXT')
    await conn.execute("UPDATE \"order\" SET metadata = 'dba-' || id")

    # the same annotation again: the plan looks the same (drop metadata) but is another plan
    stale = await reconcile(conn, dsn, WITHOUT_METADATA, OWNER, MigrationOptions(approved_plan=approved))
    assert stale.outcome is Outcome.REFUSED and stale.refusal is Refusal.APPROVAL_MISMATCH, stale.reason
    assert stale.plan_hash != approved and approved in stale.reason
    assert [op.kind for op in stale.migration.operations] == ["DROP_COLUMN"]  # type: ignore[union-attr]
    assert await conn.fetchval("SELECT count(*) FROM \"order\" WHERE metadata LIKE 'dba-%'") == 20
    assert await backups(conn) == kept  # the first migration's backup, untouched

    # its backup would get another name: the first one is never overwritten
    assert stale.migration is not None and first.migration.operations[0].backup
    assert stale.migration.operations[0].backup != first.migration.operations[0].backup

    # the DBA takes the column away again; the rollback of the first migration still restores every value
    await conn.execute('ALTER TABLE "order" DROP COLUMN metadata')
    assert await dataflow(dsn).rollback_migration(first.migration.version)
    restored = await conn.fetch('SELECT id, metadata FROM "order" ORDER BY id')
    assert [(r["id"], r["metadata"]) for r in restored] == [(i, f"meta-{i}") for i in range(1, 21)]


async def test_the_same_plan_on_an_unchanged_database_keeps_its_hash(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await seeded(conn, dsn)
    options = MigrationOptions()
    before_ledger, _ = await plan(conn, WITHOUT_METADATA, OWNER, options, dsn=dsn)
    full, _ = await plan(conn, WITHOUT_METADATA, OWNER, options, fast=False)
    fp.IN_SYNC.clear()  # another process
    fresh, _ = await plan(conn, WITHOUT_METADATA, OWNER, options, dsn=dsn)
    assert before_ledger.operations and before_ledger.checksum == full.checksum == fresh.checksum
    # rows written do not move it (no DDL, no apply)
    await conn.execute('UPDATE "order" SET total = total + 1')
    await conn.execute('ANALYZE "order"')
    assert (await plan(conn, WITHOUT_METADATA, OWNER, options))[0].checksum == full.checksum
    # any DDL on the table does
    await conn.execute('CREATE INDEX order_total_idx ON "order" (total)')
    moved, _ = await plan(conn, WITHOUT_METADATA, OWNER, options)
    assert moved.checksum != full.checksum


async def test_a_taken_backup_name_fails_loudly_and_nothing_is_applied(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await seeded(conn, dsn)
    planned, _ = await plan(conn, WITHOUT_METADATA, OWNER, MigrationOptions())
    backup = planned.operations[0].backup
    assert backup is not None and all("DROP TABLE" not in sql for sql in planned.sql_up)
    # someone (or something) already holds that name in the backup schema
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{BACKUP_SCHEMA}"')
    await conn.execute(f"CREATE TABLE {backup} (precious TEXT)")
    await conn.execute(f"INSERT INTO {backup} VALUES ('keep me')")
    result = await reconcile(
        conn, dsn, WITHOUT_METADATA, OWNER, MigrationOptions(approved_plan=planned.plan_hash)
    )
    assert result.outcome is Outcome.FAILED and "already exists" in result.reason, result.reason
    assert await conn.fetchval(f"SELECT precious FROM {backup}") == "keep me"
    assert await conn.fetchval('SELECT count(metadata) FROM "order"') == 20


@pytest.fixture
async def twins(server_dsn: str) -> AsyncIterator[tuple[str, str]]:
    """Two databases that look exactly alike: the second is a ``CREATE DATABASE ... TEMPLATE`` copy of
    the first (same tables, oids and catalog row versions), as a staging restored from production."""
    first, second = (f"dataflow_twin_{uuid.uuid4().hex[:10]}" for _ in range(2))
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{first}"')
        conn = await asyncpg.connect(with_database(server_dsn, first))
        try:
            await seeded(conn, with_database(server_dsn, first))
        finally:
            await conn.close()
        await admin.execute(f'CREATE DATABASE "{second}" TEMPLATE "{first}"')
        yield with_database(server_dsn, first), with_database(server_dsn, second)
    finally:
        for name in (first, second):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_two_databases_that_look_alike_never_share_a_plan_hash(twins: tuple[str, str]) -> None:
    hashes, statements = [], []
    for dsn in twins:
        conn = await asyncpg.connect(dsn)
        try:
            staged, _ = await plan(conn, WITHOUT_METADATA, OWNER, MigrationOptions(), fast=False)
        finally:
            await conn.close()
        hashes.append(staged.plan_hash)
        statements.append(
            [sql.replace(staged.operations[0].backup or "", "<backup>") for sql in staged.sql_up]
        )
    assert statements[0] == statements[1]  # the same changes...
    assert hashes[0] != hashes[1]  # ...but an approval of staging's plan cannot approve production's

    # staging's approval, copied to production, is refused there
    conn = await asyncpg.connect(twins[1])
    try:
        copied = await reconcile(
            conn, twins[1], WITHOUT_METADATA, OWNER, MigrationOptions(approved_plan=hashes[0])
        )
        assert copied.outcome is Outcome.REFUSED and copied.refusal is Refusal.APPROVAL_MISMATCH
        assert await conn.fetchval('SELECT count(metadata) FROM "order"') == 20
    finally:
        await conn.close()
