"""Views and materialized views: ``__dataflow__ = {"views": {...}}``, ``@db.view`` and ``spec.views``.

Created after the tables in dependency order; replaced in place (CREATE OR REPLACE) when the columns
extend the old ones, otherwise dropped and created again with the views that read them, in one
transaction. A view nobody declared is never touched; one this owner declared before is dropped only
when the declared set is complete. Each step re-plans empty (full plan and fingerprint path) and the
undo restores the previous state.
"""

import enum
import json
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import yaml

from dataflow import introspect_views
from dataflow.errors import SchemaError
from dataflow.manifest import from_resource, generate
from dataflow.reconcile import plan
from dataflow.schema import Schema, View
from tests.helpers import dataflow, output, replans_empty
from tests.test_cli import dataflow_cli
from tests.test_crd import errors, sample
from tests.test_manifest_size import generate_args, linked_models


async def view_def(conn: asyncpg.Connection, name: str) -> str | None:
    return await conn.fetchval("SELECT pg_get_viewdef(to_regclass($1))", name)


async def columns_of(conn: asyncpg.Connection, name: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 ORDER BY attnum",
        name,
    )
    return [r[0] for r in rows]


def test_a_view_query_must_be_exactly_one_select() -> None:
    for bad in ("DELETE FROM member", "SELECT 1; SELECT 2", "SELECT FROM WHERE", "", "SELECT 1 INTO t"):
        with pytest.raises(SchemaError, match=r"views\.bad\.query"):
            Schema.from_dict({"tables": [], "views": [{"name": "bad", "query": bad}]})
    db = dataflow("postgresql://unused/db")

    @db.model
    class Member:
        name: str
        __dataflow__ = {"views": {"bad": "DROP TABLE member"}}

    with pytest.raises(SchemaError, match=r"Member\.__dataflow__\.views\.bad\.query"):
        db.schema()
    with pytest.raises(SchemaError, match=r"views\.oops\.query"):

        @db.view
        class Oops:
            sql = "UPDATE member SET name = 'x'"

    with pytest.raises(SchemaError, match=r"views\.member"):
        Schema.from_dict(
            {
                "tables": [{"name": "member", "columns": [{"name": "id", "type": "INTEGER"}]}],
                "views": [{"name": "member", "query": "SELECT 1"}],
            }
        )


def test_views_in_the_canonical_form_and_a_manifest_round_trip() -> None:
    db = dataflow("postgresql://unused/db")

    @db.model
    class Member:
        name: str
        active: bool = True
        __dataflow__ = {"views": {"active_members": "select id, name from member where active -- current"}}

    @db.view(materialized=True)
    class MemberCount:
        """How many members there are."""

        sql = "SELECT count(*) AS n FROM member"

    schema = db.schema()
    assert schema.views == (
        View("active_members", "SELECT id, name FROM member WHERE active"),
        View("member_count", "SELECT count(*) AS n FROM member", materialized=True),
    )
    data = schema.to_dict()
    assert data["views"] == [
        {"name": "active_members", "query": "SELECT id, name FROM member WHERE active"},
        {"name": "member_count", "query": "SELECT count(*) AS n FROM member", "materialized": True},
    ]
    assert Schema.from_dict(data) == schema
    assert Schema.from_dict(data).hash() == schema.hash()
    assert "views" not in Schema.from_dict({"tables": data["tables"]}).to_dict()  # other hashes unchanged

    doc = generate(schema, name="shop", namespace="default", secret="db")
    assert doc["spec"]["views"] == data["views"]
    assert errors(doc) == []  # the CRD accepts spec.views
    assert from_resource(doc).schema == schema

    manifest = sample()
    manifest["spec"]["views"] = [{"name": "v", "query": "SELECT 1", "materialized": False}]
    assert errors(manifest) == []
    manifest["spec"]["views"] = [{"name": "v", "query": "SELECT 1", "refresh": "hourly"}]
    assert [p for p, _ in errors(manifest)] == ["spec.views.0"]
    manifest["spec"]["views"] = [{"name": "v", "query": "TRUNCATE t"}]
    with pytest.raises(SchemaError, match=r"views\.v\.query"):
        from_resource(manifest)


