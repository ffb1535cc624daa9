"""Issue 10, extension types: types that are not built in are resolved by the server, extensions are planned.

``Field(db_type="citext")`` and friends were refused by DataFlow's own type list; now pglast checks the
text is one type, and one catalog query at plan time resolves it. A model asks for an extension with
``__dataflow__ = {"extensions": [...]}``: the plan creates it (graded SAFE) before the tables using it,
and planning again finds nothing to do.
"""

from __future__ import annotations

import asyncpg
import pytest

from dataflow import Field
from dataflow.errors import SchemaError
from dataflow.models import model_to_table
from dataflow.reconcile import plan
from dataflow.types import Conversion, canonical_type, classify_conversion, is_builtin_type
from tests.helpers import dataflow, output


async def available(conn: asyncpg.Connection, *names: str) -> bool:
    found = await conn.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = ANY($1::text[])", list(names)
    )
    return found == len(names)


async def installed(conn: asyncpg.Connection) -> set[str]:
    return {r[0] for r in await conn.fetch("SELECT extname FROM pg_extension")}


async def replans_empty(db) -> None:  # type: ignore[no-untyped-def]
    """A full plan (no fingerprint shortcut) finds nothing: introspection spells the types as the models."""
    async with db.connection() as conn:
        again, conflicts = await plan(conn, db.schema(), db.owner, db.options, fast=False)
    assert conflicts == {}
    assert [(op.kind, op.table, op.details) for op in again.operations] == []


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("citext", "citext"),
        ("CITEXT", "citext"),
        ("public.citext", "public.citext"),
        ("hstore[]", "hstore[]"),
        ("geometry(Point,4326)", "geometry(point,4326)"),
        ("geometry(point, 4326)", "geometry(point,4326)"),
        ("vector(3)", "vector(3)"),
        ('"Odd Type"', '"Odd Type"'),
    ],
)
def test_extension_types_parse_to_one_canonical_spelling(text: str, canonical: str) -> None:
    assert canonical_type(text) == canonical
    assert canonical_type(canonical) == canonical
    assert not is_builtin_type(text)


