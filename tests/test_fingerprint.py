"""The fingerprint decides "in sync" in one query, and everything that could change a plan falls through.

Each test proves one side of it against real PostgreSQL: what moves the fingerprint (DDL on a managed
table, ownership, a running attempt), what does not (rows, VACUUM/ANALYZE, other tables), and that
the fast path answers with one statement only where a full plan would also find nothing.
"""

import asyncio
from dataclasses import replace

import asyncpg
import pytest

from dataflow import fingerprint as fp
from dataflow.ledger import STATUS_RUNNING
from dataflow.operations import Risk
from dataflow.options import MigrationOptions
from dataflow.reconcile import Outcome, plan, reconcile
from dataflow.schema import Column, Index, Schema, Table
from tests.helpers import dataflow

OWNER = "shop"
OPTIONS = MigrationOptions(max_risk_level=Risk.HIGH)


def table(name: str, *extra: Column, indexes: tuple[Index, ...] = ()) -> Table:
    columns = (Column("id", "BIGINT", nullable=False), Column("name", "TEXT"), *extra)
    return Table(name, columns, primary_key=("id",), indexes=indexes)


def customer(*extra: Column) -> Table:
    return table("customer", *extra, indexes=(Index("customer_name_idx", ("name",)),))


DESIRED = Schema((customer(), table("item")), "public").normalised()


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """Each test starts with an empty in-process cache (a fresh process)."""
    fp.IN_SYNC.clear()


