"""Issue 11, enum types: an ``enum.Enum`` annotation becomes a PostgreSQL enum type (snake_case of the class).

Creating it runs before the tables; adding a label is SAFE (ADD VALUE where the model lists it), a declared
rename is MEDIUM (RENAME VALUE), removing a label is HIGH, counts the rows that hold it and swaps the type.
Each step re-plans empty (full plan and fingerprint path) and the undo restores the labels.
"""

import enum
from dataclasses import replace

import asyncpg
import pytest

from dataflow.errors import SchemaError
from dataflow.models import enum_type, model_to_table
from dataflow.reconcile import plan
from dataflow.schema import EnumRename, EnumType, Schema
from tests.helpers import dataflow, output, replans_empty


async def labels(conn: asyncpg.Connection, name: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = $1"
        " ORDER BY e.enumsortorder",
        name,
    )
    return [r[0] for r in rows]


def test_an_enum_class_maps_to_a_snake_case_type_and_the_manifest_form_round_trips() -> None:
    class OrderStatus(enum.Enum):
        PENDING = "pending"
        SHIPPED = "shipped"

    class Order:
        status: OrderStatus = OrderStatus.PENDING

    table = model_to_table(Order)
    assert [(c.name, c.type, c.default) for c in table.columns][1] == ("status", "order_status", "'pending'")
    assert enum_type(OrderStatus) == EnumType("order_status", ("pending", "shipped"))

    schema = Schema((table,), enums=(enum_type(OrderStatus),))
    data = schema.to_dict()
    assert data["enums"] == [{"name": "order_status", "values": ["pending", "shipped"]}]
    assert Schema.from_dict(data) == schema.normalised()
    assert Schema.from_dict(data).hash() == schema.hash()
    # a schema without enums keeps its canonical form (and hash) as before
    assert "enums" not in Schema((table,)).to_dict()

    renamed = {"name": "s", "values": ["a"], "renamedValues": [{"from": "x", "to": "a"}]}
    assert Schema.from_dict({"tables": [], "enums": [renamed]}).enums[0].renamed_values == (
        EnumRename("x", "a"),
    )
    with pytest.raises(SchemaError, match=r"enums\[0\]\.values"):
        Schema.from_dict({"tables": [], "enums": [{"name": "s", "values": ["a", "a"]}]})
    with pytest.raises(SchemaError, match=r"enums\[0\]\.renamedValues\[0\]\.to"):
        Schema.from_dict({"tables": [], "enums": [{**renamed, "renamedValues": [{"from": "x", "to": "b"}]}]})


