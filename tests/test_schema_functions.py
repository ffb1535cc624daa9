"""Functions and triggers a model declares (``__dataflow__ = {"functions": [...], "triggers": [...]}``).

A function is created (SAFE) and marked as DataFlow's, replaced when its definition changes (MEDIUM; HIGH
when its signature changes: drop and create), dropped only when the owner's set is complete and only if
DataFlow created it (HIGH). A trigger is created on its table (SAFE on an empty table, MEDIUM with rows),
dropped and created again when it changes, dropped when no longer declared only with drop missing (HIGH).
Each step re-plans empty (full plan and fingerprint path) and the undo restores the previous state.
"""

from dataclasses import replace
from datetime import datetime

import asyncpg
import pytest

from dataflow import DataFlow
from dataflow.errors import SchemaError
from dataflow.functions import marker
from dataflow.manifest import API_VERSION, KIND, from_resource, generate, validate
from dataflow.migrations import MigrationPlan
from dataflow.models import model_to_table
from dataflow.reconcile import Outcome, plan, reconcile
from dataflow.schema import Schema
from tests.helpers import dataflow, output, replans_empty

ADD = {
    "name": "add_ints",
    "arguments": "a int, b int",
    "returns": "int",
    "language": "sql",
    "body": "select a + b",
}
TOUCH = {
    "name": "touch_updated_at",
    "returns": "trigger",
    "language": "plpgsql",
    "body": "\r\nBEGIN\n  NEW.touched_at = now();   \n  RETURN NEW;\nEND\n\n",
}
TRIGGER = {"name": "account_touch", "timing": "BEFORE", "events": ["UPDATE"], "function": "touch_updated_at"}


async def call(conn: asyncpg.Connection, sql: str) -> object:
    return await conn.fetchval(sql)


async def functions(conn: asyncpg.Connection) -> dict[str, str | None]:
    rows = await conn.fetch(
        "SELECT p.proname, obj_description(p.oid, 'pg_proc') AS mark FROM pg_proc p"
        " WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1"
    )
    return {r["proname"]: r["mark"] for r in rows}


async def triggers(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY 1", table
    )
    return [r[0] for r in rows]


def model(db: DataFlow, functions: list[dict], triggers: list[dict] | None = None) -> None:
    @db.model
    class Account:
        name: str
        touched_at: datetime | None = None

        __dataflow__ = {"functions": functions, "triggers": triggers or []}


def test_function_and_trigger_manifest_form_round_trips() -> None:
    class Account:
        name: str
        __dataflow__ = {"triggers": [{**TRIGGER, "columns": ["name"], "when": "NEW.name <> OLD.name"}]}

    table = model_to_table(Account)
    assert [(t.name, t.events, t.columns, t.when) for t in table.triggers] == [
        ("account_touch", ("UPDATE",), ("name",), "new.name <> old.name")
    ]
    schema = Schema((table,), functions=(Schema.from_dict({"tables": [], "functions": [ADD]}).functions))
    data = schema.to_dict()
    assert data["functions"] == [
        {
            "name": "add_ints",
            "arguments": "a INTEGER, b INTEGER",
            "returns": "INTEGER",
            "language": "sql",
            "body": "SELECT a + b",
        }
    ]
    assert Schema.from_dict(data) == schema.normalised()
    assert Schema.from_dict(data).hash() == schema.hash()
    manifest = generate(schema, name="s", namespace="n", secret="db")
    assert validate(manifest) == []
    assert from_resource(manifest).schema == schema.normalised()
    # a schema without functions keeps its canonical form (and hash) as before
    assert "functions" not in Schema((replace(table, triggers=()),)).to_dict()
    assert "triggers" not in Schema((replace(table, triggers=()),)).to_dict()["tables"][0]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {**ADD, "arguments": "a int) RETURNS int LANGUAGE sql AS $$ select 1 $$; DROP TABLE x; --"},
            "arguments",
        ),
        ({**ADD, "arguments": "a int, b int) RETURNS int AS $$ $$ LANGUAGE sql; SELECT (1"}, "arguments"),
        ({**ADD, "returns": "int LANGUAGE plpgsql SECURITY DEFINER"}, "returns"),
        ({**ADD, "returns": "int AS $$ select 1 $$; DROP TABLE x; --"}, "returns"),
        ({**ADD, "body": "select 1; DROP TABLE (x"}, "body"),
        ({**ADD, "language": "c"}, "language"),
        ({**ADD, "volatility": "sometimes"}, "volatility"),
    ],
)
def test_injection_through_a_function_is_refused_naming_the_field(spec: dict, field: str) -> None:
    with pytest.raises(SchemaError, match=rf"functions\[0\]\.{field}"):
        Schema.from_dict({"tables": [], "functions": [spec]})


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**TRIGGER, "when": "true) EXECUTE FUNCTION evil(); DROP TABLE x; --"}, "when"),
        ({**TRIGGER, "when": "a = 1; DROP TABLE x"}, "when"),
        ({**TRIGGER, "timing": "BEFORE OR AFTER"}, "timing"),
        ({**TRIGGER, "events": ["UPDATE; DROP TABLE x"]}, "events"),
        ({**TRIGGER, "level": "ROW; DROP TABLE x"}, "level"),
        ({**TRIGGER, "events": ["INSERT"], "columns": ["name"]}, "columns"),
        ({**TRIGGER, "columns": ["missing"]}, "columns"),
        ({**TRIGGER, "function": ""}, "function"),
    ],
)
def test_injection_through_a_trigger_is_refused_naming_the_field(spec: dict, field: str) -> None:
    table = {"name": "t", "columns": [{"name": "name", "type": "TEXT"}], "triggers": [spec]}
    with pytest.raises(SchemaError, match=rf"tables\[0\]\.triggers\[0\]\.{field}"):
        Schema.from_dict({"tables": [table]})