def _members(db, views: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    @db.model
    class Member:
        name: str
        score: int = 0
        active: bool = True
        __dataflow__ = {"views": views}


async def test_view_round_trip_create_replace_recreate_and_undo(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)
    _members(db, {"active_members": "SELECT id, name FROM member WHERE active"})

    @db.view
    def active_names() -> str:  # reads the other view: created after it
        return "SELECT name FROM active_members"

    @db.view(materialized=True, name="top_scores")
    class TopScores:
        sql = "SELECT name, score FROM member ORDER BY score DESC LIMIT 3"

    ok, [created] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert [(op.kind, op.table, op.risk.name) for op in created.operations] == [
        ("CREATE_TABLE", "member", "SAFE"),
        ("CREATE_VIEW", "active_members", "SAFE"),
        ("CREATE_VIEW", "top_scores", "SAFE"),
        ("CREATE_VIEW", "active_names", "SAFE"),
    ]
    assert created.sql_up[1] == (
        'CREATE VIEW "public"."active_members" AS SELECT id, name FROM member WHERE active;'
    )
    assert created.sql_up[2].startswith('CREATE MATERIALIZED VIEW "public"."top_scores" AS SELECT')
    assert await columns_of(conn, "active_names") == ["name"]
    await replans_empty(db)
    await conn.execute("INSERT INTO member (name, score) VALUES ('ann', 5), ('bob', 7)")

    # columns added at the end: CREATE OR REPLACE, SAFE; the view reading it is left in place
    _members(db, {"active_members": "SELECT id, name, score FROM member WHERE active"})
    ok, [widened] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    [op] = widened.operations
    assert (op.kind, op.table, op.risk.name) == ("CREATE_VIEW", "active_members", "SAFE")
    assert op.sql_up == (
        'CREATE OR REPLACE VIEW "public"."active_members" AS SELECT id, name, score FROM member WHERE active;',
    )
    assert await columns_of(conn, "active_members") == ["id", "name", "score"]
    await replans_empty(db)

    # columns reordered: not replaceable; dropped (its reader first) and created again, one transaction
    _members(db, {"active_members": "SELECT name, id FROM member WHERE active"})
    ok, [reordered] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert [(op.kind, op.table, op.risk.name) for op in reordered.operations] == [
        ("DROP_VIEW", "active_names", "SAFE"),
        ("DROP_VIEW", "active_members", "SAFE"),
        ("CREATE_VIEW", "active_members", "SAFE"),
        ("CREATE_VIEW", "active_names", "SAFE"),
    ]
    assert "reads view active_members" in reordered.operations[0].details
    assert await columns_of(conn, "active_members") == ["name", "id"]
    assert [r[0] for r in await conn.fetch("SELECT name FROM active_names ORDER BY 1")] == ["ann", "bob"]
    await replans_empty(db)

    # a materialized view's query changes: re-created, MEDIUM (its rows are computed again)
    @db.view(materialized=True, name="top_scores")
    class TopScores2:
        sql = "SELECT name, score FROM member ORDER BY score DESC LIMIT 1"

    [pending] = await db.get_pending_migrations()
    assert [(op.kind, op.table, op.risk.name) for op in pending.operations] == [
        ("DROP_VIEW", "top_scores", "MEDIUM"),
        ("CREATE_VIEW", "top_scores", "SAFE"),
    ]
    ok, [refilled] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert ok, output(db)
    assert await conn.fetchval("SELECT count(*) FROM top_scores") == 1
    await replans_empty(db)

    # undo, newest first, restores each previous state
    assert await db.rollback_migration(refilled.version), output(db)[-2000:]
    assert await conn.fetchval("SELECT count(*) FROM top_scores") == 2
    assert await db.rollback_migration(reordered.version), output(db)[-2000:]
    assert await columns_of(conn, "active_members") == ["id", "name", "score"]
    assert await db.rollback_migration(widened.version), output(db)[-2000:]
    assert await columns_of(conn, "active_members") == ["id", "name"]
    assert [r[0] for r in await conn.fetch("SELECT name FROM active_names ORDER BY 1")] == ["ann", "bob"]

    # the first models plan nothing against the restored views
    first = dataflow(dsn)
    _members(first, {"active_members": "SELECT id, name FROM member WHERE active"})
    first.view(active_names)
    first.view(TopScores, name="top_scores", materialized=True)
    async with first.connection() as c:
        again, _ = await plan(c, first.schema(), db.owner, first.options, fast=False)
    assert [(op.kind, op.table) for op in again.operations] == []


async def test_a_column_type_change_under_a_view_recreates_it(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Item:
        code: int
        label: str
        __dataflow__ = {
            "views": {"item_codes": "SELECT id, code FROM item", "labels": "SELECT label FROM item"}
        }

    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    await conn.execute("INSERT INTO item (code, label) VALUES (1, 'a')")

    @db.model
    class Item:  # type: ignore[no-redef]  # noqa: F811
        code: str
        label: str
        __dataflow__ = {
            "views": {"item_codes": "SELECT id, code FROM item", "labels": "SELECT label FROM item"}
        }

    [pending] = await db.get_pending_migrations()
    kinds = [(op.kind, op.table) for op in pending.operations]
    assert kinds == [
        ("DROP_VIEW", "item_codes"),
        ("ALTER_COLUMN_TYPE", "item"),
        ("CREATE_VIEW", "item_codes"),
    ]  # the view over the other column stays
    assert "it reads item.code: its type changes" in pending.operations[0].details
    ok, [changed] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert ok, output(db)
    assert await conn.fetchval("SELECT code FROM item_codes") == "1"
    await replans_empty(db)
    assert await db.rollback_migration(changed.version), output(db)[-2000:]
    assert await conn.fetchval("SELECT pg_typeof(code)::text FROM item_codes") == "bigint"


async def test_a_dbas_view_is_left_alone_and_an_owned_one_dropped_only_with_a_complete_set(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)
    _members(
        db,
        {
            "named": "SELECT name FROM member",
            "totals": {"query": "SELECT sum(score) AS s FROM member", "materialized": True},
        },
    )
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    await conn.execute("CREATE VIEW dba_report AS SELECT count(*) FROM member")
    await replans_empty(db)

    later = dataflow(dsn)
    _members(later, {})
    async with later.connection() as c:
        kept, _ = await plan(c, later.schema(), db.owner, later.options, fast=False)
        complete = replace(later.options, drop_missing_tables=True)
        dropped, _ = await plan(c, later.schema(), db.owner, complete, fast=False)
    assert [op.kind for op in kept.operations] == []
    assert [(op.kind, op.table, op.risk.name) for op in dropped.operations] == [
        ("DROP_VIEW", "named", "MEDIUM"),
        ("DROP_VIEW", "totals", "HIGH"),
    ]
    assert (
        dropped.operations[1].sql_down[0].startswith('CREATE MATERIALIZED VIEW "public"."totals" AS SELECT')
    )
    assert await view_def(conn, "dba_report") is not None

    # a DBA's view reading a declared view that must be re-created: not dropped for it; the plan says why
    await conn.execute("CREATE VIEW dba_names AS SELECT name FROM named")
    changed = dataflow(dsn)
    _members(changed, {"named": "SELECT score, name FROM member"})
    async with changed.connection() as c:
        blocked, _ = await plan(c, changed.schema(), db.owner, changed.options, fast=False)
    assert [(op.kind, op.table, op.risk.name) for op in blocked.operations] == [
        ("DROP_VIEW", "named", "HIGH"),
        ("CREATE_VIEW", "named", "SAFE"),
    ]
    assert "dba_names, which no model declares" in blocked.operations[0].assessment.reason


async def test_a_view_changed_by_hand_moves_the_fingerprint(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)
    _members(db, {"named": "SELECT id, name FROM member"})
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    await replans_empty(db)
    await conn.execute("CREATE OR REPLACE VIEW named AS SELECT id, name FROM member WHERE active")
    async with db.connection() as c:
        fast, _ = await plan(c, db.schema(), db.owner, db.options)
    [op] = fast.operations
    assert (op.kind, op.table, op.risk.name) == ("CREATE_VIEW", "named", "SAFE")
    assert op.sql_up[0].startswith('CREATE OR REPLACE VIEW "public"."named"')
    await conn.execute("DROP VIEW named")
    async with db.connection() as c:
        fast, _ = await plan(c, db.schema(), db.owner, db.options)
    assert [(op.kind, op.sql_up[0]) for op in fast.operations] == [
        ("CREATE_VIEW", 'CREATE VIEW "public"."named" AS SELECT id, name FROM member;')
    ]


async def test_manifest_views_plan_and_apply_through_the_cli(
    tmp_path: Path, dsn: str, conn: asyncpg.Connection
) -> None:
    doc = sample()
    doc["spec"]["policy"] = {"maxRiskLevel": "MEDIUM"}
    doc["spec"]["tables"] = [
        {
            "name": "member",
            "columns": [
                {"name": "id", "type": "BIGINT", "nullable": False},
                {"name": "name", "type": "TEXT"},
            ],
            "primaryKey": ["id"],
        }
    ]
    doc["spec"]["views"] = [
        {"name": "names", "query": "SELECT name FROM member"},
        {"name": "name_count", "query": "SELECT count(*) AS n FROM names", "materialized": True},
    ]
    target = tmp_path / "shop.yaml"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, out = await dataflow_cli("plan", "-f", str(target), "--format", "json", "--database-url", dsn)
    assert code == 0, out
    planned = json.loads(out)
    assert [(o["operation"], o["table"]) for o in planned["operations"]] == [
        ("CREATE_TABLE", "member"),
        ("CREATE_VIEW", "names"),
        ("CREATE_VIEW", "name_count"),
    ]
    code, out = await dataflow_cli("apply", "-f", str(target), "--database-url", dsn)
    assert code == 0 and "Applied" in out, out
    assert await conn.fetchval("SELECT n FROM name_count") == 0
    code, out = await dataflow_cli("plan", "-f", str(target), "--format", "json", "--database-url", dsn)
    assert code == 0 and json.loads(out)["operations"] == [], out
    # the claim covers the views too
    owned = await conn.fetch("SELECT table_name FROM dataflow_owned_tables ORDER BY 1")
    assert [r[0] for r in owned] == ["member", "name_count", "names"]


async def test_a_steady_state_probes_once_per_process(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)
    _members(db, {"scored": "SELECT id, score * 2 AS double FROM member WHERE name <> 'x'"})
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    introspect_views._ALIKE.clear()  # as in a new process
    statements: list[str] = []
    async with db.connection() as c:
        c.add_query_logger(lambda record: statements.append(record.query))
        for _ in range(2):
            full, _ = await plan(c, db.schema(), db.owner, db.options, fast=False)
            assert full.operations == []
    # the live text differs from the declared one (PostgreSQL prints 'x'::text), so the first plan of the
    # process probes; the second compares the pair it already found alike
    assert sum(s.startswith('CREATE VIEW "pg_temp"."dataflow_probe_') for s in statements) == 1
    assert await view_def(conn, "scored") is not None


async def test_a_view_reading_a_column_the_plan_adds_is_recreated_after_it(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    @db.model
    class Note:
        body: str
        __dataflow__ = {"views": {"bodies": "SELECT id, body FROM note"}}

    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)

    @db.model
    class Note:  # type: ignore[no-redef]  # noqa: F811
        body: str
        title: str = ""
        __dataflow__ = {"views": {"bodies": "SELECT id, body, title FROM note"}}

    # PostgreSQL cannot read the new query before the column exists: the view is re-created after it
    ok, [m] = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert [(op.kind, op.table) for op in m.operations] == [
        ("DROP_VIEW", "bodies"),
        ("ADD_COLUMN", "note"),
        ("CREATE_VIEW", "bodies"),
    ]
    assert await columns_of(conn, "bodies") == ["id", "body", "title"]
    await replans_empty(db)


async def test_a_split_manifest_declares_the_views_once_in_its_last_part(tmp_path: Path) -> None:
    models = linked_models(tmp_path, groups=12, note_length=1000)
    models.write_text(
        models.read_text() + '\n@db.view\ndef parent_names():\n    return "SELECT name FROM parent_000"\n'
    )
    code, out = await dataflow_cli(*generate_args(models, "--max-bytes", "12000", "--split"))
    assert code == 0, out
    docs = list(yaml.safe_load_all(out))
    assert len(docs) > 1
    assert [d["spec"].get("views") for d in docs] == [None] * (len(docs) - 1) + [
        [{"name": "parent_names", "query": "SELECT name FROM parent_000"}]
    ]


async def test_views_in_another_schema_read_that_schemas_tables(dsn: str, conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE public.member (id int, name text)")  # same name, other schema
    db = dataflow(dsn, schema="app")
    _members(db, {"names": "SELECT name FROM member WHERE name <> 'x'"})
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)
    assert (
        await conn.fetchval("SELECT count(*) FROM pg_views WHERE schemaname = 'app' AND viewname = 'names'")
        == 1
    )
    deps = await conn.fetch(
        "SELECT DISTINCT d.refobjid::regclass::text FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
        " WHERE r.ev_class = 'app.names'::regclass AND d.refobjid <> 'app.names'::regclass"
    )
    assert [r[0] for r in deps] == ["app.member"]
    await replans_empty(db)


async def test_a_view_over_an_enum_column_is_recreated_around_a_type_swap(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    class Mood(enum.Enum):
        HAPPY = "happy"
        SAD = "sad"

    @db.model
    class Person:
        name: str
        mood: Mood = Mood.HAPPY
        __dataflow__ = {"views": {"moods": "SELECT name, mood FROM person"}}

    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, output(db)

    class Mood(enum.Enum):  # type: ignore[no-redef]
        HAPPY = "happy"

    @db.model
    class Person:  # type: ignore[no-redef]  # noqa: F811
        name: str
        mood: Mood = Mood.HAPPY
        __dataflow__ = {"views": {"moods": "SELECT name, mood FROM person"}}

    ok, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert ok, output(db)
    assert [(op.kind, op.table) for op in m.operations] == [
        ("DROP_VIEW", "moods"),
        ("ALTER_ENUM", "mood"),
        ("CREATE_VIEW", "moods"),
    ]
    assert "person.mood: its enum type mood is swapped" in m.operations[0].details
    await replans_empty(db)


async def test_a_role_without_temp_probes_in_the_schema_itself(dsn: str, conn: asyncpg.Connection) -> None:
    role = f"dataflow_notemp_{uuid.uuid4().hex[:8]}"
    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        await conn.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        await conn.execute(f'GRANT CREATE ON DATABASE "{database}" TO {role}')
        parts = urlsplit(dsn)
        role_dsn = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
        db = dataflow(role_dsn)
        _members(db, {"named": "SELECT id, name FROM member WHERE name <> 'x'"})
        ok, _ = await db.auto_migrate(auto_confirm=True)
        assert ok, output(db)
        introspect_views._ALIKE.clear()
        await replans_empty(db)  # probed in public, rolled back: the view reads alike, nothing to do
        assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE 'dataflow_probe_%'") == 0
        _members(db, {"named": "SELECT id, name, score FROM member WHERE name <> 'x'"})
        [pending] = await db.get_pending_migrations()
        assert [(op.kind, op.sql_up[0][:26]) for op in pending.operations] == [
            ("CREATE_VIEW", 'CREATE OR REPLACE VIEW "pu')
        ]
    finally:
        await conn.execute(f"DROP OWNED BY {role} CASCADE")
        await conn.execute(f"DROP ROLE {role}")


async def test_a_view_calling_a_denied_function_is_refused_at_plan_time(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)
    _members(db, {"slow": "SELECT id, pg_sleep(10) AS z FROM member"})
    with pytest.raises(SchemaError, match=r"views\.slow\.query.*pg_sleep"):
        await db.get_pending_migrations()
    assert await conn.fetchval("SELECT to_regclass('member')") is None  # nothing was written
    allowed = dataflow(dsn, allowed_functions=["pg_sleep"])
    _members(allowed, {"slow": "SELECT id, pg_sleep(10) AS z FROM member"})
    [pending] = await allowed.get_pending_migrations()
    assert [op.kind for op in pending.operations] == ["CREATE_TABLE", "CREATE_VIEW"]


async def test_initialize_creates_the_views_functions_and_triggers_of_new_models(
    dsn: str, conn: asyncpg.Connection
) -> None:
    """initialize() creates only what is missing, by name: a new model's view, the function its trigger
    executes and the trigger come with its table (found by the plan-speed bench: the trigger failed with
    "function does not exist" when the plan was limited to the missing tables)."""
    db = dataflow(dsn)

    @db.model
    class Ticket:
        __dataflow__ = {
            "views": {"open_ticket": "SELECT id, title FROM ticket WHERE NOT closed"},
            "functions": [
                {
                    "name": "ticket_title",
                    "returns": "trigger",
                    "body": "BEGIN NEW.title := btrim(NEW.title); RETURN NEW; END",
                }
            ],
            "triggers": [
                {"name": "ticket_trim", "timing": "BEFORE", "events": ["INSERT"], "function": "ticket_title"}
            ],
        }
        title: str
        closed: bool = False

    assert await db.initialize()
    await conn.execute("INSERT INTO ticket (title) VALUES ('  spaced  ')")
    assert await conn.fetchval("SELECT title FROM open_ticket") == "spaced"
    await replans_empty(db)


async def test_a_dbas_view_over_a_changing_column_refuses_the_plan_naming_it(
    dsn: str, conn: asyncpg.Connection
) -> None:
    """A view no model declares is never dropped; when it reads a column whose type the models change,
    PostgreSQL would refuse the ALTER at apply time, so the plan refuses first and says what to do. A
    plan limited to other tables, or one that declares the view, goes through."""
    db = dataflow(dsn)

    @db.model
    class Item:
        code: int
        label: str

    @db.model
    class Other:
        name: str

    assert await db.initialize()
    await conn.execute("CREATE VIEW dba_codes AS SELECT id, code FROM item")

    @db.model
    class Item:  # type: ignore[no-redef]  # noqa: F811
        code: str
        label: str

    with pytest.raises(SchemaError) as err:
        await db.get_pending_migrations()
    assert err.value.field == "views"
    assert "view dba_codes (no model declares it) it reads item.code: its type changes" in str(err.value)
    assert "declare the view" in str(err.value)
    success, _ = await db.auto_migrate(auto_confirm=True, include_tables=["other"])
    assert success, output(db)  # nothing of item is planned: no refusal

    @db.model
    class Item:  # type: ignore[no-redef]  # noqa: F811
        code: str
        label: str
        __dataflow__ = {"views": {"dba_codes": "SELECT id, code FROM item"}}

    [pending] = await db.get_pending_migrations()
    assert [(op.kind, op.table) for op in pending.operations] == [
        ("DROP_VIEW", "dba_codes"),
        ("ALTER_COLUMN_TYPE", "item"),
        ("CREATE_VIEW", "dba_codes"),
    ]
    assert await conn.fetchval("SELECT count(*) FROM dba_codes") == 0  # still there, untouched
