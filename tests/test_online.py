"""Zero-downtime strategies and data-preserving rollback, on real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg

from dataflow import Field
from dataflow.introspect import introspect
from tests.helpers import dataflow, output, snapshot

ROWS = 3000


async def seeded(dsn: str, conn: asyncpg.Connection, **config: object):
    """An `owner` and an `account` table with rows, owned by a DataFlow with ``config``."""
    db = dataflow(dsn, **config)

    @db.model
    class Owner:
        name: str

    @db.model
    class Account:
        email: str = Field(max_length=100)
        owner_id: int
        balance: int = None
        note: str = None

    await db.initialize()
    await conn.execute("INSERT INTO owner (name) SELECT 'o' || g FROM generate_series(1, 10) g")
    await conn.execute(
        "INSERT INTO account (email, owner_id, balance, note) "
        "SELECT 'a' || g || '@x.io', 1 + g % 10, g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END "
        "FROM generate_series(1, $1) g",
        ROWS,
    )
    return db


async def test_each_online_strategy_reaches_the_intended_schema(dsn: str, conn: asyncpg.Connection) -> None:
    db = await seeded(dsn, conn, batch_size=500)

    @db.model
    class Account:  # noqa: F811
        email: str = Field(max_length=200, unique=True)  # widening in place + unique USING INDEX
        owner_id: int = Field(references="owner.id")  # FK NOT VALID, then VALIDATE
        balance: int = Field(default=0, index=True)  # NOT NULL via CHECK, backfill NULLs; index CONCURRENTLY
        note: str = None
        status: str = "active"  # constant default: metadata only
        token: str = Field(sql_default="md5(random()::text)")  # volatile: add nullable, backfill, NOT NULL

    desired = db.schema()
    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH", show_rollback_plan=True)
    assert success, output(db)
    by_kind = {(op.kind, op.change.subject): op for op in m.operations}
    sql = "\n".join(m.sql_up)
    assert 'CREATE INDEX CONCURRENTLY "account_balance_idx" ON "public"."account" ("balance");' in sql
    assert (
        'ALTER TABLE "public"."account" ADD CONSTRAINT "account_owner_id_fkey" FOREIGN KEY ("owner_id")'
        ' REFERENCES "public"."owner" ("id") NOT VALID;' in sql
    )
    assert 'ALTER TABLE "public"."account" VALIDATE CONSTRAINT "account_owner_id_fkey";' in sql
    assert 'CREATE UNIQUE INDEX CONCURRENTLY "account_email_key" ON "public"."account" ("email");' in sql
    assert (
        'ALTER TABLE "public"."account" ADD CONSTRAINT "account_email_key" UNIQUE USING INDEX "account_email_key";'
        in sql
    )
    assert (
        'ALTER TABLE "public"."account" ADD CONSTRAINT "account_balance_not_null"'
        ' CHECK ("balance" IS NOT NULL) NOT VALID;' in sql
    )
    assert (
        'ALTER TABLE "public"."account" ALTER COLUMN "email" TYPE VARCHAR(200);' in sql
    )  # no USING: no rewrite
    assert by_kind[("ALTER_COLUMN_TYPE", "email")].strategy == "in place, no rewrite"
    assert (
        'UPDATE "public"."account" SET "token" = DEFAULT WHERE ("id") IN'
        ' (SELECT "id" FROM "public"."account" WHERE "token" IS NULL LIMIT 500);' in sql
    )
    assert "outside a transaction" in output(db) and "repeated in batches" in output(db)

    schema = (await introspect(conn)).schema
    assert schema.table("account") == desired.table("account")
    assert await conn.fetchval("SELECT count(*) FROM account WHERE token IS NULL OR balance IS NULL") == 0
    assert await conn.fetchval("SELECT count(DISTINCT token) FROM account") == ROWS  # evaluated per row
    assert await conn.fetchval("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    assert (await db.auto_migrate(auto_confirm=True)) == (True, [])


async def test_online_step_retries_a_lock_timeout_until_the_lock_is_released(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = await seeded(dsn, conn, lock_timeout_ms=100)

    @db.model
    class Account:  # noqa: F811
        email: str = Field(max_length=100)
        owner_id: int = Field(references="owner.id")
        balance: int = None
        note: str = None

    blocker = await asyncpg.connect(dsn)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE owner IN ACCESS EXCLUSIVE MODE")
    release = asyncio.create_task(asyncio.sleep(1.0))
    release.add_done_callback(lambda _: asyncio.ensure_future(tx.rollback()))
    success, [m] = await db.auto_migrate(auto_confirm=True)
    await asyncio.sleep(0.1)
    await blocker.close()
    assert success
    [record] = [r for r in await db.get_migration_history(3) if r.version == m.version]
    assert record.status == "applied" and record.attempts > 2


async def test_an_invalid_index_is_dropped_and_built_again(dsn: str, conn: asyncpg.Connection) -> None:
    db = await seeded(dsn, conn)
    # a concurrent unique build that failed leaves an INVALID index behind
    await conn.execute("UPDATE account SET note = 'dup' WHERE id <= 2")
    try:
        await conn.execute('CREATE UNIQUE INDEX CONCURRENTLY "account_note_idx" ON account (note)')
    except asyncpg.UniqueViolationError:
        pass
    assert await conn.fetchval(
        "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 'account_note_idx'::regclass"
    )

    @db.model
    class Account:  # noqa: F811
        email: str = Field(max_length=100)
        owner_id: int
        balance: int = None
        note: str = Field(default=None, index=True)

    success, [m] = await db.auto_migrate(auto_confirm=True)
    assert success and [(op.kind, op.change.subject) for op in m.operations] == [
        ("DROP_INDEX", "account_note_idx"),
        ("CREATE_INDEX", "account_note_idx"),
    ]
    assert await conn.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'account_note_idx'::regclass"
    )


async def test_drop_column_then_rollback_restores_every_value(dsn: str, conn: asyncpg.Connection) -> None:
    db = await seeded(dsn, conn)
    before = await snapshot(conn)

    @db.model
    class Account:  # noqa: F811
        email: str = Field(max_length=100)
        owner_id: int
        balance: int = None

    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success and m.operations[0].backup == '"dataflow_backup".' + f'"account_note_{m.position[:10]}"'
    analysis = await db.analyze_rollback(m.version)
    assert analysis.fully_reversible and analysis.data_loss_warning is None
    assert await db.rollback_migration(m.version)
    assert await snapshot(conn) == before  # every value, NULLs included, in the same column order


async def test_drop_table_then_rollback_restores_rows(dsn: str, conn: asyncpg.Connection) -> None:
    db = await seeded(dsn, conn)
    before = await conn.fetch("SELECT * FROM account ORDER BY id")
    del db.models["Account"]
    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success and await conn.fetchval("SELECT to_regclass('public.account')") is None
    assert await db.rollback_migration(m.version)
    assert await conn.fetch("SELECT * FROM account ORDER BY id") == before


async def test_analyze_rollback_says_the_truth_without_a_backup(dsn: str, conn: asyncpg.Connection) -> None:
    db = await seeded(dsn, conn)

    @db.model
    class Account:  # noqa: F811
        email: str = Field(max_length=100)
        owner_id: int
        balance: int = None

    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH", create_backup=False)
    assert success
    analysis = await db.analyze_rollback(m.version)
    assert not analysis.fully_reversible
    assert analysis.irreversible_operations == ["DROP_COLUMN account.note (TEXT)"]
    assert "not the data" in analysis.data_loss_warning