async def test_sql_function_round_trip_replace_and_undo(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)
    model(db, [ADD])
    ok, [created] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert [(op.kind, op.risk.name) for op in created.operations] == [
        ("CREATE_TABLE", "SAFE"),
        ("CREATE_FUNCTION", "SAFE"),
    ]
    assert await call(conn, "SELECT add_ints(2, 3)") == 5
    assert (await functions(conn))["add_ints"] == marker(db.owner)
    await replans_empty(db)

    # the body changes: CREATE OR REPLACE, MEDIUM
    db2 = dataflow(dsn)
    model(db2, [{**ADD, "body": "SELECT a + b + 100"}])
    ok, [changed] = await db2.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert ok, output(db2)
    assert [(op.kind, op.risk.name, op.strategy) for op in changed.operations] == [
        ("REPLACE_FUNCTION", "MEDIUM", "create or replace")
    ]
    assert await call(conn, "SELECT add_ints(2, 3)") == 105
    await replans_empty(db2)

    # the return type changes: drop and create, HIGH
    db3 = dataflow(dsn)
    model(db3, [{**ADD, "returns": "bigint", "body": "SELECT (a * b)::bigint"}])
    ok, _ = await db3.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert not ok  # refused above the limit
    ok, [resigned] = await db3.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert ok, output(db3)
    assert [(op.kind, op.risk.name, op.strategy) for op in resigned.operations] == [
        ("REPLACE_FUNCTION", "HIGH", "drop and create")
    ]
    assert await call(conn, "SELECT pg_typeof(add_ints(2, 3))::text") == "bigint"
    await replans_empty(db3)

    # undo restores each previous definition
    assert await db3.rollback_migration(resigned.version), output(db3)[-2000:]
    assert await call(conn, "SELECT add_ints(2, 3)") == 105
    assert await call(conn, "SELECT pg_typeof(add_ints(2, 3))::text") == "integer"
    assert await db3.rollback_migration(changed.version), output(db3)[-2000:]
    assert await call(conn, "SELECT add_ints(2, 3)") == 5
    await replans_empty(db)
    assert await db.rollback_migration(created.version), output(db)[-2000:]
    assert "add_ints" not in await functions(conn)