class Statements:
    """Counts the statements a connection sends."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.count = 0
        conn.add_query_logger(self)

    def __call__(self, record: object) -> None:
        self.count += 1


async def applied(conn: asyncpg.Connection, dsn: str, desired: Schema = DESIRED) -> None:
    result = await reconcile(conn, dsn, desired, OWNER, OPTIONS)
    assert result.outcome is Outcome.APPLIED, result.reason


async def quick(conn: asyncpg.Connection, dsn: str | None = None) -> tuple[int, int]:
    """(operations planned, statements sent) of one plan of DESIRED."""
    counter = Statements(conn)
    migration, _ = await plan(conn, DESIRED, OWNER, OPTIONS, dsn=dsn)
    await asyncio.sleep(0.01)  # query loggers are called soon after, not during
    conn.remove_query_logger(counter)
    return len(migration.operations), counter.count


async def test_any_ddl_on_a_managed_table_changes_it_and_nothing_else_does(conn: asyncpg.Connection) -> None:
    names = ["customer", "item"]
    empty = await fp.fingerprint(conn, "public", names)
    await conn.execute("CREATE TABLE customer (id bigint PRIMARY KEY, name text DEFAULT 'x')")
    one = await fp.fingerprint(conn, "public", names)
    assert one != empty  # a table that was missing now exists

    await conn.execute("INSERT INTO customer SELECT g, 'n' FROM generate_series(1, 100) g")
    await conn.execute("UPDATE customer SET name = 'm'")
    await conn.execute("ANALYZE customer")
    await conn.execute("VACUUM customer")
    await conn.execute("CREATE TABLE unrelated (id int)")
    await conn.execute("ALTER TABLE unrelated ADD COLUMN x int")
    assert await fp.fingerprint(conn, "public", names) == one  # rows, maintenance, other tables: no change

    seen = {one}
    for ddl in (
        "ALTER TABLE customer ADD COLUMN note text",
        "ALTER TABLE customer ALTER COLUMN note SET DEFAULT 'n'",
        "ALTER TABLE customer ALTER COLUMN name SET NOT NULL",
        "ALTER TABLE customer ALTER COLUMN note TYPE varchar(20)",
        "CREATE INDEX customer_name_idx ON customer (name)",
        "ALTER INDEX customer_name_idx RENAME TO customer_name_idx2",
        "ALTER TABLE customer ADD CONSTRAINT positive CHECK (id > 0) NOT VALID",
        "ALTER TABLE customer VALIDATE CONSTRAINT positive",
        "ALTER TABLE customer RENAME COLUMN note TO remark",
        "ALTER TABLE customer DROP COLUMN remark",
        "DROP INDEX customer_name_idx2",
    ):
        await conn.execute(ddl)
        now = await fp.fingerprint(conn, "public", names)
        assert now not in seen, ddl
        seen.add(now)
    assert await fp.fingerprint(conn, "public", ["customer"]) != now  # the names asked for are part of it


async def test_after_an_apply_the_in_sync_plan_is_one_statement(dsn: str, conn: asyncpg.Connection) -> None:
    await applied(conn, dsn)
    row = await conn.fetchrow(
        "SELECT plan_key, fingerprint FROM dataflow_migrations WHERE status = 'applied'"
    )
    assert row["plan_key"] == fp.plan_key(DESIRED, OPTIONS)
    assert row["fingerprint"] == await fp.fingerprint(conn, "public", DESIRED.table_names, OWNER)

    fp.IN_SYNC.clear()  # a new process: the ledger's record answers
    assert await quick(conn) == (0, 1)
    assert await quick(conn, dsn) == (0, 1)  # the apply's own process: its cache answers

    full, _ = await plan(conn, DESIRED, OWNER, OPTIONS, fast=False)
    assert full.operations == [] and full.checksum == (await plan(conn, DESIRED, OWNER, OPTIONS))[0].checksum


async def test_a_full_plan_that_finds_nothing_is_cached(dsn: str, conn: asyncpg.Connection) -> None:
    await applied(conn, dsn)
    await conn.execute("UPDATE dataflow_migrations SET fingerprint = NULL")  # no ledger record to rely on
    fp.IN_SYNC.clear()  # nor the apply's cache entry
    operations, statements = await quick(conn, dsn)
    assert operations == 0 and statements > 1  # full plan
    assert await quick(conn, dsn) == (0, 1)  # now cached
    assert await quick(conn, "postgresql://elsewhere/db") != (0, 1)  # another database's cache entry


@pytest.mark.parametrize(
    "ddl, kind",
    [
        ('ALTER TABLE "item" DROP COLUMN "name"', "ADD_COLUMN"),
        ('DROP INDEX "customer_name_idx"', "CREATE_INDEX"),
        ('DROP TABLE "item"', "CREATE_TABLE"),
        ('ALTER TABLE "item" ADD COLUMN "extra" TEXT', "DROP_COLUMN"),
    ],
)
async def test_a_dba_change_by_hand_falls_through_to_the_full_plan(
    dsn: str, conn: asyncpg.Connection, ddl: str, kind: str
) -> None:
    await applied(conn, dsn)
    assert await quick(conn, dsn) == (0, 1)
    await conn.execute(ddl)
    migration, _ = await plan(conn, DESIRED, OWNER, OPTIONS, dsn=dsn)
    assert [op.kind for op in migration.operations] == [kind]


async def test_a_running_attempt_still_takes_the_path_that_closes_it(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await applied(conn, dsn)
    assert await quick(conn, dsn) == (0, 1)
    # a process died after its last step, before recording it
    await conn.execute(
        "INSERT INTO dataflow_migrations (version, owner, description, status, safety_level, checksum,"
        " schema_hash, plan, applied_by) VALUES ('dead', $1, 'x', $2, 'SAFE', 'c', 'h', '{}', 'me')",
        OWNER,
        STATUS_RUNNING,
    )
    result = await reconcile(conn, dsn, DESIRED, OWNER, OPTIONS)
    assert result.outcome is Outcome.IN_SYNC and "closed 1 attempt(s)" in result.reason
    assert (
        await conn.fetchval("SELECT status FROM dataflow_migrations WHERE version = 'dead'") == "interrupted"
    )


async def test_another_owner_claiming_a_table_is_a_conflict_despite_the_cache(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await applied(conn, dsn)
    assert await quick(conn, dsn) == (0, 1)
    await conn.execute("UPDATE dataflow_owned_tables SET owner = 'other' WHERE table_name = 'item'")
    result = await reconcile(conn, dsn, DESIRED, OWNER, OPTIONS)
    assert result.outcome is Outcome.CONFLICT and result.conflicts == {"item": "other"}


async def test_an_owned_table_recreated_by_hand_is_dropped_again(dsn: str, conn: asyncpg.Connection) -> None:
    await applied(conn, dsn)
    smaller = replace(DESIRED, tables=tuple(t for t in DESIRED.tables if t.name != "item"))
    await applied(conn, dsn, smaller)  # drops item and gives it up
    assert await conn.fetchval("SELECT to_regclass('item')") is None
    await conn.execute("INSERT INTO dataflow_owned_tables (table_name, owner) VALUES ('item', $1)", OWNER)
    migration, _ = await plan(conn, smaller, OWNER, OPTIONS, dsn=dsn)
    assert migration.operations == []
    await conn.execute("CREATE TABLE item (id bigint)")
    migration, _ = await plan(conn, smaller, OWNER, OPTIONS, dsn=dsn)
    assert [op.kind for op in migration.operations] == ["DROP_TABLE"]


async def test_another_desired_schema_or_filter_is_planned_in_full(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await applied(conn, dsn)
    wider = replace(DESIRED, tables=(customer(Column("email", "TEXT")), *DESIRED.tables[1:])).normalised()
    migration, _ = await plan(conn, wider, OWNER, OPTIONS, dsn=dsn)
    assert "ADD_COLUMN" in [op.kind for op in migration.operations]

    # an apply limited to one table must not vouch for the whole schema
    partial = replace(OPTIONS, include_tables=("item",))
    changed = replace(
        DESIRED, tables=(customer(Column("email", "TEXT")), table("item", Column("sku", "TEXT")))
    )
    result = await reconcile(conn, dsn, changed.normalised(), OWNER, partial)
    assert result.outcome is Outcome.APPLIED
    migration, _ = await plan(conn, changed.normalised(), OWNER, OPTIONS, dsn=dsn)
    assert [(op.kind, op.table) for op in migration.operations] == [("ADD_COLUMN", "customer")]


async def test_planning_without_a_ledger_writes_nothing(dsn: str, conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE customer (id bigint PRIMARY KEY)")
    migration, _ = await plan(conn, DESIRED, OWNER, OPTIONS, dsn=dsn)
    assert migration.operations
    assert await conn.fetchval("SELECT to_regclass('dataflow_migrations')") is None
    async with conn.transaction():  # inside a transaction the ledger is looked up, not tried
        await fp.read(conn, "public", ["customer"], OWNER)
        assert await conn.fetchval("SELECT 1") == 1


async def test_the_models_schema_is_built_once_until_a_model_changes(dsn: str) -> None:
    db = dataflow(dsn)

    @db.model
    class Customer:
        name: str

    first = db.schema()
    assert db.schema() is first

    @db.model
    class Customer:  # noqa: F811 - replacing a model is the point
        name: str
        email: str

    second = db.schema()
    assert second is not first and second.table("customer").column("email") is not None
    db.schema_name = "sales"
    assert db.schema().name == "sales"
