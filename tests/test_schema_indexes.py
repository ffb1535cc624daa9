"""Issue 11, index features and exclusion constraints round-trip on real PostgreSQL.

INCLUDE columns, expression keys, per-column sort order and NULLS FIRST/LAST, operator classes
(``gin_trgm_ops``), unique NULLS NOT DISTINCT (PostgreSQL 15+), and ``EXCLUDE USING gist`` with
``btree_gist`` created first: create, re-plan empty (full and fingerprint paths), change, re-plan
empty, roll back.
"""

from __future__ import annotations

import asyncpg
import pytest

from dataflow import Field
from dataflow.errors import SchemaError
from dataflow.schema import Exclusion, Index, Schema
from tests.helpers import dataflow, output, replans_empty


async def indexdefs(conn: asyncpg.Connection, table: str) -> dict[str, str]:
    rows = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table)
    return {r["indexname"]: r["indexdef"] for r in rows}


async def test_index_features_round_trip_change_and_roll_back(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Article:
        __dataflow__ = {
            "extensions": ["pg_trgm"],
            "indexes": [
                {
                    "name": "article_recent",
                    "fields": ["author", "created_at"],
                    "order": {"created_at": "DESC NULLS LAST"},
                    "include": ["title"],
                },
                {
                    "name": "article_title_trgm",
                    "fields": ["title"],
                    "method": "gin",
                    "opclasses": {"title": "gin_trgm_ops"},
                },
                {
                    "name": "article_lower_title",
                    "fields": ["lower(title)", "author"],
                    "order": ["ASC NULLS FIRST", "DESC"],
                },
            ],
        }
        author: str
        title: str
        created_at: str = Field(db_type="TIMESTAMPTZ", nullable=True)

    success, [migration] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    defs = await indexdefs(conn, "article")
    assert defs["article_recent"].endswith("(author, created_at DESC NULLS LAST) INCLUDE (title)")
    assert defs["article_title_trgm"].endswith("USING gin (title gin_trgm_ops)")
    assert defs["article_lower_title"].endswith("(lower(title) NULLS FIRST, author DESC)")
    await replans_empty(db)

    # the trigram index serves similarity searches
    await conn.execute("SET enable_seqscan = off")
    explained = "\n".join(
        r[0] for r in await conn.fetch("EXPLAIN SELECT * FROM article WHERE title % 'dataflow'")
    )
    assert "article_title_trgm" in explained

    # change the sort order and the included columns: dropped and created again, then empty
    @db.model
    class Article:  # noqa: F811
        __dataflow__ = {
            "extensions": ["pg_trgm"],
            "indexes": [
                {
                    "name": "article_recent",
                    "fields": ["author", "created_at"],
                    "order": {"created_at": "DESC"},
                },
                {
                    "name": "article_title_trgm",
                    "fields": ["title"],
                    "method": "gin",
                    "opclasses": {"title": "gin_trgm_ops"},
                },
                {
                    "name": "article_lower_title",
                    "fields": ["lower(title)", "author"],
                    "order": ["ASC NULLS FIRST", "DESC"],
                },
            ],
        }
        author: str
        title: str
        created_at: str = Field(db_type="TIMESTAMPTZ", nullable=True)

    success, [change] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert [(op.kind, op.details) for op in change.operations] == [
        ("DROP_INDEX", "article_recent (author, created_at DESC NULLS LAST) INCLUDE (title)"),
        ("CREATE_INDEX", "article_recent (author, created_at DESC)"),
    ]
    assert (await indexdefs(conn, "article"))["article_recent"].endswith("(author, created_at DESC)")
    await replans_empty(db)

    # undo restores the previous definition exactly
    assert await db.rollback_migration(change.version)
    assert (await indexdefs(conn, "article"))["article_recent"] == defs["article_recent"]


async def test_unique_nulls_not_distinct(dsn: str, conn: asyncpg.Connection) -> None:
    if conn.get_server_version().major < 15:
        pytest.skip("NULLS NOT DISTINCT needs PostgreSQL 15")
    db = dataflow(dsn)

    @db.model
    class Slot:
        __dataflow__ = {
            "indexes": [{"name": "slot_code", "fields": ["code"], "unique": True, "nulls_not_distinct": True}]
        }
        code: str = Field(nullable=True)

    success, [migration] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    await replans_empty(db)
    await conn.execute("INSERT INTO slot (code) VALUES (NULL)")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute("INSERT INTO slot (code) VALUES (NULL)")
    assert await db.rollback_migration(migration.version)
    assert await conn.fetchval("SELECT to_regclass('slot')") is None


async def test_exclusion_constraint_with_btree_gist_round_trips(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Booking:
        __dataflow__ = {
            "exclusions": [
                {
                    "name": "booking_no_overlap",
                    "elements": [("room", "="), ("tstzrange(starts, ends)", "&&")],
                    "where": "NOT cancelled",
                }
            ]
        }
        room: int
        starts: str = Field(db_type="TIMESTAMPTZ")
        ends: str = Field(db_type="TIMESTAMPTZ")
        cancelled: bool = False

    success, [migration] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert [op.kind for op in migration.operations] == ["CREATE_EXTENSION", "CREATE_TABLE"]
    assert "btree_gist" in await conn.fetchval("SELECT array_agg(extname)::text FROM pg_extension")
    await replans_empty(db)
    await conn.execute(
        "INSERT INTO booking (room, starts, ends) VALUES (1, '2026-01-01 10:00Z', '2026-01-01 11:00Z')"
    )
    with pytest.raises(asyncpg.ExclusionViolationError):
        await conn.execute(
            "INSERT INTO booking (room, starts, ends) VALUES (1, '2026-01-01 10:30Z', '2026-01-01 12:00Z')"
        )

    # change the operator set (drop the predicate): DROP_CONSTRAINT then ADD_EXCLUSION, graded by size
    @db.model
    class Booking:  # noqa: F811
        __dataflow__ = {
            "exclusions": [
                {"name": "booking_no_overlap", "elements": [("room", "="), ("tstzrange(starts, ends)", "&&")]}
            ]
        }
        room: int
        starts: str = Field(db_type="TIMESTAMPTZ")
        ends: str = Field(db_type="TIMESTAMPTZ")
        cancelled: bool = False

    success, [change] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert [(op.kind, op.change.subject) for op in change.operations] == [
        ("DROP_CONSTRAINT", "booking_no_overlap"),
        ("ADD_EXCLUSION", "booking_no_overlap"),
    ]
    assert "EXCLUDE USING gist" in "\n".join(change.sql_up)
    await replans_empty(db)
    before = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'booking_no_overlap'"
    )
    assert "WHERE" not in before

    # rollback restores the predicate
    assert await db.rollback_migration(change.version)
    restored = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'booking_no_overlap'"
    )
    assert restored.endswith("WHERE ((NOT cancelled))")


