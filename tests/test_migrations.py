"""Schema evolutions against real PostgreSQL: risk levels, SQL, data kept, failures rolled back."""

from dataclasses import replace
from decimal import Decimal

import pytest

from dataflow import DataFlowError, Field
from dataflow.introspect import introspect
from dataflow.operations import Risk
from tests.helpers import dataflow, output, snapshot


async def test_ecommerce_three_phases(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class Product:
        name: str
        price: float
        description: str = None

    @db.model
    class Order:
        product_id: int
        quantity: int
        total: float

    assert (await db.auto_migrate(auto_confirm=True))[0]
    await conn.execute('INSERT INTO "product" (name, price) VALUES ($1, $2)', "lamp", 9.5)
    await conn.execute('INSERT INTO "order" (product_id, quantity, total) VALUES (1, 2, 19.0)')

    @db.model
    class Product:  # noqa: F811
        name: str
        price: float
        description: str = None
        inventory_count: int = 0
        sku: str = None
        category: str = None

    @db.model
    class Order:  # noqa: F811
        product_id: int
        quantity: int
        total: float
        status: str = "pending"
        tracking_number: str = None

    success, [m2] = await db.auto_migrate(auto_confirm=True)
    assert success and m2.safety_level == "SAFE"
    assert 'ALTER TABLE "public"."order" ADD COLUMN "status" TEXT NOT NULL DEFAULT \'pending\';' in m2.sql_up
    assert (
        'ALTER TABLE "public"."product" ADD COLUMN "inventory_count" BIGINT NOT NULL DEFAULT 0;' in m2.sql_up
    )
    assert await conn.fetchval('SELECT status FROM "order"') == "pending"

    @db.model
    class Product:  # noqa: F811
        name: str
        price: float
        description: str = None
        inventory_count: int = 0
        sku: str = None
        category: str = None
        specifications: dict = None
        images: list = None
        is_featured: bool = False

    @db.model
    class Order:  # noqa: F811
        product_id: int
        quantity: int
        total: float
        status: str = "pending"
        tracking_number: str = None
        shipping_address: dict = None
        billing_address: dict = None
        metadata: dict = None

    success, [m3] = await db.auto_migrate(auto_confirm=True)
    assert success and m3.safety_level == "SAFE" and len(m3.operations) == 6
    types = {c.name: c.type for c in (await introspect(conn)).schema.table("product").columns}
    assert (
        types["specifications"] == "JSONB"
        and types["images"] == "JSONB"
        and types["is_featured"] == "BOOLEAN"
    )
    await conn.execute('UPDATE "product" SET images = $1::jsonb', '["a.png"]')
    assert await conn.fetchval('SELECT images->>0 FROM "product"') == "a.png"
    assert (await db.auto_migrate(auto_confirm=True)) == (True, [])


async def test_drop_column_refused_under_medium_applied_under_high(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class User:
        name: str
        email: str

    await db.initialize()
    await conn.execute('INSERT INTO "user" (name, email) VALUES ($1, $2)', "ann", "ann@example.com")

    @db.model
    class User:  # noqa: F811
        name: str

    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert not success and m.safety_level == "HIGH"
    assert "exceeds max_risk_level MEDIUM" in output(db) and "1 row lose a value" in output(db)
    assert "email" in [c.name for c in (await introspect(conn)).schema.table("user").columns]
    assert (await db.get_migration_history(1))[0].status == "refused"

    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH", create_backup=False)
    assert success and m.sql_up == ['ALTER TABLE "public"."user" DROP COLUMN "email";']
    assert m.rollback_steps[0].irreversible  # no backup: the values are gone for good
    assert "email" not in [c.name for c in (await introspect(conn)).schema.table("user").columns]


async def test_exclude_operations_skips_the_drop(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class User:
        name: str
        email: str

    await db.initialize()

    @db.model
    class User:  # noqa: F811
        name: str
        phone: str = None

    success, [m] = await db.auto_migrate(auto_confirm=True, exclude_operations=["DROP_COLUMN"])
    assert success and [op.kind for op in m.operations] == ["ADD_COLUMN"]
    columns = [c.name for c in (await introspect(conn)).schema.table("user").columns]
    assert "email" in columns and "phone" in columns


async def test_not_null_column_on_a_populated_table(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class User:
        name: str

    await db.initialize()
    await conn.executemany('INSERT INTO "user" (name) VALUES ($1)', [("a",), ("b",)])

    @db.model
    class User:  # noqa: F811
        name: str
        age: int

    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert success
    [op] = m.operations
    assert op.risk is Risk.MEDIUM and "2 rows" in op.assessment.reason
    assert m.sql_up == [
        'ALTER TABLE "public"."user" ADD COLUMN "age" BIGINT NOT NULL DEFAULT 0;',
        'ALTER TABLE "public"."user" ALTER COLUMN "age" DROP DEFAULT;',
    ]
    assert await conn.fetchval('SELECT count(*) FROM "user" WHERE age = 0') == 2
    column = (await introspect(conn)).schema.table("user").column("age")
    assert not column.nullable and column.default is None
    assert (await db.auto_migrate(auto_confirm=True)) == (True, [])


async def test_not_null_column_on_an_empty_table_is_safe(dsn: str) -> None:
    db = dataflow(dsn)

    @db.model
    class User:
        name: str

    await db.initialize()

    @db.model
    class User:  # noqa: F811
        name: str
        age: int

    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="SAFE")
    assert success and m.sql_up == ['ALTER TABLE "public"."user" ADD COLUMN "age" BIGINT NOT NULL;']


@pytest.mark.parametrize("values, castable", [(["1", "22", None], True), (["1", "two", "three"], False)])
async def test_text_to_integer(dsn: str, conn, values: list, castable: bool) -> None:
    db = dataflow(dsn)

    @db.model
    class Item:
        code: str = None

    await db.initialize()
    await conn.executemany('INSERT INTO "item" (code) VALUES ($1)', [(v,) for v in values])
    before = await snapshot(conn)

    @db.model
    class Item:  # noqa: F811
        code: int = None

    refused, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert not refused and m.safety_level == "HIGH"
    [op] = m.operations
    assert op.kind == "ALTER_COLUMN_TYPE"
    assert m.sql_up[-1] == 'ALTER TABLE "public"."item" ALTER COLUMN "code" TYPE BIGINT USING "code"::BIGINT;'
    assert (
        op.backup and m.sql_up[-2] == f'CREATE TABLE {op.backup} AS SELECT "id", "code" FROM "public"."item";'
    )
    if castable:
        assert "all 3 rows convert today" in op.assessment.reason
    else:
        assert "2 rows cannot be converted from TEXT to BIGINT" in op.assessment.reason

    success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success is castable
    if castable:
        assert sorted(r[0] for r in await conn.fetch('SELECT code FROM "item"') if r[0] is not None) == [
            1,
            22,
        ]
    else:
        assert await snapshot(conn) == before
        [record] = [r for r in await db.get_migration_history(5) if r.status == "failed"]
        assert "invalid input syntax" in record.error


async def test_reserved_and_quoted_names(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class User:
        name: str = Field(unique=True)

    @db.model
    class Order:
        user_id: int = Field(references="user.id", index=True)
        select: str = None

    @db.model
    class Odd:
        __dataflow__ = {"table": 'we"ird table'}
        value: str = Field(db_type="VARCHAR(10)", default="it's")

    assert (await db.auto_migrate(auto_confirm=True))[0]
    await conn.execute('INSERT INTO "user" (name) VALUES ($1)', "ann")
    await conn.execute('INSERT INTO "order" (user_id, "select") VALUES (1, $1)', "x")
    await conn.execute('INSERT INTO "we""ird table" DEFAULT VALUES')
    assert await conn.fetchval('SELECT value FROM "we""ird table"') == "it's"
    schema = (await introspect(conn)).schema
    assert schema.table("order").foreign_keys[0].ref_table == "user"
    assert schema.table('we"ird table') is not None
    assert (await db.auto_migrate(auto_confirm=True)) == (True, [])


async def test_rename_keeps_the_data(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class Customer:
        email: str

    await db.initialize()
    await conn.execute('INSERT INTO "customer" (email) VALUES ($1)', "a@example.com")

    @db.model
    class Client:
        __dataflow__ = {"renamed_from": "customer"}
        email_address: str = Field(renamed_from="email")

    with pytest.raises(DataFlowError, match="renamed from 'customer', which another model still defines"):
        await db.auto_migrate(auto_confirm=True)
    del db.models["Customer"]
    success, [m] = await db.auto_migrate(auto_confirm=True)
    assert success and [op.kind for op in m.operations] == ["RENAME_TABLE", "RENAME_COLUMN"]
    assert m.sql_up == [
        'ALTER TABLE "public"."customer" RENAME TO "client";',
        'ALTER TABLE "public"."client" RENAME COLUMN "email" TO "email_address";',
    ]
    assert await conn.fetchval('SELECT email_address FROM "client"') == "a@example.com"
    assert (await db.auto_migrate(auto_confirm=True)) == (True, [])


async def test_failure_half_way_leaves_everything_as_before(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class Account:
        name: str
        nickname: str = None

    await db.initialize()
    await conn.executemany(
        'INSERT INTO "account" (name, nickname) VALUES ($1, $2)', [("a", None), ("b", "bee")]
    )
    before = await snapshot(conn)

    @db.model
    class Account:  # noqa: F811
        name: str
        nickname: str  # NOT NULL, no default, and a row holds NULL: this statement fails
        email: str = None  # added first, in the same migration

    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert not success
    assert [op.kind for op in m.operations] == ["ADD_COLUMN", "SET_NOT_NULL"]
    assert await snapshot(conn) == before
    [failed] = [r for r in await db.get_migration_history(5) if r.status == "failed"]
    # online: the CHECK ... NOT VALID was added, VALIDATE failed, and the completed steps were undone
    assert "CheckViolationError" in failed.error and "completed operation(s) were undone" in failed.error


async def test_drop_table_only_for_tables_this_owner_created(dsn: str, conn) -> None:
    await conn.execute("CREATE TABLE foreign_table (id int)")
    db = dataflow(dsn)
    db.options = replace(db.options, drop_missing_tables=True)  # as DataFlow(..., drop_missing_tables=True)

    @db.model
    class Keep:
        name: str

    @db.model
    class Gone:
        name: str

    await db.initialize()
    del db.models["Gone"]
    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success and [(op.kind, op.table) for op in m.operations] == [("DROP_TABLE", "gone")]
    assert await conn.fetchval("SELECT to_regclass('public.foreign_table')") is not None


async def test_indexes_gin_text_search_partial_and_checks_round_trip(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class Product:
        name: str
        specs: dict = None
        tags: list = None
        price: Decimal = Field(default=Decimal("0"), check="price >= 0")
        __dataflow__ = {
            "indexes": [{"fields": ["name", "price"]}],
            "postgresql": {
                "jsonb_gin_indexes": ["specs", "tags"],
                "text_search": ["name"],
                "partial_indexes": [{"fields": ["price"], "condition": "price > 0"}],
            },
        }

    success, [m] = await db.auto_migrate(auto_confirm=True)
    assert success
    sql = "\n".join(m.sql_up)
    assert 'CREATE INDEX "product_specs_gin_idx" ON "public"."product" USING gin ("specs");' in sql
    assert 'CREATE INDEX "product_price_partial_idx" ON "public"."product" ("price") WHERE price > 0;' in sql
    assert "to_tsvector('english', COALESCE(name, ''))" in sql
    assert 'CONSTRAINT "product_price_check" CHECK (price >= 0)' in sql
    table = (await introspect(conn)).schema.table("product")
    assert {i.name for i in table.indexes} == {
        "product_name_price_idx",
        "product_specs_gin_idx",
        "product_tags_gin_idx",
        "product_name_fts_idx",
        "product_price_partial_idx",
    }
    assert (await db.auto_migrate(auto_confirm=True)) == (True, [])


def test_partial_index_condition_must_be_one_expression() -> None:
    from dataflow import DataFlow, SchemaError

    db = DataFlow("postgresql://unused")
    with pytest.raises(SchemaError, match=r"partial_indexes\[0\]\.condition: must be a single expression"):

        @db.model
        class Bad:
            price: float
            __dataflow__ = {
                "postgresql": {"partial_indexes": [{"fields": ["price"], "condition": "1; DROP TABLE x"}]}
            }


async def test_rollback_migration_restores_the_schema(dsn: str, conn) -> None:
    db = dataflow(dsn)

    @db.model
    class User:
        name: str

    await db.initialize()

    @db.model
    class User:  # noqa: F811
        name: str
        phone: str = None

    _, [m] = await db.auto_migrate(auto_confirm=True)
    analysis = await db.analyze_rollback(m.version)
    assert analysis.fully_reversible and analysis.irreversible_operations == []
    assert await db.rollback_migration(m.version)
    assert (await introspect(conn)).schema.table("user").column("phone") is None
    assert (await db.get_migration_history(1))[0].status == "rolled_back"
