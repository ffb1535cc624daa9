"""Import a live schema (tests/fixtures/app_schema.sql) as models and as a manifest: both re-plan empty."""

from __future__ import annotations

import ast
import asyncio
import enum
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest
import yaml

from dataflow import Field
from dataflow.importer import import_schema
from dataflow.introspect import introspect
from dataflow.manifest import load_dataflow
from dataflow.modelfile import load_models
from dataflow.reconcile import plan
from tests.helpers import dataflow, replans_empty, snapshot

ROOT = Path(__file__).resolve().parent.parent


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


APP_SCHEMA = ROOT / "tests" / "fixtures" / "app_schema.sql"


async def load_app_schema(conn: asyncpg.Connection) -> None:
    """The fixture is trusted test data: one simple-query script (asyncpg execute without arguments)."""
    await conn.execute(APP_SCHEMA.read_text())


async def cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator"), "COLUMNS": "250"}  # the report's lines whole
    env.pop("DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dataflow.cli",
        *args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def catalog(conn: asyncpg.Connection) -> list[str]:
    """Every object of the public schema with its definition, to show nothing was touched."""
    rows = await conn.fetch(
        """
        SELECT c.relkind::text || ' ' || c.relname || ' ' || coalesce(pg_get_viewdef(c.oid), '') FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
        UNION ALL SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'public'::regnamespace
        UNION ALL SELECT 'function ' || pg_get_functiondef(p.oid) FROM pg_proc p
          WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        """
    )
    return sorted(r[0] for r in rows)


async def test_import_models_replans_empty_and_reports_what_it_leaves_alone(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await load_app_schema(conn)
    before, before_catalog = await snapshot(conn), await catalog(conn)
    models = tmp_path / "models.py"
    code, out, err = await cli("import", "--database-url", dsn, "-o", str(models))
    assert code == 0, err
    text = models.read_text()
    ast.parse(text)  # valid Python
    ruff = Path(sys.executable).parent / "ruff"
    if ruff.exists():
        check = subprocess.run(
            [str(ruff), "check", "--select", "E9,F", "--isolated", str(models)], check=False
        )
        assert check.returncode == 0
        fmt = [str(ruff), "format", "--check", "--isolated", "--line-length", "110", str(models)]
        assert subprocess.run(fmt, check=False).returncode == 0  # ruff format-clean
    assert "class TaskStatus(enum.Enum):" in text and "class AppUser:" in text
    assert 'identity="ALWAYS"' in text  # organization.id
    # the report: every kind left alone, by name
    for kind, name in [
        ("partitioned table", "audit_event"),
        ("partition", "audit_event_2026_h1"),
        ("view", "recent_audit"),  # it reads the partitioned table
        ("function", "purge_sessions("),  # a procedure
        ("domain", "email_address"),
        ("rule", "country_no_delete"),
        ("sequence", "support_ticket_seq"),
        ("table setting", "session_cache"),
    ]:
        assert any(kind in line and name in line for line in err.splitlines()), (kind, name, err)
    assert "imported 16 tables" in err
    # views, the materialized view, the functions and the triggers are managed: declared, not reported
    for managed in (
        "active_user",
        "project_stats",
        "set_updated_at",
        "open_task_count",
        "task_set_updated_at",
    ):
        assert not any(managed in line and "│ index" not in line for line in err.splitlines()), (managed, err)
    # a materialized view's own indexes are not modelled: recreating it would lose them, so they are named
    assert any("project_stats_project_idx" in line and "│ index" in line for line in err.splitlines()), err
    assert "@db.view(materialized=True)\nclass ProjectStats:" in text and "class ActiveUser:" in text
    assert '"name": "task_set_updated_at"' in text and '"name": "open_task_count"' in text
    assert "'extensions': ['pg_trgm']" in text or '"extensions": ["pg_trgm"]' in text

    # the contract: planning the models against the same database gives an empty plan
    db = load_dataflow(models)
    db.database_url = dsn
    tables = set(db.schema().table_names)
    assert "audit_event" not in tables and "audit_event_2026_h1" not in tables and "task" in tables
    # table by table, the models build exactly what the database holds
    imported = await import_schema(conn)
    assert len(imported.schema.tables) == 16
    for table in imported.schema.tables:
        assert db.schema().table(table.name) == table, table.name
    assert db.schema().enums == imported.schema.enums
    assert db.schema().sequences == imported.schema.sequences
    assert db.schema().functions == imported.schema.functions
    assert [f.name for f in imported.schema.functions] == ["open_task_count", "set_updated_at"]
    assert db.schema().views == imported.schema.views
    assert [v.name for v in imported.schema.views] == ["active_user", "open_task", "project_stats"]
    await replans_empty(db)
    code, out, err = await cli("plan", str(models), "--database-url", dsn, "--exit-code")
    assert code == 0, out + err
    assert await snapshot(conn) == before and await catalog(conn) == before_catalog


async def test_manifest_import_plans_empty_and_validates(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await load_app_schema(conn)
    before = await catalog(conn)
    path = tmp_path / "manifest.yaml"
    code, _, err = await cli(
        "manifest", "import", "--database-url", dsn, "--name", "app", "--namespace", "shop", "--secret", "app-db",
        "-o", str(path),
    )  # fmt: skip
    assert code == 0, err
    doc = yaml.safe_load(path.read_text())
    assert doc["metadata"] == {"name": "app", "namespace": "shop"}
    assert {e["name"] for e in doc["spec"]["enums"]} == {"plan_tier", "task_status"}
    assert "audit_event" not in {t["name"] for t in doc["spec"]["tables"]}
    assert [v["name"] for v in doc["spec"]["views"]] == ["active_user", "open_task", "project_stats"]
    assert [f["name"] for f in doc["spec"]["functions"]] == ["open_task_count", "set_updated_at"]
    assert doc["spec"]["extensions"] == ["pg_trgm"]  # the trigram index's operator class needs it
    task = next(t for t in doc["spec"]["tables"] if t["name"] == "task")
    assert [t["name"] for t in task["triggers"]] == ["task_set_updated_at"]
    code, out, _ = await cli("manifest", "validate", str(path))
    assert code == 0 and "valid" in out
    code, out, err = await cli("plan", "-f", str(path), "--database-url", dsn, "--exit-code")
    assert code == 0, out + err
    assert "No changes" in out
    assert await catalog(conn) == before


async def test_tables_subset_imports_only_those(dsn: str, conn: asyncpg.Connection, tmp_path: Path) -> None:
    await load_app_schema(conn)
    models = tmp_path / "models.py"
    code, _, err = await cli(
        "import", "--database-url", dsn, "--tables", "country,organization,api_key", "-o", str(models)
    )
    assert code == 0, err
    schema = load_models(models)
    assert schema.table_names == ("api_key", "country", "organization")
    assert [e.name for e in schema.enums] == ["plan_tier"]
    assert "trigger" not in err  # the triggers are on tables not asked for
    assert "country_no_delete" in err  # the rule is on country
    db = load_dataflow(models)
    db.database_url = dsn
    await replans_empty(db)
    path = tmp_path / "subset.yaml"
    code, _, err = await cli(
        "manifest", "import", "--database-url", dsn, "--tables", "country", "-o", str(path)
    )
    assert code == 0, err
    code, out, err = await cli("plan", "-f", str(path), "--database-url", dsn, "--exit-code")
    assert code == 0, out + err


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--tables", "nosuch"], "--tables"),
        (["--tables", "task"], "--tables"),  # task refers to project, not imported
        (["--schema", "nosuch"], "--schema"),
    ],
)
async def test_bad_input_is_one_line_naming_the_option(
    dsn: str, conn: asyncpg.Connection, args: list[str], field: str
) -> None:
    await load_app_schema(conn)
    for command in (["import"], ["manifest", "import"]):
        code, out, err = await cli(*command, "--database-url", dsn, *args)
        assert code == 2
        assert out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: {field}:"), err


async def test_now_default_in_a_hand_written_model_plans_no_set_default(
    dsn: str, conn: asyncpg.Connection
) -> None:
    """The issue's example (Pagila's actor): a column whose default already is now() is in sync with
    ``sql_default="now()"``, so no SET DEFAULT is planned on every run."""
    await conn.execute(
        "CREATE TABLE actor (actor_id integer PRIMARY KEY, first_name text NOT NULL,"
        " last_update timestamp without time zone NOT NULL DEFAULT now())"
    )
    db = dataflow(dsn)

    @db.model
    class Actor:
        actor_id: int = Field(db_type="INTEGER", primary_key=True)
        first_name: str
        last_update: datetime = Field(db_type="TIMESTAMP", sql_default="now()")

    await replans_empty(db)
    success, migrations = await db.auto_migrate(dry_run=True)
    assert success and [op for m in migrations for op in m.operations] == []


async def test_created_at_without_default_round_trips(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """A created_at with no default is imported as sql_default="NULL" (a model's created_at gets one otherwise)."""
    await conn.execute("CREATE TABLE event (id bigint PRIMARY KEY, created_at timestamptz)")
    models = tmp_path / "models.py"
    code, _, err = await cli("import", "--database-url", dsn, "-o", str(models))
    assert code == 0, err
    assert 'sql_default="NULL"' in models.read_text()
    db = load_dataflow(models)
    db.database_url = dsn
    await replans_empty(db)


EDGE_SCHEMA = """
CREATE SCHEMA crm;
CREATE TYPE crm.mood AS ENUM ('happy', 'sad', 'in between');
CREATE TABLE crm.person (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL,
  moods crm.mood[] NOT NULL DEFAULT '{}',
  current crm.mood DEFAULT 'in between',
  first text, last text,
  full_name text GENERATED ALWAYS AS (first || ' ' || last) STORED,
  during tstzrange
);
ALTER TABLE crm.person ENABLE ROW LEVEL SECURITY;
CREATE POLICY person_self ON crm.person FOR SELECT USING (name = current_user);
CREATE TABLE crm.log (msg text, at timestamptz DEFAULT now());
CREATE TABLE crm.pair (b int, a int, PRIMARY KEY (a, b));
"""


async def test_other_schema_enum_arrays_generated_collation_and_policies_round_trip(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await conn.execute(EDGE_SCHEMA)
    models = tmp_path / "models.py"
    code, _, err = await cli("import", "--database-url", dsn, "--schema", "crm", "-o", str(models))
    assert code == 0, err
    text = models.read_text()
    assert 'db = DataFlow(migration_config={"schema": "crm"})' in text
    assert "current: Mood | None = Mood.IN_BETWEEN" in text
    assert 'Field(collation="C")' in text and "generated=" in text and '"rls": True' in text
    # no primary key, or one whose columns are not in column order: declared in __dataflow__
    assert '__dataflow__ = {"primary_key": []}' in text
    assert '__dataflow__ = {"primary_key": ["a", "b"]}' in text
    assert "imported 3 tables" in err
    db = load_dataflow(models)
    db.database_url = dsn
    assert db.schema().table_names == ("log", "pair", "person")
    assert db.schema().table("log").primary_key == ()  # type: ignore[union-attr]
    assert db.schema().table("pair").primary_key == ("a", "b")  # type: ignore[union-attr]
    await replans_empty(db)
    path = tmp_path / "crm.yaml"
    code, _, err = await cli("manifest", "import", "--database-url", dsn, "--schema", "crm", "-o", str(path))
    assert code == 0, err
    doc = yaml.safe_load(path.read_text())
    assert [t["name"] for t in doc["spec"]["tables"]] == ["log", "pair", "person"]
    assert doc["spec"]["database"]["schema"] == "crm"
    code, out, err = await cli("plan", "-f", str(path), "--database-url", dsn, "--exit-code")
    assert code == 0, out + err


def test_model_identity_and_dataflow_constraints() -> None:
    """The models API pieces import needs: identity fields, named uniques, foreign keys and checks."""
    from dataflow.errors import SchemaError
    from dataflow.models import model_to_table

    class Invoice:
        __dataflow__ = {
            "uniques": [{"name": "invoice_ref_key", "fields": ["org_id", "ref"]}],
            "foreign_keys": [
                {"name": "invoice_org", "fields": ["org_id"], "references": "org", "on_delete": "set null"}
            ],
            "checks": [{"name": "invoice_ref_check", "expression": "length(ref) > 2"}],
        }
        id: int = Field(primary_key=True, identity="always", identity_start=100, identity_increment=1)
        org_id: int | None = None
        ref: str

    table = model_to_table(Invoice)
    assert table.columns[0].identity == "ALWAYS" and table.columns[0].identity_start == 100
    assert table.columns[0].identity_increment is None and table.columns[0].default is None
    assert [(u.name, u.columns) for u in table.uniques] == [("invoice_ref_key", ("org_id", "ref"))]
    [fk] = table.foreign_keys
    assert (fk.name, fk.ref_table, fk.ref_columns, fk.on_delete) == (
        "invoice_org",
        "org",
        ("id",),
        "SET NULL",
    )
    assert [(c.name, c.expression) for c in table.checks] == [("invoice_ref_check", "length(ref) > 2")]

    class Bad:
        __dataflow__ = {"foreign_keys": [{"fields": ["nosuch"], "references": "org"}]}
        ref: str

    with pytest.raises(SchemaError, match=r"Bad.__dataflow__.foreign_keys\[0\].fields"):
        model_to_table(Bad)

    class BadIdentity:
        id: int = Field(primary_key=True, identity="sometimes")

    with pytest.raises(SchemaError, match="BadIdentity.id.identity"):
        model_to_table(BadIdentity)

    class Keyless:
        __dataflow__ = {"primary_key": []}
        msg: str

    assert [c.name for c in model_to_table(Keyless).columns] == ["msg"]  # no implicit id

    class Both:
        __dataflow__ = {"primary_key": ["b"]}
        a: int = Field(primary_key=True)
        b: int

    with pytest.raises(SchemaError, match=r"Both.__dataflow__.primary_key: give the key here"):
        model_to_table(Both)

    class Stamped:
        id: int = Field(primary_key=True)
        created_at: datetime | None = Field(sql_default="NULL")

    assert model_to_table(Stamped).column("created_at").default is None  # type: ignore[union-attr]


async def test_manifest_holds_every_builtin_type_and_reports_tables_it_cannot(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await conn.execute(
        """
        CREATE TABLE odd (id int PRIMARY KEY, m money, ts timestamp(3), iv interval day to second,
                          flags bit(3), mac macaddr, tz timetz, doc xml, q tsquery);
        CREATE TYPE "Mood" AS ENUM ('a');
        CREATE TABLE moody (id int PRIMARY KEY, m "Mood");
        CREATE TABLE moody_ref (id int PRIMARY KEY, moody_id int REFERENCES moody (id));
        """
    )
    path = tmp_path / "odd.yaml"
    code, _, err = await cli("manifest", "import", "--database-url", dsn, "-o", str(path))
    assert code == 0, err
    doc = yaml.safe_load(path.read_text())
    # a quoted (upper-case) enum type is a manifest column type too: all three tables are held
    assert [t["name"] for t in doc["spec"]["tables"]] == ["moody", "moody_ref", "odd"]
    odd = next(t for t in doc["spec"]["tables"] if t["name"] == "odd")
    assert {c["name"]: c["type"] for c in odd["columns"]}["iv"] == "INTERVAL DAY TO SECOND"
    assert "is not a column type a manifest can hold" not in err
    code, out, err = await cli("plan", "-f", str(path), "--database-url", dsn, "--exit-code")
    assert code == 0, out + err
    # the models hold all three
    models = tmp_path / "models.py"
    code, _, err = await cli("import", "--database-url", dsn, "-o", str(models))
    assert code == 0, err
    db = load_dataflow(models)
    db.database_url = dsn
    assert db.schema().table_names == ("moody", "moody_ref", "odd")
    await replans_empty(db)


def test_manifest_column_types_must_be_canonical() -> None:
    from dataflow.rules import semantic_problems

    table = {"name": "t", "columns": [{"name": "a", "type": "int"}, {"name": "b", "type": "mood"}]}
    assert semantic_problems([table]) == [
        "spec.tables[0].columns[0].type: write 'INTEGER', the canonical spelling of 'int'"
    ]


def test_manifest_generate_of_enum_models_is_valid_and_carries_the_enums() -> None:
    """Generating a manifest from models with an enum column gave a manifest the CRD refused."""
    from dataflow import DataFlow
    from dataflow.manifest import from_resource, generate, validate

    db = DataFlow("postgresql://unused@127.0.0.1/x")

    @db.model
    class Person:
        mood: Mood = Mood.HAPPY

    doc = generate(db.schema(), name="p", namespace="ns", secret="db")
    assert validate(doc) == []
    assert doc["spec"]["enums"] == [{"name": "mood", "values": ["happy", "sad"]}]
    assert from_resource(doc).schema == db.schema()


async def test_a_table_referring_to_a_table_left_alone_is_left_alone_too(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await conn.execute(
        """
        CREATE TABLE measurement (id int PRIMARY KEY) PARTITION BY RANGE (id);
        CREATE TABLE measurement_low PARTITION OF measurement FOR VALUES FROM (0) TO (1000);
        CREATE TABLE reading (id int PRIMARY KEY, measurement_id int REFERENCES measurement (id));
        CREATE TABLE station (id int PRIMARY KEY);
        """
    )
    models = tmp_path / "models.py"
    code, _, err = await cli("import", "--database-url", dsn, "-o", str(models))
    assert code == 0, err
    assert any("reading" in line and "refers to 'measurement'" in line for line in err.splitlines()), err
    db = load_dataflow(models)
    db.database_url = dsn
    assert db.schema().table_names == ("station",)
    await replans_empty(db)


async def test_a_sequence_no_column_owns_goes_with_the_first_table_calling_it(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await conn.execute(
        """
        CREATE SEQUENCE order_no START 500;
        CREATE TABLE purchase (id int PRIMARY KEY, purchase_id int CHECK (purchase_id > 0),
                               no bigint NOT NULL DEFAULT nextval('order_no'));
        """
    )
    models = tmp_path / "models.py"
    code, _, err = await cli("import", "--database-url", dsn, "-o", str(models))
    assert code == 0, err
    text = models.read_text()
    assert '"sequences": [{"name": "order_no", "start": 500}]' in text
    assert 'check="purchase_id > 0"' in text  # the check named as Field(check=) would name it
    db = load_dataflow(models)
    db.database_url = dsn
    assert [q.name for q in db.schema().sequences] == ["order_no"]
    await replans_empty(db)


async def test_adopt_the_application_schema_import_baseline_then_one_change(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """The issue's round trip on the realistic schema: import → baseline (the ledger holds it, the catalog
    is unchanged) → one model change after adoption plans exactly that change; the manifest likewise."""
    await load_app_schema(conn)
    models = tmp_path / "models.py"
    code, _, err = await cli("import", "--database-url", dsn, "-o", str(models))
    assert code == 0, err
    before = await catalog(conn)
    code, out, err = await cli("baseline", str(models), "--database-url", dsn)
    assert code == 0, out + err
    assert "The database matches the models" in out
    assert not any("dataflow_" in line for line in before)
    after = [line for line in await catalog(conn) if "dataflow_" not in line]  # the ledger's own objects
    assert after == before
    rows = await conn.fetch("SELECT description, status FROM dataflow_migrations")
    assert [(r["status"], r["description"].startswith("baseline: adopted 19 table(s)")) for r in rows] == [
        ("applied", True)
    ]  # 16 tables and 3 views claimed
    owned = {r[0] for r in await conn.fetch("SELECT table_name FROM dataflow_owned_tables")}
    assert {"task", "app_user", "open_task", "project_stats"} <= owned and "audit_event" not in owned
    code, out, _ = await cli("history", "--database-url", dsn)
    assert code == 0 and "baseline: adopted 19 table(s)" in out

    # after adoption: one model change, exactly that change planned and applied
    text = models.read_text()
    assert "class Webhook:\n" in text
    models.write_text(text.replace("class Webhook:\n", "class Webhook:\n    retries: int = 0\n", 1))
    db = load_dataflow(models)
    db.database_url = dsn
    async with db.connection() as c:
        changed, conflicts = await plan(c, db.schema(), db.owner, db.options, fast=False)
    assert conflicts == {}
    assert [(op.kind, op.table, op.details) for op in changed.operations] == [
        ("ADD_COLUMN", "webhook", "retries (BIGINT)")
    ]
    assert changed.kept_objects == []  # adopted: nothing left to keep or drop
    code, out, err = await cli("apply", str(models), "--database-url", dsn, "--auto-confirm")
    assert code == 0, out + err
    code, out, err = await cli("plan", str(models), "--database-url", dsn, "--exit-code")
    assert code == 0, out + err


async def test_adopt_the_application_schema_by_manifest(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """The same with a manifest: manifest import → baseline -f (catalog unchanged) → plan -f empty → one
    change to the manifest plans exactly that change."""
    await load_app_schema(conn)
    path = tmp_path / "app.yaml"
    code, _, err = await cli("manifest", "import", "--database-url", dsn, "--name", "app", "-o", str(path))
    assert code == 0, err
    before = await catalog(conn)
    code, out, err = await cli("baseline", "-f", str(path), "--database-url", dsn)
    assert code == 0 and "The database matches the models" in out, out + err
    assert [line for line in await catalog(conn) if "dataflow_" not in line] == before
    code, out, err = await cli("plan", "-f", str(path), "--database-url", dsn, "--exit-code")
    assert code == 0 and "No changes" in out, out + err
    doc = yaml.safe_load(path.read_text())
    webhook = next(t for t in doc["spec"]["tables"] if t["name"] == "webhook")
    webhook["columns"].append({"name": "retries", "type": "INTEGER", "nullable": True})
    path.write_text(yaml.safe_dump(doc))
    code, out, err = await cli("plan", "-f", str(path), "--database-url", dsn, "--format", "json")
    assert code == 0, out + err
    data = json.loads(out)
    ops = [(op["operation"], op["table"]) for op in data["operations"]]
    assert ops == [("ADD_COLUMN", "webhook")], data


async def test_a_foreign_key_to_a_partitioned_table_is_read_once(conn: asyncpg.Connection) -> None:
    """PostgreSQL copies a foreign key to a partitioned table once per partition (``conparentid``): those
    copies are its implementation, not constraints of the table, so introspection reads the one declared."""
    await conn.execute(
        """
        CREATE TABLE ev (id bigint, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE ev1 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE TABLE ev2 PARTITION OF ev FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
        CREATE TABLE r (id bigint PRIMARY KEY, ev_id bigint, ev_at date, FOREIGN KEY (ev_id, ev_at) REFERENCES ev);
        """
    )
    state = await introspect(conn, tables=["r"])
    table = state.schema.table("r")
    assert table is not None
    assert [(fk.name, fk.ref_table) for fk in table.foreign_keys] == [("r_ev_id_ev_at_fkey", "ev")]
