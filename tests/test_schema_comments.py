"""Issue 11, comments and collations: a model's docstring and ``Field(comment=...)`` become COMMENT ON,
``Field(collation=...)`` a column's collation. Each round-trips on real PostgreSQL: create, re-plan empty
(full plan and the fingerprint path), change, re-plan empty, and the rollback restores the catalog."""

from __future__ import annotations

import asyncpg
import pytest

from dataflow import Field
from dataflow.errors import SchemaError
from dataflow.models import model_to_table
from dataflow.schema import Schema
from tests.helpers import dataflow, output, replans_empty


async def comments(conn: asyncpg.Connection, table: str) -> dict[str, str | None]:
    rows = await conn.fetch(
        "SELECT coalesce(a.attname, '') AS col, col_description(c.oid, coalesce(a.attnum, 0)::int) AS comment"
        " FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
        " WHERE c.relname = $1 UNION ALL SELECT '', obj_description($1::regclass, 'pg_class')",
        table,
    )
    found: dict[str, str | None] = {}
    for r in rows:
        if r["comment"] is not None or r["col"] not in found:
            found[r["col"]] = r["comment"]
    return {k: v for k, v in found.items() if v is not None}


async def collation(conn: asyncpg.Connection, table: str, column: str) -> str:
    return await conn.fetchval(
        "SELECT co.collname FROM pg_attribute a JOIN pg_collation co ON co.oid = a.attcollation"
        " WHERE a.attrelid = $1::regclass AND a.attname = $2",
        table,
        column,
    )


def test_docstring_and_field_comments_reach_the_manifest_form_and_back() -> None:
    class Invoice:
        """Invoices sent to customers.

        One row per invoice."""

        number: str = Field(comment="Printed on the invoice; it's unique")
        note: str = Field(nullable=True, collation="C")

    table = model_to_table(Invoice)
    assert table.comment == "Invoices sent to customers.\n\nOne row per invoice."
    data = Schema((table,)).to_dict()["tables"][0]
    assert data["comment"] == table.comment
    assert {
        "name": "number",
        "type": "TEXT",
        "nullable": False,
        "comment": "Printed on the invoice; it's unique",
    } in data["columns"]
    assert {"name": "note", "type": "TEXT", "collation": "C"} in data["columns"]
    assert Schema.from_dict({"tables": [data]}).tables[0] == table

    class Plain:
        name: str

    class DefaultCollation:
        name: str = Field(collation="default")

    class NoCollation:
        name: str

    assert model_to_table(DefaultCollation).columns == model_to_table(NoCollation).columns
    plain = Schema((model_to_table(Plain),)).to_dict()["tables"][0]
    assert "comment" not in plain and all(
        "comment" not in c and "collation" not in c for c in plain["columns"]
    )


def test_bad_comments_and_collations_name_the_field() -> None:
    class BadComment:
        name: str = Field(comment=3)  # type: ignore[arg-type]

    with pytest.raises(SchemaError, match=r"BadComment\.name\.comment"):
        model_to_table(BadComment)

    class BadCollation:
        name: str = Field(collation="")

    with pytest.raises(SchemaError, match=r"BadCollation\.name\.collation"):
        model_to_table(BadCollation)
    with pytest.raises(SchemaError, match=r"tables\[0\]\.columns\[0\]\.comment"):
        Schema.from_dict(
            {"tables": [{"name": "t", "columns": [{"name": "a", "type": "TEXT", "comment": 1}]}]}
        )