async def test_exclusion_removed_from_the_model_is_dropped_and_undeclared_ones_are_kept(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await conn.execute("CREATE EXTENSION btree_gist")
    await conn.execute(
        "CREATE TABLE dba_room (id int, during tstzrange, EXCLUDE USING gist (id WITH =, during WITH &&))"
    )
    db = dataflow(dsn)

    @db.model
    class Room:
        __dataflow__ = {"exclusions": [{"name": "room_excl", "elements": [("n", "=")]}]}
        n: int

    assert await db.initialize()
    await replans_empty(db)

    @db.model
    class Room:  # noqa: F811
        n: int

    success, [change] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert [(op.kind, op.change.subject, op.risk.name) for op in change.operations] == [
        ("DROP_CONSTRAINT", "room_excl", "MEDIUM")
    ]
    await replans_empty(db)
    # the DBA's table and its exclusion constraint were never touched
    assert await conn.fetchval("SELECT count(*) FROM pg_constraint WHERE contype = 'x'") == 1


def test_manifest_syntax_round_trips_and_names_bad_fields() -> None:
    data = {
        "tables": [
            {
                "name": "t",
                "columns": [{"name": "a", "type": "TEXT"}, {"name": "b", "type": "TEXT"}],
                "indexes": [
                    {
                        "name": "t_a",
                        "columns": ["a", "lower(b)"],
                        "order": ["desc nulls first", "NULLS FIRST"],
                        "opclasses": ["text_pattern_ops", ""],
                        "include": ["b"],
                        "unique": True,
                        "nullsNotDistinct": True,
                    }
                ],
                "exclusions": [{"name": "t_x", "elements": ["a"], "operators": ["="]}],
            }
        ]
    }
    schema = Schema.from_dict(data)
    [ix] = schema.tables[0].indexes
    assert ix == Index(
        "t_a",
        ("a", "lower(b)"),
        True,
        include=("b",),
        order=("DESC", "ASC NULLS FIRST"),
        opclasses=("text_pattern_ops", ""),
        nulls_not_distinct=True,
    )
    assert schema.tables[0].exclusions == (Exclusion("t_x", ("a",), ("=",)),)
    assert Schema.from_dict(schema.to_dict()) == schema
    # all-default options leave the canonical form (and so the hash) of a plain index as it was
    plain = Schema.from_dict(
        {
            "tables": [
                {
                    "name": "t",
                    "columns": [{"name": "a", "type": "TEXT"}],
                    "indexes": [{"name": "i", "columns": ["a"], "order": ["ASC"], "opclasses": [""]}],
                }
            ]
        }
    )
    assert plain.to_dict()["tables"][0]["indexes"] == [{"name": "i", "columns": ["a"]}]

    bad_order = {
        "tables": [{**data["tables"][0], "indexes": [{"name": "i", "columns": ["a"], "order": ["UP"]}]}]
    }
    with pytest.raises(SchemaError, match=r"tables\[0\]\.indexes\[0\]\.order"):
        Schema.from_dict(bad_order)
    bad_op = {
        "tables": [
            {**data["tables"][0], "exclusions": [{"name": "x", "elements": ["a"], "operators": ["=;"]}]}
        ]
    }
    with pytest.raises(SchemaError, match=r"tables\[0\]\.exclusions\[0\]\.operators"):
        Schema.from_dict(bad_op)
    short = {
        "tables": [
            {**data["tables"][0], "indexes": [{"name": "i", "columns": ["a", "b"], "order": ["DESC"]}]}
        ]
    }
    with pytest.raises(SchemaError, match="one entry per element"):
        Schema.from_dict(short)