async def test_enum_round_trip_add_rename_remove_and_undo(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    class Mood(enum.Enum):
        HAPPY = "happy"
        SAD = "sad"

    @db.model
    class Person:
        name: str
        mood: Mood = Mood.HAPPY

    ok, [created] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert [(op.kind, op.risk.name) for op in created.operations] == [
        ("CREATE_ENUM", "SAFE"),
        ("CREATE_TABLE", "SAFE"),
    ]
    assert created.sql_up[0] == """CREATE TYPE "public"."mood" AS ENUM ('happy', 'sad');"""
    assert await labels(conn, "mood") == ["happy", "sad"]
    await replans_empty(db)
    await conn.execute("INSERT INTO person (name) VALUES ('ann'), ('bob')")
    await conn.execute("INSERT INTO person (name, mood) VALUES ('cy', 'sad')")

    # adding a label in the middle: SAFE, placed where the model lists it
    class Mood(enum.Enum):  # type: ignore[no-redef]
        HAPPY = "happy"
        CALM = "calm"
        SAD = "sad"

    @db.model
    class Person:  # type: ignore[no-redef]  # noqa: F811
        name: str
        mood: Mood = Mood.HAPPY

    ok, [added] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    [op] = added.operations
    assert (op.kind, op.risk.name) == ("ALTER_ENUM", "SAFE")
    assert op.steps[0].sql == """ALTER TYPE "public"."mood" ADD VALUE IF NOT EXISTS 'calm' AFTER 'happy';"""
    assert not op.steps[0].transactional
    assert await labels(conn, "mood") == ["happy", "calm", "sad"]
    await replans_empty(db)

    # a declared rename: MEDIUM, rows keep their value
    class Mood(enum.Enum):  # type: ignore[no-redef]
        __dataflow__ = {"renamed_values": {"sad": "blue"}}
        HAPPY = "happy"
        CALM = "calm"
        BLUE = "blue"

    @db.model
    class Person:  # type: ignore[no-redef]  # noqa: F811
        name: str
        mood: Mood = Mood.HAPPY

    ok, [renamed] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    [op] = renamed.operations
    assert (op.kind, op.risk.name) == ("ALTER_ENUM", "MEDIUM")
    assert "renames sad to blue" in op.assessment.reason
    assert await conn.fetchval("SELECT mood::text FROM person WHERE name = 'cy'") == "blue"
    await replans_empty(db)

    # removing a label some rows hold: HIGH, counted; the type swap fails and leaves everything as it was
    class Mood(enum.Enum):  # type: ignore[no-redef]
        HAPPY = "happy"
        CALM = "calm"

    @db.model
    class Person:  # type: ignore[no-redef]  # noqa: F811
        name: str
        mood: Mood = Mood.HAPPY

    [pending] = await db.get_pending_migrations()
    [op] = pending.operations
    assert (op.kind, op.risk.name, op.assessment.affected_rows) == ("ALTER_ENUM", "HIGH", 1)
    assert "1 row hold" in op.assessment.reason or "1 row" in op.assessment.reason
    ok, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert not ok
    assert await labels(conn, "mood") == ["happy", "calm", "blue"]

    # with no row holding it the swap succeeds, keeps the column's default and data, and re-plans empty
    await conn.execute("UPDATE person SET mood = 'calm' WHERE name = 'cy'")
    [pending] = await db.get_pending_migrations()
    assert pending.operations[0].assessment.affected_rows == 0
    ok, [removed] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert ok, output(db)
    assert removed.operations[0].strategy == "type swap"
    assert await labels(conn, "mood") == ["happy", "calm"]
    assert await conn.fetchval("SELECT count(*) FROM pg_type WHERE typname LIKE 'mood%'") == 1
    assert [r[0] for r in await conn.fetch("SELECT mood::text FROM person ORDER BY name")] == [
        "happy",
        "happy",
        "calm",
    ]
    await conn.execute("INSERT INTO person (name) VALUES ('dee')")
    assert await conn.fetchval("SELECT mood::text FROM person WHERE name = 'dee'") == "happy"
    await replans_empty(db)

    # undo restores the labels, newest first: removal, rename, addition
    assert await db.rollback_migration(removed.version)
    assert await labels(conn, "mood") == ["happy", "calm", "blue"]
    assert await db.rollback_migration(renamed.version)
    assert await labels(conn, "mood") == ["happy", "calm", "sad"]
    await conn.execute("UPDATE person SET mood = 'happy' WHERE mood = 'calm'")
    assert await db.rollback_migration(added.version)
    assert await labels(conn, "mood") == ["happy", "sad"]
    # and undoing the creation drops the (emptied: a backup copy would keep using the type) table, then the type
    await conn.execute("DELETE FROM person")
    assert await db.rollback_migration(created.version), output(db)[-2000:]
    assert await conn.fetchval("SELECT to_regtype('mood')") is None


async def test_a_dbas_enum_is_never_touched(dsn: str, conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TYPE colour AS ENUM ('red', 'green')")
    await conn.execute("CREATE TABLE paint (id int PRIMARY KEY, c colour)")
    db = dataflow(dsn)

    class Size(enum.Enum):
        S = "s"
        M = "m"

    @db.model
    class Shirt:
        size: Size | None = None

    ok, [m] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert [op.kind for op in m.operations] == ["CREATE_ENUM", "CREATE_TABLE"]
    await replans_empty(db)
    assert await labels(conn, "colour") == ["red", "green"]


async def test_a_label_added_by_hand_moves_the_fingerprint_and_is_planned_away(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    class Tier(enum.Enum):
        FREE = "free"
        PRO = "pro"

    @db.model
    class Plan:
        tier: Tier = Tier.FREE

    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    await replans_empty(db)
    # DDL by hand on the type only: the fast path must not trust its cached empty plan
    await conn.execute("ALTER TYPE tier ADD VALUE 'gold'")
    async with db.connection() as c:
        fast, _ = await plan(c, db.schema(), db.owner, db.options)
    [op] = fast.operations
    assert (op.kind, op.risk.name, op.assessment.affected_rows) == ("ALTER_ENUM", "HIGH", 0)


async def test_an_unused_enum_is_dropped_after_its_table_only_when_the_owner_set_is_complete(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    class Colour(enum.Enum):
        RED = "red"

    @db.model
    class Car:
        colour: Colour = Colour.RED

    @db.model
    class Driver:
        name: str

    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)

    db2 = dataflow(dsn)

    @db2.model
    class Driver:  # type: ignore[no-redef]  # noqa: F811
        name: str

    async with db2.connection() as c:
        kept, _ = await plan(c, db2.schema(), db.owner, db2.options, fast=False)
        complete = replace(db2.options, drop_missing_tables=True)
        dropped, _ = await plan(c, db2.schema(), db.owner, complete, fast=False)
    assert [op.kind for op in kept.operations] == []
    assert [(op.kind, op.table) for op in dropped.operations] == [
        ("DROP_TABLE", "car"),
        ("DROP_ENUM", "colour"),
    ]
    assert dropped.operations[1].sql_down == ("""CREATE TYPE "public"."colour" AS ENUM ('red');""",)