async def test_plpgsql_trigger_fires_changes_and_undo(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)
    model(db, [TOUCH], [TRIGGER])
    ok, [created] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert [(op.kind, op.risk.name) for op in created.operations] == [
        ("CREATE_TABLE", "SAFE"),
        ("CREATE_FUNCTION", "SAFE"),
        ("CREATE_TRIGGER", "SAFE"),
    ]
    await replans_empty(db)
    await conn.execute("INSERT INTO account (name) VALUES ('a')")
    assert await call(conn, "SELECT touched_at FROM account") is None
    await conn.execute("UPDATE account SET name = 'b'")
    assert await call(conn, "SELECT touched_at FROM account") is not None  # the trigger fired
    await conn.execute("ANALYZE account")

    # the trigger now also fires on INSERT: dropped and created again in one migration, MEDIUM (rows)
    db2 = dataflow(dsn)
    model(db2, [TOUCH], [{**TRIGGER, "events": ["INSERT", "UPDATE"]}])
    ok, [changed] = await db2.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert ok, output(db2)
    assert [(op.kind, op.risk.name) for op in changed.operations] == [
        ("DROP_TRIGGER", "MEDIUM"),
        ("CREATE_TRIGGER", "MEDIUM"),
    ]
    await conn.execute("INSERT INTO account (name) VALUES ('c')")
    assert await call(conn, "SELECT touched_at FROM account WHERE name = 'c'") is not None
    await replans_empty(db2)

    # a changed plpgsql body plans a replace (whitespace alone does not)
    db3 = dataflow(dsn)
    body = TOUCH["body"].replace("now()", "'2001-02-03'")
    model(db3, [{**TOUCH, "body": body + "   \n"}], [{**TRIGGER, "events": ["INSERT", "UPDATE"]}])
    async with db3.connection() as c:
        planned, _ = await plan(c, db3.schema(), db3.owner, db3.options, fast=False)
    assert [(op.kind, op.risk.name) for op in planned.operations] == [("REPLACE_FUNCTION", "MEDIUM")]

    # undo: the trigger fires on UPDATE only again
    assert await db2.rollback_migration(changed.version), output(db2)[-2000:]
    await conn.execute("INSERT INTO account (name) VALUES ('d')")
    assert await call(conn, "SELECT touched_at FROM account WHERE name = 'd'") is None
    await replans_empty(db)


async def test_removed_function_and_trigger_are_dropped_only_when_the_set_is_complete(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)
    model(db, [TOUCH, ADD], [TRIGGER])
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    # a DBA's own function and trigger, on the managed table
    await conn.execute(
        "CREATE FUNCTION dba_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$"
    )
    await conn.execute(
        "CREATE TRIGGER dba_trigger AFTER INSERT ON account FOR EACH ROW EXECUTE FUNCTION dba_fn()"
    )
    await replans_empty(db)  # left alone

    db2 = dataflow(dsn)
    model(db2, [ADD])
    async with db2.connection() as c:
        kept, _ = await plan(c, db2.schema(), db.owner, db2.options, fast=False)
        complete = replace(db2.options, drop_missing_tables=True)
        dropped, _ = await plan(c, db2.schema(), db.owner, complete, fast=False)
    assert [op.kind for op in kept.operations] == []
    # with the set complete: the undeclared triggers (a DBA's too, on the managed table) and DataFlow's
    # function go, HIGH; the DBA's function is left alone
    assert [(op.kind, op.change.subject, op.risk.name) for op in dropped.operations] == [
        ("DROP_TRIGGER", "account_touch", "HIGH"),
        ("DROP_TRIGGER", "dba_trigger", "HIGH"),
        ("DROP_FUNCTION", "touch_updated_at", "HIGH"),
    ]

    db3 = DataFlow(dsn, drop_missing_tables=True)
    model(db3, [ADD], [])
    ok, [m] = await db3.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert ok
    assert await triggers(conn, "account") == []
    assert set(await functions(conn)) == {"add_ints", "dba_fn"}
    await replans_empty(db3)
    assert await db3.rollback_migration(m.version)
    assert await triggers(conn, "account") == ["account_touch", "dba_trigger"]
    assert (await functions(conn))["touch_updated_at"] == marker(db.owner)


async def test_a_function_turned_trigger_function_is_dropped_and_created_before_its_trigger(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)
    model(db, [{**ADD, "name": "touch_updated_at", "arguments": "", "returns": "int", "body": "SELECT 1"}])
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    db2 = dataflow(dsn)
    model(db2, [TOUCH], [TRIGGER])
    ok, [m] = await db2.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert ok, output(db2)
    assert [(op.kind, op.risk.name) for op in m.operations] == [
        ("REPLACE_FUNCTION", "HIGH"),
        ("CREATE_TRIGGER", "SAFE"),
    ]
    await replans_empty(db2)


