"""Extensions in manifests (``spec.extensions``), and columns of extension and enum types in manifests."""

from __future__ import annotations

import enum
import json
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from dataflow.errors import SchemaError
from dataflow.manifest import from_resource, generate, validate
from dataflow.schema import Column, Schema, Table, column_type_pattern
from dataflow.types import is_manifest_type
from test_cli import dataflow_cli


class Mood(enum.Enum):
    SAD = "sad"
    OK = "ok"


def manifest(extensions: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": "people", "namespace": "prod"},
        "spec": {
            "database": {"secretRef": {"name": "db"}, "schema": "public"},
            "policy": {"maxRiskLevel": "MEDIUM"},
            "tables": [
                {
                    "name": "person",
                    "columns": [
                        {"name": "id", "type": "BIGINT", "nullable": False, "identity": "BY DEFAULT"},
                        {"name": "email", "type": "citext", "nullable": False},
                        {"name": "mood", "type": "mood", "default": "'ok'"},
                    ],
                    "primaryKey": ["id"],
                }
            ],
            "enums": [{"name": "mood", "values": ["sad", "ok", "happy"]}],
            **spec,
        },
    }
    if extensions is not None:
        doc["spec"]["extensions"] = extensions
    return doc


def test_spec_extensions_round_trip_sorted_and_generated() -> None:
    m = from_resource(manifest(["pg_trgm", "citext"]))
    assert m.schema.extensions == ("citext", "pg_trgm")
    data = m.schema.to_dict()
    assert data["extensions"] == ["citext", "pg_trgm"]
    assert Schema.from_dict(data) == m.schema
    # `dataflow manifest generate` writes them (and the enums), and the manifest reads back the same schema
    doc = generate(m.schema, name="people", namespace="prod", secret="db")
    assert doc["spec"]["extensions"] == ["citext", "pg_trgm"]
    assert doc["spec"]["enums"] == [{"name": "mood", "values": ["sad", "ok", "happy"]}]
    assert validate(doc) == []
    assert from_resource(doc).schema.hash() == m.schema.hash()
    # a schema without extensions keeps its canonical form (and hash)
    plain = Schema((Table("t", (Column("a", "TEXT"),)),))
    assert "extensions" not in plain.to_dict()


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("citext", "spec.extensions"),
        ([1], "spec.extensions[0]"),
        ([""], "spec.extensions[0]"),
        (["x" * 64], "spec.extensions[0]"),
    ],
)
def test_bad_extension_names_are_refused_naming_the_field(value: Any, field: str) -> None:
    with pytest.raises(SchemaError) as err:
        from_resource(manifest(value))
    assert err.value.field == field


def test_bad_extension_names_in_the_canonical_form_name_the_field() -> None:
    with pytest.raises(SchemaError, match=r"extensions\[1\]"):
        Schema.from_dict({"tables": [], "extensions": ["citext", "a\x00b"]})


# Column types: the CRD's pattern and the engine's check (dataflow.types) agree on each of these.
GOOD_TYPES = [
    "TEXT",
    "NUMERIC(10,2)",
    "VARCHAR(20)[]",
    "citext",
    "mood",
    "mood[]",
    '"Mood"',
    '"we""ird"',
    "public.citext",
    "public.mood[]",
    "hstore",
    "geometry(Point,4326)",
    "geometry(point,4326)",
    'geometry("Point",4326)',
    "vector(3)",
    "vector(3)[]",
]
BAD_TYPES = [
    "",
    "citext; DROP TABLE x",
    "citext)",
    "text DEFAULT 1",
    "vector(-1)",
    "geometry('Point')",
    "x(1,2,3,4,5)",
    "a.b.c",
    "vector (3)",
    "geometry(Point, 4326)",
    "vector(3)[][]",
    "Citext",
    "INT",
    "SERIAL",
    "TIMESTAMP WITH TIME ZONE",
    '"a\x00"',
    "mood COLLATE x",
    "citext[1]",
    "vector(1+1)",
]
# Written in a spelling that is not canonical: the CRD cannot tell (it has no list of keywords and
# aliases), the engine refuses them naming the field (and none of them can reach SQL unparsed).
CRD_ONLY_TYPES = ["varchar(10)", "int", "pg_catalog.int4", "select", '"citext"']


@pytest.mark.parametrize("text", GOOD_TYPES)
def test_good_column_types_pass_the_crd_and_the_engine(text: str) -> None:
    assert re.fullmatch(column_type_pattern(), text)
    assert is_manifest_type(text)
    doc = manifest()
    doc["spec"]["tables"][0]["columns"][1]["type"] = text
    assert validate(doc) == []
    from_resource(doc)


