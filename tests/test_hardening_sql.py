"""Hardening of SQL text: keywords from closed lists, bounded expressions, meaning-preserving
normalisation, canonical types, derived and explicit names. Every accepted input round-trips
through a real database (the re-plan is empty); every refused one fails before any SQL runs."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import DataFlow
from dataflow.diff import compare_schemas
from dataflow.errors import SchemaError
from dataflow.introspect import introspect
from dataflow.models import Field, model_to_table
from dataflow.operations import Risk
from dataflow.options import MigrationOptions
from dataflow.reconcile import reconcile
from dataflow.safety import is_denied
from dataflow.schema import Schema
from dataflow.sqltext import (
    MAX_EXPRESSION_BYTES,
    constraint_name,
    function_names,
    normalise_default,
    normalise_expression,
    parse_expression,
)
from dataflow.types import Conversion, canonical_type, classify_conversion, is_known_type
from tests.helpers import dataflow

VICTIM = "CREATE TABLE victim (id int); INSERT INTO victim VALUES (1)"


async def tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def apply_schema(conn: asyncpg.Connection, dsn: str, schema: Schema) -> None:
    """Apply ``schema`` through the engine, then assert the database re-plans empty."""
    result = await reconcile(conn, dsn, schema, "test", MigrationOptions(max_risk_level=Risk.HIGH))
    assert result.success, result.reason
    current = (await introspect(conn)).schema
    assert compare_schemas(current, schema) == []


async def migrate_twice(db: DataFlow) -> None:
    """Apply the models, then plan again: the second plan has nothing to do."""
    success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success
    success, again = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success and again == []


# item 1: keywords from closed lists ----------------------------------------------------------
@pytest.mark.parametrize("field", ["on_delete", "on_update"])
@pytest.mark.parametrize("value", ["CASCADE; DROP TABLE victim; --", "CASCADE DEFERRABLE", "", 1, "NOTHING"])
async def test_malicious_fk_action_is_refused_when_the_model_is_defined(
    dsn: str, conn: asyncpg.Connection, field: str, value: Any
) -> None:
    await conn.execute(VICTIM)
    db = dataflow(dsn)

    @db.model
    class Parent:
        name: str

    with pytest.raises(SchemaError, match=f"Child.parent_id.{field}: must be one of NO ACTION, RESTRICT"):

        @db.model
        class Child:
            parent_id: int = Field(references="parent", **{field: value})

    await migrate_twice(db)
    assert await conn.fetchval("SELECT count(*) FROM victim") == 1


async def test_fk_actions_are_normalised_and_round_trip(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Parent:
        name: str

    @db.model
    class Child:
        parent_id: int = Field(
            references="parent", nullable=True, on_delete=" cascade ", on_update="set  null"
        )

    fk = model_to_table(Child).foreign_keys[0]
    assert (fk.on_delete, fk.on_update) == ("CASCADE", "SET NULL")
    await migrate_twice(db)
    actions = await conn.fetchrow(
        "SELECT confdeltype::text, confupdtype::text FROM pg_constraint "
        "WHERE conname = 'child_parent_id_fkey'"
    )
    assert tuple(actions) == ("c", "n")


def test_manifest_keywords_are_normalised_or_refused() -> None:
    def fk(**extra: Any) -> dict[str, Any]:
        return {
            "tables": [
                {"name": "p", "columns": [{"name": "id", "type": "int"}], "primaryKey": ["id"]},
                {
                    "name": "c",
                    "columns": [{"name": "p_id", "type": "int"}],
                    "foreignKeys": [
                        {"name": "c_fk", "columns": ["p_id"], "refTable": "p", "refColumns": ["id"], **extra}
                    ],
                },
            ]
        }

    assert (
        Schema.from_dict(fk(onDelete="set   default")).table("c").foreign_keys[0].on_delete == "SET DEFAULT"
    )
    with pytest.raises(SchemaError, match=r"tables\[1\].foreignKeys\[0\].onDelete: must be one of"):
        Schema.from_dict(fk(onDelete="CASCADE; DROP TABLE victim"))


@pytest.mark.parametrize(
    "options, field",
    [
        ({"max_length": -5}, "max_length"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": "10"}, "max_length"),
        ({"max_length": True}, "max_length"),
        ({"max_length": 10.5}, "max_length"),
    ],
)
def test_bad_string_modifiers_are_schema_errors(options: dict[str, Any], field: str) -> None:
    class Thing:
        name: str = Field(**options)

    with pytest.raises(SchemaError, match=f"Thing.name.{field}: must be"):
        model_to_table(Thing)


@pytest.mark.parametrize(
    "options, field",
    [
        ({"precision": 0}, "precision"),
        ({"precision": "12"}, "precision"),
        ({"scale": -1}, "scale"),
        ({"precision": 4, "scale": 6}, "scale"),
        ({"precision": 2000}, "precision"),
    ],
)
def test_bad_numeric_modifiers_are_schema_errors(options: dict[str, Any], field: str) -> None:
    class Price:
        amount: Decimal = Field(**options)

    with pytest.raises(SchemaError, match=f"Price.amount.{field}"):
        model_to_table(Price)


# item 3: derived and explicit names ------------------------------------------------------------
names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(
    table=names,
    parts=st.lists(names, min_size=0, max_size=3),
    suffix=st.sampled_from(["key", "idx", "fkey", "check", "0123456789"]),
)
def test_constraint_name_fits_and_is_deterministic(table: str, parts: list[str], suffix: str) -> None:
    name = constraint_name(table, parts, suffix)
    assert len(name.encode("utf-8")) <= 63
    name.encode("utf-8")  # valid UTF-8: no character was cut in half
    assert name == constraint_name(table, parts, suffix)
    full = "_".join([table, *parts, suffix])
    if len(full.encode()) <= 63:
        assert name == full


@settings(max_examples=300, deadline=None)
@given(a=names, b=names, suffix=st.sampled_from(["key", "idx", "fkey"]))
def test_distinct_inputs_give_distinct_names(a: str, b: str, suffix: str) -> None:
    prefix = "t" * 40 + "_" + "é" * 20
    if a != b:
        assert constraint_name("orders", [prefix + a], suffix) != constraint_name(
            "orders", [prefix + b], suffix
        )


def test_short_names_stay_as_postgresql_names_them() -> None:
    assert constraint_name("order", ["user_id"], "fkey") == "order_user_id_fkey"


async def test_long_shared_prefix_fields_get_distinct_objects(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)
    prefix = "a_very_long_shared_column_name_prefix_that_goes_on_and_on_"

    @db.model
    class Account:
        name: str

    await migrate_twice(db)

    ns: dict[str, Any] = {"__annotations__": {}}
    for i in (1, 2):
        ns["__annotations__"][f"{prefix}{i}"] = int
        ns[f"{prefix}{i}"] = Field(default=0, unique=True, index=True, references="account", nullable=True)
    db.model(
        type(
            "Account",
            (),
            {
                "__annotations__": {"name": str, **ns["__annotations__"]},
                **{k: v for k, v in ns.items() if k != "__annotations__"},
            },
        )
    )
    await migrate_twice(db)
    state = (await introspect(conn)).schema.table("account")
    assert len(state.uniques) == 2 and len(state.foreign_keys) == 2 and len(state.indexes) == 2
    assert all(len(o.name.encode()) <= 63 for o in (*state.uniques, *state.foreign_keys, *state.indexes))


@pytest.mark.parametrize(
    "name, problem",
    [("x" * 64, "longer than 63 bytes"), ("é" * 32, "longer than 63 bytes"), ("a\x00b", "NUL")],
)
def test_bad_explicit_names_are_refused_in_models(name: str, problem: str) -> None:
    class Thing:
        __dataflow__ = {"table": name}
        title: str

    with pytest.raises(SchemaError, match=f"Thing.__dataflow__.table: .*{problem}"):
        model_to_table(Thing)

    class Other:
        __dataflow__ = {"indexes": [{"name": name or None, "fields": ["title"]}]} if name else {}
        title: str

    if name:
        with pytest.raises(SchemaError, match=r"Other.__dataflow__.indexes\[0\].name"):
            model_to_table(Other)


@pytest.mark.parametrize("where", ["table", "column", "index", "check", "refTable"])
def test_bad_explicit_names_are_refused_in_manifests(where: str) -> None:
    long = "é" * 32
    t: dict[str, Any] = {"name": "t", "columns": [{"name": "c", "type": "int"}]}
    field = {
        "table": (t, "name", r"tables\[0\].name"),
        "column": (t["columns"][0], "name", r"tables\[0\].columns\[0\].name"),
    }
    if where in field:
        target, key, path = field[where]
        target[key] = long
    elif where == "index":
        t["indexes"] = [{"name": long, "columns": ["c"]}]
        path = r"tables\[0\].indexes\[0\].name"
    elif where == "check":
        t["checks"] = [{"name": "c\x00", "expression": "c > 0"}]
        path = r"tables\[0\].checks\[0\].name"
    else:
        t["foreignKeys"] = [{"name": "fk", "columns": ["c"], "refTable": long, "refColumns": ["id"]}]
        path = r"tables\[0\].foreignKeys\[0\].refTable"
    with pytest.raises(SchemaError, match=path):
        Schema.from_dict({"tables": [t]})


# item 5: bounded, meaning-preserving expressions ---------------------------------------------
@pytest.mark.parametrize(
    "text, limit",
    [
        ("+".join(["1"] * 1000), "levels"),
        ("+".join(["1"] * 3000), "bytes"),
        ("abs(" * 100 + "1" + ")" * 100, "levels"),
    ],
)
def test_huge_or_deep_expressions_are_refused_cleanly(text: str, limit: str) -> None:
    with pytest.raises(ValueError, match=f"the limit is .* {limit}"):
        normalise_expression(text)
    manifest = {"tables": [{"name": "t", "columns": [{"name": "c", "type": "int", "default": text}]}]}
    with pytest.raises(SchemaError, match=r"tables\[0\].columns\[0\].default: .*limit"):
        Schema.from_dict(manifest)


def test_thirty_thousand_terms_do_not_crash_the_process() -> None:
    code = (
        "from dataflow.schema import Schema\n"
        "from dataflow.errors import SchemaError\n"
        "text = '+'.join(['1'] * 30000)\n"
        "try:\n"
        "    Schema.from_dict({'tables': [{'name': 't', 'columns': [{'name': 'c', 'type': 'int'}],"
        " 'checks': [{'name': 'k', 'expression': text}]}]})\n"
        "except SchemaError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"limit is {MAX_EXPRESSION_BYTES} bytes" in proc.stdout


def test_expression_at_the_limits_is_accepted() -> None:
    assert parse_expression("+".join(["1"] * 40)) is not None
    assert parse_expression("'" + "x" * (MAX_EXPRESSION_BYTES - 2) + "'") is not None


@pytest.mark.parametrize(
    "text, kept",
    [
        ("'victim'::regclass::oid", ["regclass", "oid"]),
        ("'1 day'::interval", ["interval"]),
        ("(1)::numeric / 3", ["numeric"]),
        ("x > (0.5)::integer", ["integer"]),
        ("length('ab '::bpchar)", ["bpchar"]),
    ],
)
def test_normalising_keeps_casts_that_change_meaning(text: str, kept: list[str]) -> None:
    out = normalise_expression(text).lower()
    for t in kept:
        assert t in out


@pytest.mark.parametrize(
    "catalog, model",
    [
        ("(a >= (0)::numeric)", "a >= 0"),
        ("(b > '-1'::integer)", "b > -1"),
        ("(g = 'ab'::bpchar)", "g = 'ab'"),
        ("(e >= (0)::double precision)", "e >= 0"),
    ],
)
def test_casts_postgresql_adds_to_comparisons_are_dropped(catalog: str, model: str) -> None:
    assert normalise_expression(catalog) == normalise_expression(model)


def test_denied_functions_by_name() -> None:
    def denied(text: str, allowed: frozenset[str] = frozenset()) -> bool:
        return any(is_denied(name, allowed) for name in function_names(text))

    assert denied("length(pg_read_file('/etc/passwd'))")
    assert denied("pg_catalog.pg_sleep(10) IS NULL")
    assert denied("query_to_xml('select 1', true, true, '')")
    assert not denied("lower(name)")
    assert not denied("pg_sleep(1)", allowed=frozenset({"pg_sleep"}))


async def test_meaningful_casts_round_trip(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Event:
        happened: str = Field(
            db_type="TIMESTAMPTZ", check="happened > '2000-01-01'::date + '1 day'::interval"
        )
        ratio: Decimal = Field(check="ratio < (1)::numeric / 3")

    await migrate_twice(db)
    with pytest.raises(asyncpg.CheckViolationError):  # 0.3 < 1/3 numerically; 1/3 in integers would be 0
        await conn.execute("INSERT INTO event (happened, ratio) VALUES (now(), 0.4)")
    await conn.execute("INSERT INTO event (happened, ratio) VALUES (now(), 0.3)")


# item 12: round trips --------------------------------------------------------------------------
async def test_null_defaults_and_array_types_round_trip(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Thing:
        a: str = Field(sql_default="NULL", nullable=True)
        b: str = Field(sql_default="null::text", nullable=True)
        c: list = Field(db_type="INTEGER[][]", nullable=True)
        d: str = Field(max_length=20, default="pending")
        e: dict = Field(default={})
        f: Decimal = Field(default=0)
        g: int = Field(default=-1)
        h: str = Field(db_type="CHAR", default="y")

    assert normalise_default("NULL") is None and normalise_default("NULL::character varying") is None
    await migrate_twice(db)
    cols = {c.name: c for c in (await introspect(conn)).schema.table("thing").columns}
    assert cols["a"].default is None and cols["c"].type == "INTEGER[]"


async def test_manifest_defaults_round_trip(dsn: str, conn: asyncpg.Connection) -> None:
    schema = Schema.from_dict(
        {
            "tables": [
                {
                    "name": "t",
                    "primaryKey": ["id"],
                    "columns": [
                        {"name": "id", "type": "bigint", "nullable": False, "identity": "by  default"},
                        {"name": "n", "type": "TEXT", "default": "NULL"},
                        {"name": "j", "type": "jsonb", "default": "'{}'::jsonb"},
                        {"name": "i", "type": "interval", "default": "'1 day'::interval"},
                        {"name": "r", "type": "real", "default": "-2.5"},
                        {"name": "m", "type": "INTEGER[][]"},
                        {"name": "ts", "type": "timestamp(3) with time zone", "default": "now()"},
                    ],
                }
            ]
        }
    )
    assert schema.table("t").column("n").default is None
    await apply_schema(conn, dsn, schema)


# item 13b: types -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, canonical",
    [
        ("timestamp(3) with time zone", "TIMESTAMPTZ(3)"),
        ("time(0) without time zone", "TIME(0)"),
        ("bit varying(5)", "BIT VARYING(5)"),
        ("numeric", "NUMERIC"),
        ("character(1)", "CHAR(1)"),
        ("interval", "INTERVAL"),
        ("interval day to second(3)", "INTERVAL DAY TO SECOND(3)"),
        ('"char"', '"char"'),
        ("public.mood", "public.mood"),
        ('"My Type"', '"My Type"'),
        ("geometry(Point,4326)", "geometry(point,4326)"),
        ("integer[][]", "INTEGER[]"),
        ("character varying(20)[]", "VARCHAR(20)[]"),
        ("int", "INTEGER"),
        ("double precision", "DOUBLE PRECISION"),
        ("bpchar", "BPCHAR"),
    ],
)
def test_canonical_type_accepts_what_format_type_prints(text: str, canonical: str) -> None:
    assert canonical_type(text) == canonical
    assert canonical_type(canonical) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "int; drop table x",
        "int)",
        "text DEFAULT 1",
        "int::text",
        "setof int",
        'int COLLATE "C"',
        "varchar(0)",
        "int FROM victim",
        "",
        "int\x00",
    ],
)
def test_canonical_type_refuses_anything_but_one_type(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_type(text)
    assert not is_known_type(text)


def test_conversions_still_classified() -> None:
    assert classify_conversion("VARCHAR(20)", "character varying(10)") is Conversion.NARROWING
    assert classify_conversion("integer", "bigint") is Conversion.WIDENING
    assert classify_conversion("VARCHAR(10)", "TEXT") is Conversion.IN_PLACE


async def test_unusual_catalog_types_do_not_break_planning(dsn: str, conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TYPE mood AS ENUM ('ok', 'sad')")
    await conn.execute(
        "CREATE TABLE legacy (a timestamp(3) with time zone, b time(0), c bit varying(5), "
        'd "char", e mood, f mood[], g interval day to second(2), h int[][], i char)'
    )
    db = dataflow(dsn)

    @db.model
    class Fresh:
        name: str

    await migrate_twice(db)
    assert {"legacy", "fresh"} <= await tables(conn)


# the identifier and expression corpus ------------------------------------------------------------
ODD_NAMES = [
    'we"ird',
    "semi;colon",
    "back\\slash",
    "ünïcødé",
    "user",
    "select",
    "order",
    "x" * 63,
    "é" * 31 + "x",
    "it's; DROP TABLE victim; --",
]


async def test_identifier_and_expression_corpus_round_trips(dsn: str, conn: asyncpg.Connection) -> None:
    await conn.execute(VICTIM)
    tables_ = [
        {
            "name": name,
            "primaryKey": [
                "id"
            ],  # a 63-byte table's pkey name is derived with a hash, like every derived name
            "columns": [
                {"name": "id", "type": "bigint", "nullable": False},
                {"name": name, "type": "text", "default": "'it''s; DROP TABLE victim; -- \\ é'"},
                {"name": "from", "type": "integer", "default": "0"},
            ],
            "checks": [
                {"name": constraint_name(name, ["k"], "check"), "expression": '"from" >= 0 AND "from" <> 42'}
            ],
            "indexes": [
                {"name": constraint_name(name, ["w"], "idx"), "columns": ["from"], "where": '"from" > 0'},
                {"name": constraint_name(name, ["e"], "idx"), "columns": [f"lower({_q(name)})"]},
            ],
        }
        for name in ODD_NAMES
    ]
    await apply_schema(conn, dsn, Schema.from_dict({"tables": tables_}))
    assert await conn.fetchval("SELECT count(*) FROM victim") == 1
    assert set(ODD_NAMES) <= await tables(conn)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.parametrize("place", ["default", "check", "where", "index"])
@pytest.mark.parametrize(
    "evil",
    [
        "1; DROP TABLE victim",
        "1); DROP TABLE victim; --",
        "1 /* */; DROP TABLE victim",
        "(SELECT 1) FROM victim",
        "1 AS x",
    ],
)
async def test_statement_separators_are_refused_in_every_expression_field(
    dsn: str, conn: asyncpg.Connection, place: str, evil: str
) -> None:
    await conn.execute(VICTIM)
    before = await tables(conn)
    t: dict[str, Any] = {"name": "t", "columns": [{"name": "c", "type": "int"}]}
    if place == "default":
        t["columns"][0]["default"] = evil
    elif place == "check":
        t["checks"] = [{"name": "t_check", "expression": evil}]
    elif place == "where":
        t["indexes"] = [{"name": "t_idx", "columns": ["c"], "where": evil}]
    else:
        t["indexes"] = [{"name": "t_idx", "columns": [evil]}]
    with pytest.raises(SchemaError):
        Schema.from_dict({"tables": [t]})

    class Evil:
        c: int = Field(check=evil) if place == "check" else Field(sql_default=evil)

    if place in ("default", "check"):
        with pytest.raises(SchemaError, match=f"Evil.c.{'check' if place == 'check' else 'sql_default'}"):
            model_to_table(Evil)
    assert await tables(conn) == before