async def test_drift_on_a_function_or_trigger_is_noticed_by_the_fast_path(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)
    model(db, [TOUCH, ADD], [TRIGGER])
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    await replans_empty(db)

    # a body changed by hand: the fingerprint moves, the plan puts the declared body back
    await conn.execute(
        "CREATE OR REPLACE FUNCTION add_ints(a integer, b integer) RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$"
    )
    async with db.connection() as c:
        fast, _ = await plan(c, db.schema(), db.owner, db.options, dsn=db.dsn)
    assert [(op.kind, op.table) for op in fast.operations] == [("REPLACE_FUNCTION", "add_ints")]
    ok, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert ok, output(db)
    assert await call(conn, "SELECT add_ints(2, 3)") == 5

    # a trigger dropped by hand is created again
    await conn.execute("DROP TRIGGER account_touch ON account")
    async with db.connection() as c:
        fast, _ = await plan(c, db.schema(), db.owner, db.options, dsn=db.dsn)
    assert [(op.kind, op.change.subject) for op in fast.operations] == [("CREATE_TRIGGER", "account_touch")]

    # a DBA's function of the same name and definition is left as it is (unmarked: never dropped);
    # one of another definition is replaced (MEDIUM) and becomes this owner's
    await conn.execute("DROP FUNCTION add_ints(integer, integer)")
    await conn.execute(
        "CREATE FUNCTION add_ints(a integer, b integer) RETURNS integer LANGUAGE sql AS $$ SELECT a + b $$"
    )
    ok, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert ok, output(db)
    assert [(op.kind, op.risk.name) for op in m.operations] == [("CREATE_TRIGGER", "SAFE")]
    assert (await functions(conn))["add_ints"] is None
    await replans_empty(db)
    await conn.execute(
        "CREATE OR REPLACE FUNCTION add_ints(a integer, b integer) RETURNS integer LANGUAGE sql AS $$ SELECT 7 $$"
    )
    ok, [adopted] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert ok, output(db)
    assert [(op.kind, op.risk.name) for op in adopted.operations] == [("REPLACE_FUNCTION", "MEDIUM")]
    assert "adopts" in adopted.operations[0].assessment.reason
    assert (await functions(conn))["add_ints"] == marker(db.owner)
    await replans_empty(db)


async def test_a_manifest_declares_functions_and_triggers(dsn: str, conn: asyncpg.Connection) -> None:
    table = {
        "name": "account",
        "columns": [
            {"name": "id", "type": "BIGINT", "nullable": False},
            {"name": "name", "type": "TEXT"},
            {"name": "touched_at", "type": "TIMESTAMPTZ"},
        ],
        "primaryKey": ["id"],
        "triggers": [{**TRIGGER, "columns": ["name"], "when": "NEW.name IS DISTINCT FROM OLD.name"}],
    }
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {
            "database": {"secretRef": {"name": "db"}},
            "tables": [table],
            "functions": [TOUCH, ADD],
        },
    }
    assert validate(doc) == []
    manifest = from_resource(doc)
    assert [f.name for f in manifest.schema.functions] == ["add_ints", "touch_updated_at"]
    result = await reconcile(conn, dsn, manifest.schema, "shop", manifest.options)
    assert result.outcome == Outcome.APPLIED, result.reason
    await conn.execute("INSERT INTO account (id, name) VALUES (1, 'a')")
    await conn.execute("UPDATE account SET touched_at = NULL")
    assert await call(conn, "SELECT touched_at FROM account") is None  # WHEN: the name did not change
    await conn.execute("UPDATE account SET name = 'b'")
    assert await call(conn, "SELECT touched_at FROM account") is not None
    again, _ = await plan(conn, manifest.schema, "shop", manifest.options, fast=False)
    assert again.operations == []


async def test_a_trigger_needs_a_trigger_function(dsn: str) -> None:
    db = dataflow(dsn)
    model(db, [ADD], [{**TRIGGER, "function": "add_ints"}])
    with pytest.raises(SchemaError, match=r"account\.triggers\.account_touch\.function.*must return trigger"):
        await db.auto_migrate(auto_confirm=True)
    db2 = dataflow(dsn)
    model(db2, [], [TRIGGER])
    with pytest.raises(SchemaError, match=r"account\.triggers\.account_touch\.function.*no function"):
        await db2.auto_migrate(auto_confirm=True)