@pytest.mark.parametrize("text", BAD_TYPES)
def test_bad_column_types_fail_the_crd_and_the_engine(text: str) -> None:
    assert not re.fullmatch(column_type_pattern(), text)
    assert not is_manifest_type(text)
    doc = manifest()
    doc["spec"]["tables"][0]["columns"][1]["type"] = text
    assert [p.split(":")[0] for p in validate(doc)] == ["spec.tables[0].columns[1].type"]
    with pytest.raises(SchemaError) as err:
        from_resource(doc)
    assert err.value.field == "spec.tables[0].columns[1].type"


@pytest.mark.parametrize("text", CRD_ONLY_TYPES)
def test_non_canonical_spellings_are_refused_by_the_engine(text: str) -> None:
    assert re.fullmatch(column_type_pattern(), text)
    assert not is_manifest_type(text)
    doc = manifest()
    doc["spec"]["tables"][0]["columns"][1]["type"] = text
    # manifest validate names it (with the canonical spelling to write), and so does reading the resource
    assert [p.split(":")[0] for p in validate(doc)] == ["spec.tables[0].columns[1].type"]
    with pytest.raises(SchemaError) as err:
        from_resource(doc)
    assert err.value.field == "spec.tables[0].columns[1].type"


async def test_cli_plans_and_applies_a_citext_and_an_enum_column(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    target = tmp_path / "people.yaml"
    target.write_text(yaml.safe_dump(manifest(["citext"]), sort_keys=False))
    code, out = await dataflow_cli("plan", "-f", str(target), "--format", "json", "--database-url", dsn)
    assert code == 0, out
    kinds = [op["operation"] for op in json.loads(out)["operations"]]
    assert kinds[:3] == ["CREATE_EXTENSION", "CREATE_ENUM", "CREATE_TABLE"]

    code, out = await dataflow_cli("apply", "-f", str(target), "--database-url", dsn)
    assert code == 0 and "Applied" in out, out
    assert await conn.fetchval("SELECT extname FROM pg_extension WHERE extname = 'citext'") == "citext"
    await conn.execute("INSERT INTO person (email) VALUES ('A@x.org')")
    assert await conn.fetchval("SELECT mood::text FROM person WHERE email = 'a@X.ORG'") == "ok"

    code, out = await dataflow_cli("plan", "-f", str(target), "--format", "json", "--database-url", dsn)
    assert code == 0 and json.loads(out)["operations"] == [], out


async def test_a_manifest_column_of_an_unknown_type_fails_the_plan_naming_it(
    dsn: str, tmp_path: Path
) -> None:
    target = tmp_path / "people.yaml"
    target.write_text(yaml.safe_dump(manifest(), sort_keys=False))  # citext, but no spec.extensions
    code, out = await dataflow_cli("plan", "-f", str(target), "--database-url", dsn)
    assert code == 2 and "person.email.type" in out and "extensions" in out, out


# DROP_EXTENSION: only an extension this owner created, only when its owner set is complete ---------------
OWNER = "k8s:prod/people"


def people(*extensions: str, email: str = "citext") -> Schema:
    columns = (Column("id", "BIGINT", nullable=False), Column("email", email))
    return Schema((Table("person", columns, primary_key=("id",)),), extensions=extensions).normalised()


def kinds(migration: Any) -> list[tuple[str, str]]:
    return [(op.kind, op.details) for op in migration.operations]


async def test_drop_extension_is_high_only_under_drop_missing_and_never_a_dbas(
    dsn: str, conn: asyncpg.Connection
) -> None:
    from dataflow.ledger import OWNERS, extension_claim
    from dataflow.options import MigrationOptions
    from dataflow.reconcile import Outcome, plan, reconcile

    await conn.execute("CREATE EXTENSION hstore")  # a DBA's, before any model asked for it
    complete = MigrationOptions(drop_missing_tables=True)
    result = await reconcile(conn, dsn, people("citext", "pg_trgm", "hstore"), OWNER, complete)
    assert result.outcome is Outcome.APPLIED, result.reason
    assert [k for k, _ in kinds(result.migration)] == ["CREATE_EXTENSION", "CREATE_EXTENSION", "CREATE_TABLE"]
    claims = {r[0] for r in await conn.fetch(f"SELECT table_name FROM {OWNERS} WHERE owner = $1", OWNER)}
    assert claims == {"person", extension_claim("citext"), extension_claim("pg_trgm")}  # not hstore

    # pg_trgm and hstore no longer declared: an incomplete owner set drops nothing
    fewer = people("citext")
    partial, _ = await plan(conn, fewer, OWNER, MigrationOptions(drop_missing_tables=False), fast=False)
    assert kinds(partial) == []
    full, _ = await plan(conn, fewer, OWNER, complete, dsn=dsn)
    assert [(op.kind, op.risk.name, op.sql_up) for op in full.operations] == [
        ("DROP_EXTENSION", "HIGH", ('DROP EXTENSION "pg_trgm";',))  # hstore is the DBA's: left alone
    ]
    assert "PostgreSQL refuses" in full.operations[0].assessment.reason
    assert full.operations[0].sql_down[0].startswith('CREATE EXTENSION IF NOT EXISTS "pg_trgm"')
    refused = await reconcile(conn, dsn, fewer, OWNER, complete)
    assert refused.outcome is Outcome.REFUSED  # HIGH: above the default MEDIUM
    applied = await reconcile(
        conn, dsn, fewer, OWNER, MigrationOptions(drop_missing_tables=True, max_risk_level="HIGH")
    )
    assert applied.outcome is Outcome.APPLIED, applied.reason
    installed = {r[0] for r in await conn.fetch("SELECT extname FROM pg_extension")}
    assert {"citext", "hstore"} <= installed and "pg_trgm" not in installed
    assert extension_claim("pg_trgm") not in {
        r[0] for r in await conn.fetch(f"SELECT table_name FROM {OWNERS} WHERE owner = $1", OWNER)
    }
    for fast in (False, True):
        again, _ = await plan(conn, fewer, OWNER, complete, dsn=dsn, fast=fast)
        assert kinds(again) == []


async def test_drop_extension_something_still_uses_is_refused_by_postgresql(
    dsn: str, conn: asyncpg.Connection
) -> None:
    from dataflow.options import MigrationOptions
    from dataflow.reconcile import Outcome, reconcile

    complete = MigrationOptions(drop_missing_tables=True, max_risk_level="HIGH")
    assert (await reconcile(conn, dsn, people("citext"), OWNER, complete)).outcome is Outcome.APPLIED
    # citext no longer declared, but the column still uses it: planned, and PostgreSQL refuses it
    failed = await reconcile(conn, dsn, people(), OWNER, complete)
    assert [op.kind for op in failed.migration.operations] == ["DROP_EXTENSION"]
    assert failed.outcome is Outcome.FAILED and "depend" in failed.reason, failed.reason
    assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 1
    assert await conn.fetchval("SELECT email FROM person") is None  # the table is untouched


async def test_initialize_creates_the_enum_types_and_sequences_its_new_tables_need(
    dsn: str, conn: asyncpg.Connection
) -> None:
    import enum

    from dataflow import Field
    from helpers import dataflow, replans_empty

    class Mood(enum.Enum):
        SAD = "sad"
        OK = "ok"

    db = dataflow(dsn)

    @db.model
    class Person:
        __dataflow__ = {  # noqa: RUF012
            "extensions": ["citext"],
            "sequences": [{"name": "person_no", "start": 100}],
        }
        name: str = Field(db_type="citext")
        mood: Mood = Mood.OK

    # initialize plans only the missing tables (include_tables): their type and sequence come along
    assert await db.initialize()
    assert await conn.fetchval("SELECT 'ok'::mood::text") == "ok"
    assert await conn.fetchval("SELECT nextval('person_no')") == 100
    await replans_empty(db)


async def test_cli_a_manifest_no_longer_naming_its_extension_plans_a_high_drop(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    target = tmp_path / "people.yaml"
    target.write_text(yaml.safe_dump(manifest(["citext", "pg_trgm"]), sort_keys=False))
    code, out = await dataflow_cli("apply", "-f", str(target), "--database-url", dsn)
    assert code == 0 and "Applied" in out, out

    target.write_text(yaml.safe_dump(manifest(["citext"]), sort_keys=False))
    code, out = await dataflow_cli("plan", "-f", str(target), "--format", "json", "--database-url", dsn)
    plan = json.loads(out)
    assert [(op["operation"], op["risk"]) for op in plan["operations"]] == [("DROP_EXTENSION", "HIGH")]
    code, out = await dataflow_cli("apply", "-f", str(target), "--database-url", dsn)
    assert code == 1 and "approve this exact plan with" in out, out  # HIGH: above the manifest's MEDIUM
    code, out = await dataflow_cli(
        "apply", "-f", str(target), "--approve", plan["planHash"], "--database-url", dsn
    )
    assert code == 0 and "Applied" in out, out
    assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'") == 0
    code, out = await dataflow_cli("plan", "-f", str(target), "--format", "json", "--database-url", dsn)
    assert json.loads(out)["operations"] == []