async def test_comments_round_trip_and_roll_back(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Invoice:
        """Invoices sent to customers; O'Brien's too."""

        number: str = Field(comment="Printed on the invoice")
        total: int = 0

    success, [created] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert [(op.kind, op.risk.name) for op in created.operations] == [
        ("CREATE_TABLE", "SAFE"),
        ("SET_COMMENT", "SAFE"),
        ("SET_COMMENT", "SAFE"),
    ]
    assert "COMMENT ON TABLE \"public\".\"invoice\" IS 'Invoices sent to customers; O''Brien''s too.';" in (
        created.sql_up
    )
    assert await comments(conn, "invoice") == {
        "": "Invoices sent to customers; O'Brien's too.",
        "number": "Printed on the invoice",
    }
    await replans_empty(db)

    @db.model
    class Invoice:  # noqa: F811
        """Invoices."""

        number: str = Field(comment="")  # declared empty: the comment goes
        total: int = Field(default=0, comment="In cents")

    success, [changed] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert sorted((op.kind, op.details, op.risk.name) for op in changed.operations) == [
        ("SET_COMMENT", "invoice: Invoices.", "SAFE"),
        ("SET_COMMENT", "number: (no comment)", "SAFE"),
        ("SET_COMMENT", "total: In cents", "SAFE"),
    ]
    assert await comments(conn, "invoice") == {"": "Invoices.", "total": "In cents"}
    await replans_empty(db)

    # the rollback puts every previous comment back
    assert await db.rollback_migration(changed.version)
    assert await comments(conn, "invoice") == {
        "": "Invoices sent to customers; O'Brien's too.",
        "number": "Printed on the invoice",
    }


async def test_a_model_without_docstring_leaves_the_databases_comment_alone(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    @db.model
    class Ticket:
        title: str

    assert await db.initialize()
    await conn.execute("COMMENT ON TABLE ticket IS 'written by the DBA'")
    await conn.execute("COMMENT ON COLUMN ticket.title IS 'also the DBA'")
    await replans_empty(db)
    assert await db.get_pending_migrations() == []
    assert await comments(conn, "ticket") == {"": "written by the DBA", "title": "also the DBA"}


async def test_a_comment_changed_by_hand_is_seen_by_the_fingerprint_path(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    @db.model
    class Ticket:
        """Support tickets."""

        title: str

    assert await db.initialize()
    assert await db.get_pending_migrations() == []  # the in-sync fingerprint is cached
    await conn.execute("COMMENT ON TABLE ticket IS 'edited by hand'")
    [pending] = await db.get_pending_migrations()
    assert [(op.kind, op.details) for op in pending.operations] == [
        ("SET_COMMENT", "ticket: Support tickets.")
    ]


async def test_collations_round_trip_graded_like_a_type_change(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Word:
        text: str = Field(collation="C", index=True)
        plain: str = Field(nullable=True)

    success, _ = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert await collation(conn, "word", "text") == "C"
    assert await collation(conn, "word", "plain") == "default"
    await replans_empty(db)
    await conn.execute("INSERT INTO word (text) SELECT 'w' || g FROM generate_series(1, 50) g")
    await conn.execute("ANALYZE word")

    @db.model
    class Word:  # noqa: F811
        text: str = Field(collation="POSIX", index=True)
        plain: str = Field(nullable=True, collation="C")

    [pending] = await db.get_pending_migrations()
    assert sorted((op.kind, op.details, op.risk.name) for op in pending.operations) == [
        ("ALTER_COLUMN_COLLATION", "plain: collation default → C", "MEDIUM"),
        ("ALTER_COLUMN_COLLATION", "text: collation C → POSIX", "MEDIUM"),
    ]
    assert 'ALTER TABLE "public"."word" ALTER COLUMN "text" TYPE TEXT COLLATE "POSIX";' in pending.sql_up
    success, [changed] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert success, output(db)
    assert await collation(conn, "word", "text") == "POSIX"
    assert await collation(conn, "word", "plain") == "C"
    await replans_empty(db)

    assert await db.rollback_migration(changed.version)
    assert await collation(conn, "word", "text") == "C"
    assert await collation(conn, "word", "plain") == "default"
    assert await conn.fetchval("SELECT count(*) FROM word") == 50


async def test_a_type_change_keeps_a_declared_collation(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Code:
        value: str = Field(max_length=10, collation="C")

    assert await db.initialize()

    @db.model
    class Code:  # noqa: F811
        value: str = Field(collation="C")

    success, [changed] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success, output(db)
    assert [op.kind for op in changed.operations] == ["ALTER_COLUMN_TYPE", "ALTER_COLUMN_COLLATION"]
    assert await collation(conn, "code", "value") == "C"
    await replans_empty(db)