async def test_a_dba_overload_of_a_declared_name_is_left_alone(dsn: str, conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE FUNCTION add_ints(a text) RETURNS text LANGUAGE sql AS $$ SELECT a || a $$")
    db = dataflow(dsn)
    model(db, [ADD])
    ok, [m] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert [op.kind for op in m.operations] == ["CREATE_TABLE", "CREATE_FUNCTION"]
    assert await call(conn, "SELECT add_ints(2, 3)") == 5
    assert await call(conn, "SELECT add_ints('x'::text)") == "xx"
    await replans_empty(db)
    # DataFlow's own, under a new signature, is dropped and created; the DBA's overload stays
    db2 = dataflow(dsn)
    model(db2, [{**ADD, "arguments": "a int, b int, c int", "body": "SELECT a + b + c"}])
    ok, [m2] = await db2.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert ok, output(db2)
    assert [(op.kind, op.strategy) for op in m2.operations] == [("REPLACE_FUNCTION", "drop and create")]
    assert await call(conn, "SELECT add_ints(1, 2, 3)") == 6
    assert await call(conn, "SELECT add_ints('y'::text)") == "yy"
    await replans_empty(db2)


async def test_one_owner_never_drops_another_owners_functions(dsn: str, conn: asyncpg.Connection) -> None:
    shop = DataFlow(dsn, drop_missing_tables=True, migration_config={"owner": "shop"})
    billing = DataFlow(dsn, drop_missing_tables=True, migration_config={"owner": "billing"})

    @shop.model
    class Order:
        name: str

        __dataflow__ = {"functions": [ADD]}

    @billing.model
    class Invoice:
        name: str

        __dataflow__ = {"functions": [{**ADD, "name": "tax"}]}

    for db in (shop, billing):
        ok, _ = await db.auto_migrate(auto_confirm=True)
        assert ok, output(db)
    marks = await functions(conn)
    assert (marks["add_ints"], marks["tax"]) == (marker("shop"), marker("billing"))
    await replans_empty(shop)  # the complete set of one owner leaves the other's function alone
    await replans_empty(billing)


async def test_volatility_security_and_whitespace(dsn: str, conn: asyncpg.Connection) -> None:
    stable = {**ADD, "volatility": "STABLE", "security_definer": True}
    db = dataflow(dsn)
    model(db, [stable, TOUCH])
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    row = await conn.fetchrow("SELECT provolatile::text, prosecdef FROM pg_proc WHERE proname = 'add_ints'")
    assert tuple(row) == ("s", True)
    await replans_empty(db)
    # the same definitions spelled otherwise: other case, spacing, line endings, a trailing semicolon
    db2 = dataflow(dsn)
    respelled = {**stable, "arguments": "a  INT4, b integer", "returns": "int4", "body": "SELECT a+b;"}
    model(db2, [respelled, {**TOUCH, "body": TOUCH["body"].replace("\n", "\r\n") + "  \n\n"}])
    await replans_empty(db2)
    # volatility alone changes: a replace
    db3 = dataflow(dsn)
    model(db3, [{**stable, "volatility": "immutable"}, TOUCH])
    async with db3.connection() as c:
        planned, _ = await plan(c, db3.schema(), db3.owner, db3.options, fast=False)
    assert [(op.kind, op.strategy) for op in planned.operations] == [
        ("REPLACE_FUNCTION", "create or replace")
    ]


async def test_an_explicit_plan_leaves_functions_and_triggers_alone(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)
    model(db, [TOUCH], [TRIGGER])
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    await conn.execute(
        "CREATE FUNCTION dba_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$"
    )
    await conn.execute(
        "CREATE TRIGGER dba_args AFTER INSERT ON account FOR EACH ROW EXECUTE FUNCTION dba_fn('x', 'y')"
    )
    steps = [
        {"operation": "add_column", "table": "account", "column": "note", "type": "TEXT"},
        {"operation": "rename_table", "table": "account", "new_name": "member"},
    ]
    assert await db.apply_migration_plan(MigrationPlan(steps)), output(db)[-2000:]
    assert db.last_plan is not None
    latest = (await db.get_migration_history(limit=1))[0]
    assert [op["operation"] for op in latest.operations] == ["ADD_COLUMN", "RENAME_TABLE"]
    statements = [sql for op in latest.operations for sql in op["sql"]]
    assert not [sql for sql in statements if "FUNCTION" in sql or "TRIGGER" in sql], statements
    assert await triggers(conn, "member") == ["account_touch", "dba_args"]
    assert (await functions(conn))["dba_fn"] is None
