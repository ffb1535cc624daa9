"""The fast plan and apply paths: raw catalog facts read back exactly, one round trip per statement, no probes."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from dataflow import executor
from dataflow.errors import MigrationFailed
from dataflow.executor import execute_one
from dataflow.introspect import introspect
from dataflow.options import MigrationOptions
from dataflow.plan import build_migration
from dataflow.reconcile import Outcome, reconcile
from dataflow.schema import Column, ForeignKey, Index, Schema, Table

OWNER = "fast"


async def test_index_keys_read_raw_come_back_as_written(conn: asyncpg.Connection) -> None:
    await conn.execute('CREATE TABLE t (id int PRIMARY KEY, "Email x" text, n int, body text)')
    await conn.execute('CREATE INDEX t_plain ON t (n, "Email x")')
    await conn.execute('CREATE INDEX t_expr ON t (lower("Email x"), n)')
    await conn.execute("CREATE INDEX t_partial ON t (n) WHERE n > 0")
    await conn.execute(
        'CREATE INDEX t_desc ON t (n DESC NULLS FIRST, "Email x" text_pattern_ops) INCLUDE (body)'
    )
    await conn.execute("CREATE UNIQUE INDEX t_gin ON t (n) WHERE body IS NOT NULL")
    indexes = {ix.name: ix for ix in (await introspect(conn, "public")).schema.table("t").indexes}
    assert indexes["t_plain"].columns == ("n", "Email x")
    assert indexes["t_expr"].columns == ('lower("Email x")', "n")
    assert (indexes["t_partial"].columns, indexes["t_partial"].where) == (("n",), "n > 0")
    assert indexes["t_desc"].columns == ("n", "Email x")  # key columns only, as before
    assert indexes["t_gin"].unique and indexes["t_gin"].where == "body IS NOT NULL"


async def test_keys_of_constraints_name_their_columns_inside_and_outside_the_tables_read(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("CREATE SCHEMA other")
    await conn.execute("CREATE TABLE other.b (z int, bid int UNIQUE)")
    await conn.execute("CREATE TABLE a (x int, y int, ref int REFERENCES other.b (bid), PRIMARY KEY (y, x))")
    await conn.execute("ALTER TABLE a ADD CONSTRAINT a_xy UNIQUE (x, y)")
    await conn.execute("CREATE TABLE c (q int, p int, w int, FOREIGN KEY (w, p) REFERENCES a (y, x))")
    state = await introspect(conn, "public", tables=["a"])
    a = state.schema.table("a")
    assert a.primary_key == ("y", "x")
    assert [u.columns for u in a.uniques] == [("x", "y")]
    [fk] = a.foreign_keys
    assert (fk.columns, fk.ref_table, fk.ref_columns) == (("ref",), "b", ("bid",))
    [(table, outside)] = state.outside_foreign_keys
    assert (table, outside.columns, outside.ref_table, outside.ref_columns) == (
        "c",
        ("w", "p"),
        "a",
        ("y", "x"),
    )


async def test_a_key_pointing_at_a_same_named_table_in_another_schema_is_not_read(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("CREATE SCHEMA other")
    await conn.execute("CREATE TABLE other.t (id int PRIMARY KEY)")
    await conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    await conn.execute("CREATE TABLE x (tid int REFERENCES other.t (id))")
    state = await introspect(conn, "public", tables=["t"])
    assert state.outside_foreign_keys == ()  # x points at other.t, not at the public t read


async def test_a_whole_schema_apply_sends_each_statement_once_as_one_simple_query(
    dsn: str, conn: asyncpg.Connection
) -> None:
    tables = tuple(
        Table(
            f"t{i}",
            (Column("id", "BIGINT", nullable=False), Column("ref", "BIGINT"), Column("code", "TEXT")),
            primary_key=("id",),
            indexes=(Index(f"t{i}_code_idx", ("code",)),),
            foreign_keys=(ForeignKey(f"t{i}_ref_fkey", ("ref",), "t0", ("id",)),) if i else (),
        )
        for i in range(5)
    )
    logged: list[asyncpg.connection.LoggedQuery] = []
    conn.add_query_logger(logged.append)
    result = await reconcile(conn, dsn, Schema(tables).normalised(), OWNER, MigrationOptions())
    await asyncio.sleep(0)  # loggers run via call_soon
    conn.remove_query_logger(logged.append)
    assert result.outcome is Outcome.APPLIED
    sent = [q.query for q in logged if not q.args]
    for sql in result.migration.sql_up:
        assert sent.count(sql) == 1, sql


async def test_the_single_round_trip_still_refuses_two_statements(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE victim (id int)")
    with pytest.raises(MigrationFailed, match="one statement per execute"):
        await execute_one(conn, "SELECT 1; DROP TABLE victim")
    assert await execute_one(conn, "INSERT INTO victim VALUES (1)") == "INSERT 0 1"
    assert await conn.fetchval("SELECT count(*) FROM victim") == 1


async def test_a_server_that_lexes_backslashes_differently_gets_the_extended_protocol(
    conn: asyncpg.Connection,
) -> None:
    """With standard_conforming_strings off, pglast sees one statement where the server sees two."""
    await conn.execute("CREATE TABLE victim (id int)")
    await conn.execute("SET standard_conforming_strings = off")
    with pytest.raises(MigrationFailed, match="several statements"):
        await execute_one(conn, "SELECT 'a\\', '; DROP TABLE victim; --'")
    await conn.execute("RESET standard_conforming_strings")
    assert await conn.fetchval("SELECT to_regclass('victim') IS NOT NULL")


async def test_planning_new_tables_probes_nothing(conn: asyncpg.Connection) -> None:
    """Planning 1 or 30 new tables (with foreign keys) sends the same catalog queries and no probe."""

    async def queries(n: int) -> int:
        desired = Schema(
            tuple(
                Table(
                    f"n{i}",
                    (Column("id", "BIGINT", nullable=False), Column("ref", "BIGINT", default="0")),
                    primary_key=("id",),
                    foreign_keys=(ForeignKey(f"n{i}_ref_fkey", ("ref",), "n0", ("id",)),),
                )
                for i in range(n)
            )
        ).normalised()
        logged: list[object] = []
        conn.add_query_logger(logged.append)
        state = await introspect(conn, "public", tables=desired.table_names)
        migration = await build_migration(conn, state, desired)
        await asyncio.sleep(0)
        conn.remove_query_logger(logged.append)
        assert len(migration.operations) == 2 * n
        return len(logged)

    await queries(1)  # warm-up: asyncpg reads the types of a first result itself
    assert await queries(1) == await queries(30)


# a whole schema in bounded transactions ------------------------------------------------------------------
def new_tables(n: int, bad_key: bool = False) -> Schema:
    """``n`` new tables with a primary key and an index each; ``bad_key`` adds a foreign key that must fail
    (it refers to a column with no unique constraint), which runs last."""
    tables = [
        Table(
            f"t{i:02d}",
            (Column("id", "BIGINT", nullable=False), Column("v", "INTEGER")),
            primary_key=("id",),
            indexes=(Index(f"t{i:02d}_v_idx", ("v",)),),
            foreign_keys=(ForeignKey("t00_v_fkey", ("v",), "t01", ("v",)),) if bad_key and i == 0 else (),
        )
        for i in range(n)
    ]
    return Schema(tuple(tables))


async def test_a_whole_schema_is_applied_in_bounded_transactions(
    dsn: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of new tables in one transaction outgrow the server's lock table (5,000 did: "out of shared
    memory"); operations on new tables are split between transactions, and nothing else is."""
    monkeypatch.setattr(executor, "MAX_NEW_TABLE_STATEMENTS", 5)
    migration = await build_migration(
        conn, await introspect(conn), new_tables(12), options=MigrationOptions()
    )
    groups = executor.group_steps(migration.operations)
    assert len(groups) > 1 and all(len(g.steps) <= 6 for g in groups)  # an operation is never cut in two
    homes: dict[int, set[int]] = {}
    for n, g in enumerate(groups):
        for i, _ in g.steps:
            homes.setdefault(i, set()).add(n)
    assert all(len(h) == 1 for h in homes.values())  # each operation's statements share one transaction
    commits: list[str] = []
    conn.add_query_logger(lambda q: commits.append(q.query) if q.query.strip().upper() == "COMMIT;" else None)
    result = await reconcile(conn, dsn, new_tables(12), "test", MigrationOptions())
    assert result.outcome is Outcome.APPLIED, result.reason
    assert len(commits) >= len(groups)
    assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename LIKE 't__'") == 12


async def test_a_failure_in_a_later_transaction_undoes_the_earlier_ones(
    dsn: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "MAX_NEW_TABLE_STATEMENTS", 5)
    result = await reconcile(conn, dsn, new_tables(12, bad_key=True), "test", MigrationOptions())
    assert result.outcome is Outcome.FAILED and "completed operation(s) were undone" in result.reason, (
        result.reason
    )
    assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename LIKE 't__'") == 0
    assert await conn.fetchval("SELECT status FROM dataflow_migrations ORDER BY id DESC LIMIT 1") == "failed"


def test_changes_to_existing_tables_stay_in_one_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataflow.operations import Assessment, Change, Operation, Risk, Step

    monkeypatch.setattr(executor, "MAX_NEW_TABLE_STATEMENTS", 2)
    ops = [
        Operation(
            Change("ADD_COLUMN", "old", f"c{i}"), Assessment(Risk.SAFE, "", "", 0), (Step(f"-- {i}"),), ()
        )
        for i in range(6)
    ]
    assert len(executor.group_steps(ops)) == 1