@pytest.mark.parametrize(
    "text", ["vector(-1)", "vector('3')", "geometry(a.b)", "vector(1,2,3,4,5)", "citext; drop table x"]
)
def test_extension_type_modifiers_are_integers_or_names(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_type(text)


def test_a_changed_extension_type_modifier_is_a_conversion() -> None:
    assert classify_conversion("vector(3)", "vector(3)") is Conversion.IN_PLACE
    assert classify_conversion("vector(3)", "vector(4)") is Conversion.NARROWING


def test_models_accept_extension_types_and_name_a_bad_one() -> None:
    class Place:
        __dataflow__ = {"extensions": ["postgis"]}
        name: str
        location: str = Field(db_type="geometry(Point,4326)")
        embedding: list = Field(db_type="vector(3)", nullable=True)

    table = model_to_table(Place)
    assert [(c.name, c.type) for c in table.columns] == [
        ("id", "BIGINT"),
        ("name", "TEXT"),
        ("location", "geometry(point,4326)"),
        ("embedding", "vector(3)"),
    ]

    class Bad:
        x: str = Field(db_type="citext DEFAULT 1")

    with pytest.raises(SchemaError, match=r"Bad\.x\.db_type"):
        model_to_table(Bad)

    class BadExtensions:
        __dataflow__ = {"extensions": "citext"}
        x: str

    db = dataflow("postgresql://localhost/x")
    with pytest.raises(SchemaError, match=r"BadExtensions\.__dataflow__\.extensions"):
        db.model(BadExtensions)
        db.schema()


async def test_citext_and_hstore_are_created_first_and_replan_empty(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    @db.model
    class Account:
        __dataflow__ = {"extensions": ["citext", "hstore"]}
        email: str = Field(db_type="citext", unique=True)
        attrs: dict = Field(db_type="hstore", nullable=True)
        tags: list = Field(db_type="citext[]", nullable=True)

    [pending] = await db.get_pending_migrations()
    assert [(op.kind, op.table, op.risk.name) for op in pending.operations] == [
        ("CREATE_EXTENSION", "citext", "SAFE"),
        ("CREATE_EXTENSION", "hstore", "SAFE"),
        ("CREATE_TABLE", "account", "SAFE"),
    ]
    assert pending.sql_up[:2] == [
        'CREATE EXTENSION IF NOT EXISTS "citext" WITH SCHEMA "public";',
        'CREATE EXTENSION IF NOT EXISTS "hstore" WITH SCHEMA "public";',
    ]
    assert "trusted" in pending.operations[0].assessment.reason
    assert await db.initialize()
    assert {"citext", "hstore"} <= await installed(conn)
    await replans_empty(db)
    assert await db.get_pending_migrations() == []

    # the types work as their extensions say: citext compares without case, hstore holds pairs
    await conn.execute("INSERT INTO account (email, attrs) VALUES ('Ann@Example.com', 'a=>1')")
    assert await conn.fetchval("SELECT attrs -> 'a' FROM account WHERE email = 'ann@example.COM'") == "1"
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute("INSERT INTO account (email) VALUES ('ANN@example.com')")

    # a later field of an extension type is a plain ADD_COLUMN, and the plan is empty after it
    @db.model
    class Account:  # noqa: F811
        __dataflow__ = {"extensions": ["citext", "hstore"]}
        email: str = Field(db_type="citext", unique=True)
        attrs: dict = Field(db_type="hstore", nullable=True)
        tags: list = Field(db_type="citext[]", nullable=True)
        nickname: str = Field(db_type="CITEXT", nullable=True)

    success, [migration] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert [(op.kind, op.details, op.risk.name) for op in migration.operations] == [
        ("ADD_COLUMN", "nickname (citext)", "SAFE")
    ]
    await replans_empty(db)


async def test_pg_trgm_and_btree_gist_round_trip_and_roll_back(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Doc:
        __dataflow__ = {"extensions": ["pg_trgm", "btree_gist"]}
        title: str

    success, [migration] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert [op.kind for op in migration.operations] == [
        "CREATE_EXTENSION",
        "CREATE_EXTENSION",
        "CREATE_TABLE",
    ]
    assert "CREATE_EXTENSION" in output(db) and "pg_trgm" in output(db)
    assert {"pg_trgm", "btree_gist"} <= await installed(conn)
    assert await conn.fetchval("SELECT similarity('dataflow', 'dataflow')") == 1.0
    await replans_empty(db)

    # the undo drops the table, then the extensions the migration created
    assert await db.rollback_migration(migration.version)
    assert not {"pg_trgm", "btree_gist"} & await installed(conn)
    assert await conn.fetchval("SELECT to_regclass('doc')") is None


async def test_an_installed_extension_type_needs_no_declaration_and_keeps_its_schema(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await conn.execute("CREATE SCHEMA ext")
    await conn.execute("CREATE EXTENSION citext WITH SCHEMA ext")
    db = dataflow(dsn)

    @db.model
    class Person:
        email: str = Field(db_type="ext.citext")

    assert await db.initialize()
    assert (
        await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'person'::regclass"
            " AND attname = 'email'"
        )
        == "ext.citext"
    )
    await replans_empty(db)


async def test_a_type_nobody_provides_fails_the_plan_naming_the_field(dsn: str) -> None:
    db = dataflow(dsn)

    @db.model
    class Person:
        email: str = Field(db_type="citext")

    with pytest.raises(SchemaError, match=r"person\.email\.type.*citext.*extensions"):
        await db.auto_migrate(auto_confirm=True)


async def test_an_unavailable_extension_or_a_modifier_the_type_refuses_is_named(dsn: str) -> None:
    db = dataflow(dsn)

    @db.model
    class Person:
        __dataflow__ = {"extensions": ["no_such_extension"]}
        name: str

    with pytest.raises(SchemaError, match="extensions: extension 'no_such_extension' is not available"):
        await db.get_pending_migrations()

    db = dataflow(dsn)

    @db.model
    class Person:  # noqa: F811
        __dataflow__ = {"extensions": ["citext"]}
        name: str

    assert await db.initialize()

    @db.model
    class Person:  # noqa: F811
        __dataflow__ = {"extensions": ["citext"]}
        name: str
        email: str = Field(db_type="citext(20)", nullable=True)

    with pytest.raises(SchemaError, match=r"person\.email\.type: type citext takes no modifiers"):
        await db.get_pending_migrations()


async def test_exclude_operations_can_hold_back_the_extension(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Note:
        __dataflow__ = {"extensions": ["hstore"]}
        body: str

    success, [migration] = await db.auto_migrate(auto_confirm=True, exclude_operations=["CREATE_EXTENSION"])
    assert success and [op.kind for op in migration.operations] == ["CREATE_TABLE"]
    assert "hstore" not in await installed(conn)


async def test_postgis_geometry_round_trips(dsn: str, conn: asyncpg.Connection) -> None:
    if not await available(conn, "postgis"):
        pytest.skip("postgis is not in pg_available_extensions on this server")
    db = dataflow(dsn)

    @db.model
    class Place:
        __dataflow__ = {"extensions": ["postgis"]}
        name: str
        location: str = Field(db_type="geometry(Point,4326)")

    success, migrations = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    await conn.execute("INSERT INTO place (name, location) VALUES ('x', 'SRID=4326;POINT(1 2)')")
    await replans_empty(db)


async def test_pgvector_round_trips(dsn: str, conn: asyncpg.Connection) -> None:
    if not await available(conn, "vector"):
        pytest.skip("pgvector (vector) is not in pg_available_extensions on this server")
    db = dataflow(dsn)

    @db.model
    class Item:
        __dataflow__ = {"extensions": ["vector"]}
        embedding: list = Field(db_type="vector(3)")

    success, migrations = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    await conn.execute("INSERT INTO item (embedding) VALUES ('[1,2,3]')")
    await replans_empty(db)
