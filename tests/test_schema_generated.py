"""Stored generated columns and identity options: model and manifest syntax, introspection, diff, grade,
SQL and undo, round-tripped on real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from dataflow import Field
from dataflow.errors import SchemaError
from dataflow.introspect import introspect
from dataflow.operations import Risk
from dataflow.options import MigrationOptions
from dataflow.plan import build_migration
from dataflow.reconcile import Outcome, reconcile
from dataflow.schema import Schema
from tests.helpers import dataflow

OWNER = "generated"


async def full_plan(conn: asyncpg.Connection, desired: Schema) -> list[tuple[str, str, str]]:
    """The whole plan (introspection, diff, probes), as (kind, table, name)."""
    migration = await build_migration(conn, await introspect(conn, tables=desired.table_names), desired)
    return [(op.kind, op.table, op.change.name) for op in migration.operations]


async def test_generated_column_from_a_model_round_trips(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Line:
        __dataflow__ = {"indexes": [{"fields": ["total"]}]}
        price: Decimal
        quantity: int
        total: Decimal = Field(generated="price * quantity")

    assert (await db.auto_migrate(auto_confirm=True))[0]
    await conn.execute("INSERT INTO line (price, quantity) VALUES (2.50, 4), (1, 3)")
    assert [r["total"] for r in await conn.fetch("SELECT total FROM line ORDER BY id")] == [10, 3]
    column = (await introspect(conn)).schema.table("line").column("total")
    assert (column.generated, column.default) == ("price * CAST(quantity AS numeric)", None)

    desired = db.schema()
    assert await full_plan(conn, desired) == []
    result = await reconcile(conn, dsn, desired, "library:public", MigrationOptions())  # the fingerprint path
    assert result.outcome is Outcome.IN_SYNC

    @db.model
    class Line:  # noqa: F811
        __dataflow__ = {"indexes": [{"fields": ["total"]}]}
        price: Decimal
        quantity: int
        total: Decimal = Field(generated="price * quantity + 1")

    success, [m] = await db.auto_migrate(auto_confirm=True)
    assert success
    [change] = [op for op in m.operations if op.kind == "ALTER_GENERATED"]
    assert change.risk is Risk.MEDIUM and "recomputes 2 rows" in change.assessment.reason
    # dropping the column takes its index: rebuilt around the change
    assert {op.kind for op in m.operations} == {"ALTER_GENERATED", "DROP_INDEX", "CREATE_INDEX"}
    assert [r["total"] for r in await conn.fetch("SELECT total FROM line ORDER BY id")] == [11, 4]
    assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'line'") == 2
    assert await full_plan(conn, db.schema()) == []

    assert await db.rollback_migration(m.version)
    assert [r["total"] for r in await conn.fetch("SELECT total FROM line ORDER BY id")] == [10, 3]
    restored = (await introspect(conn)).schema.table("line")
    assert restored.column("total").generated == "price * CAST(quantity AS numeric)"
    assert [ix.columns for ix in restored.indexes] == [("total",)]
    assert await full_plan(conn, desired) == []


async def test_generated_column_from_a_manifest_and_its_grades(conn: asyncpg.Connection) -> None:
    def manifest(generated: str | None) -> Schema:
        total = {"name": "total", "type": "INTEGER", **({"generated": generated} if generated else {})}
        columns = [
            {"name": "id", "type": "INTEGER", "nullable": False},
            {"name": "n", "type": "INTEGER"},
            total,
        ]
        return Schema.from_dict({"tables": [{"name": "t", "primaryKey": ["id"], "columns": columns}]})

    first = manifest("(n)*2")
    assert first.table("t").column("total").generated == "n * 2"
    assert "generated" in first.canonical_json()
    assert "generated" not in manifest(None).canonical_json()  # unused: the canonical form is as before
    migration = await build_migration(conn, await introspect(conn), first)
    [sql] = migration.operations[0].sql_up
    assert '"total" INTEGER GENERATED ALWAYS AS (n * 2) STORED NULL' in sql
    for statement in migration.operations[0].sql_up:
        await conn.execute(statement)
    assert await full_plan(conn, first) == []

    # an empty table recomputes nothing worth a grade
    [op] = (await build_migration(conn, await introspect(conn), manifest("n * 3"))).operations
    assert (op.kind, op.risk) == ("ALTER_GENERATED", Risk.SAFE)

    await conn.execute("INSERT INTO t (id, n) VALUES (1, 5)")
    # generated -> plain keeps the values, catalog only
    [op] = (await build_migration(conn, await introspect(conn), manifest(None))).operations
    assert (op.kind, op.risk) == ("ALTER_GENERATED", Risk.SAFE)
    assert op.sql_up == ('ALTER TABLE "public"."t" ALTER COLUMN "total" DROP EXPRESSION;',)
    await conn.execute(op.sql_up[0])
    assert await conn.fetchval("SELECT total FROM t") == 10
    # plain -> generated loses the stored values
    [op] = (await build_migration(conn, await introspect(conn), first)).operations
    assert (op.kind, op.risk) == (
        "ALTER_GENERATED",
        Risk.HIGH,
    ) and "lose their stored value" in op.assessment.reason


async def test_adding_a_generated_column_to_a_filled_table_is_graded_by_size(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("CREATE TABLE t (id int PRIMARY KEY, n int)")
    await conn.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
    await conn.execute("ANALYZE t")
    state = await introspect(conn)
    desired = Schema.from_dict(
        {
            "tables": [
                {
                    "name": "t",
                    "primaryKey": ["id"],
                    "columns": [
                        {"name": "id", "type": "INTEGER", "nullable": False},
                        {"name": "n", "type": "INTEGER"},
                        {"name": "sq", "type": "INTEGER", "generated": "n * n"},
                    ],
                }
            ]
        }
    )
    [op] = (await build_migration(conn, state, desired)).operations
    assert (op.kind, op.risk) == ("ADD_COLUMN", Risk.MEDIUM) and "recomputes 100 rows" in op.assessment.reason


def _identity_schema(start: int | None, increment: int | None) -> Schema:
    column = {"name": "id", "type": "BIGINT", "nullable": False, "identity": "ALWAYS"}
    if start is not None:
        column["identityStart"] = start
    if increment is not None:
        column["identityIncrement"] = increment
    return Schema.from_dict({"tables": [{"name": "t", "primaryKey": ["id"], "columns": [column]}]})


async def test_identity_options_round_trip(dsn: str, conn: asyncpg.Connection) -> None:
    first = _identity_schema(1000, None)
    assert (await reconcile(conn, dsn, first, OWNER, MigrationOptions())).outcome is Outcome.APPLIED
    assert (await introspect(conn)).schema.table("t").column("id").identity_start == 1000
    assert await conn.fetchval("INSERT INTO t DEFAULT VALUES RETURNING id") == 1000
    assert await full_plan(conn, first) == []
    assert (await reconcile(conn, dsn, first, OWNER, MigrationOptions())).outcome is Outcome.IN_SYNC

    second = _identity_schema(1000, 10)
    result = await reconcile(conn, dsn, second, OWNER, MigrationOptions())
    assert result.outcome is Outcome.APPLIED, result.reason
    [op] = result.migration.operations
    assert (op.kind, op.risk) == ("ALTER_IDENTITY", Risk.SAFE)
    assert op.sql_up == (
        'ALTER TABLE "public"."t" ALTER COLUMN "id" SET START WITH 1000 SET INCREMENT BY 10;',
    )
    assert await conn.fetchval("INSERT INTO t DEFAULT VALUES RETURNING id") == 1010
    assert await full_plan(conn, second) == []
    assert (await reconcile(conn, dsn, second, OWNER, MigrationOptions())).outcome is Outcome.IN_SYNC

    # changed by hand: the fingerprint moves, so the fast path does not call it in sync
    await conn.execute("ALTER TABLE t ALTER COLUMN id SET INCREMENT BY 5")
    result = await reconcile(conn, dsn, second, OWNER, MigrationOptions(dry_run=True))
    assert result.outcome is Outcome.DRY_RUN and [o.kind for o in result.migration.operations] == [
        "ALTER_IDENTITY"
    ]
    await conn.execute("ALTER TABLE t ALTER COLUMN id SET INCREMENT BY 10")

    for statement in op.sql_down:
        await conn.execute(statement)
    assert (await introspect(conn)).schema.table("t").column("id").identity_increment is None
    assert await full_plan(conn, first) == []


def test_identity_options_of_a_model_id() -> None:
    db = dataflow("postgresql://unused/db")

    @db.model
    class Ticket:
        __dataflow__ = {"identity": {"start": 500, "increment": 1}}
        title: str

    column = db.schema().table("ticket").column("id")
    assert (column.identity_start, column.identity_increment) == (500, None)


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ({"generated": "n *"}, "tables[0].columns[1].generated"),
        ({"generated": "n * 2", "default": "1"}, "tables[0].columns[1].generated"),
        ({"identityStart": 5}, "tables[0].columns[1].identityStart"),
        ({"identity": "ALWAYS", "identityIncrement": 0}, "tables[0].columns[1].identityIncrement"),
        ({"identity": "ALWAYS", "identityStart": "5"}, "tables[0].columns[1].identityStart"),
    ],
)
def test_bad_manifest_columns_name_the_field(column: dict[str, object], field: str) -> None:
    columns = [{"name": "id", "type": "INTEGER"}, {"name": "n", "type": "INTEGER", **column}]
    with pytest.raises(SchemaError) as caught:
        Schema.from_dict({"tables": [{"name": "t", "columns": columns}]})
    assert field in str(caught.value)


def test_bad_model_generated_names_the_field() -> None:
    db = dataflow("postgresql://unused/db")

    class Bad:
        n: int
        twice: int = Field(generated="n * 2", sql_default="1")

    with pytest.raises(SchemaError, match=r"Bad\.twice\.generated"):
        db.model(Bad)


def _sequence_schema(**options: object) -> Schema:
    table = {
        "name": "invoice",
        "primaryKey": ["id"],
        "columns": [
            {"name": "id", "type": "BIGINT", "nullable": False},
            {"name": "number", "type": "BIGINT"},
        ],
    }
    return Schema.from_dict({"tables": [table], "sequences": [{"name": "invoice_no", **options}]})


async def test_sequences_round_trip_and_undeclared_ones_are_left_alone(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await conn.execute("CREATE SEQUENCE dba_seq INCREMENT BY 7")
    first = _sequence_schema(start=1000, ownedBy="invoice.number")
    assert (
        '"sequences":[{"name":"invoice_no","ownedBy":"invoice.number","start":1000}]'
        in first.canonical_json()
    )
    assert "sequences" not in Schema.from_dict({"tables": []}).canonical_json()
    result = await reconcile(conn, dsn, first, OWNER, MigrationOptions())
    assert result.outcome is Outcome.APPLIED, result.reason
    assert [op.kind for op in result.migration.operations] == [
        "CREATE_SEQUENCE",
        "CREATE_TABLE",
        "ALTER_SEQUENCE",
    ]
    assert await conn.fetchval("SELECT nextval('invoice_no')") == 1000
    read = {q.name: q for q in (await introspect(conn)).schema.sequences}
    assert read["invoice_no"] == first.sequences[0]
    assert await full_plan(conn, first) == []
    assert (await reconcile(conn, dsn, first, OWNER, MigrationOptions())).outcome is Outcome.IN_SYNC

    second = _sequence_schema(start=1000, increment=5)  # no longer owned by the column
    result = await reconcile(conn, dsn, second, OWNER, MigrationOptions())
    assert result.outcome is Outcome.APPLIED, result.reason
    [op] = result.migration.operations
    assert (op.kind, op.risk) == ("ALTER_SEQUENCE", Risk.SAFE)
    assert op.sql_up == (
        'ALTER SEQUENCE "public"."invoice_no" START WITH 1000 INCREMENT BY 5 OWNED BY NONE;',
    )
    assert await conn.fetchval("SELECT nextval('invoice_no')") == 1005
    assert await full_plan(conn, second) == []
    assert (await reconcile(conn, dsn, second, OWNER, MigrationOptions())).outcome is Outcome.IN_SYNC

    # changed by hand: the fingerprint moves
    await conn.execute("ALTER SEQUENCE invoice_no INCREMENT BY 2")
    result = await reconcile(conn, dsn, second, OWNER, MigrationOptions(dry_run=True))
    assert [o.kind for o in result.migration.operations] == ["ALTER_SEQUENCE"]
    await conn.execute("ALTER SEQUENCE invoice_no INCREMENT BY 5")

    for statement in op.sql_down:  # undo restores the first state
        await conn.execute(statement)
    assert await full_plan(conn, first) == []

    # a sequence left out, and one never declared, are not touched
    left_out = Schema.from_dict({"tables": [to_table(first)]})
    assert await full_plan(conn, left_out) == []
    assert (
        await conn.fetchval("SELECT seqincrement FROM pg_sequence WHERE seqrelid = 'dba_seq'::regclass") == 7
    )


def to_table(schema: Schema) -> dict[str, object]:
    return schema.to_dict()["tables"][0]


def test_sequences_of_a_model() -> None:
    db = dataflow("postgresql://unused/db")

    @db.model
    class Invoice:
        __dataflow__ = {
            "sequences": ["plain", {"name": "invoice_no", "start": 1000, "owned_by": "invoice.number"}]
        }
        number: int

    assert [(q.name, q.start, q.owned_by) for q in db.schema().sequences] == [
        ("invoice_no", 1000, "invoice.number"),
        ("plain", None, None),
    ]


@pytest.mark.parametrize(
    ("sequence", "field"),
    [
        ({"name": "s", "increment": 0}, "sequences[0].increment"),
        ({"name": "s", "start": 1.5}, "sequences[0].start"),
        ({"name": "s", "ownedBy": "nodot"}, "sequences[0].ownedBy"),
        ({"name": "s", "cycle": True}, "sequences[0].cycle"),
        ({"start": 1}, "sequences[0].name"),
    ],
)
def test_bad_sequences_name_the_field(sequence: dict[str, object], field: str) -> None:
    with pytest.raises(SchemaError) as caught:
        Schema.from_dict({"tables": [], "sequences": [sequence]})
    assert field in str(caught.value)


async def test_dropping_a_generated_column_loses_nothing_and_its_undo_recomputes(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute(
        "CREATE TABLE t (id int PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) STORED)"
    )
    await conn.execute("INSERT INTO t (id, n) VALUES (1, 4)")
    table = {
        "name": "t",
        "primaryKey": ["id"],
        "columns": [{"name": "id", "type": "INTEGER", "nullable": False}],
    }
    table["columns"].append({"name": "n", "type": "INTEGER"})
    [op] = (
        await build_migration(conn, await introspect(conn), Schema.from_dict({"tables": [table]}))
    ).operations
    assert (op.kind, op.risk, op.backup, op.assessment.data_loss) == ("DROP_COLUMN", Risk.MEDIUM, None, False)
    for statement in op.sql_up:
        await conn.execute(statement)
    for statement in op.sql_down:
        await conn.execute(statement)
    assert await conn.fetchval("SELECT twice FROM t") == 8
    assert (await introspect(conn)).schema.table("t").column("twice").generated == "n * 2"
