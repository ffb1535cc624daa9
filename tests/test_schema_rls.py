"""Issue 11, row-level security: ``__dataflow__ = {"rls": True, "policies": [...]}`` enables row security
and keeps the table's policies exactly as declared. Dropping a policy is HIGH (it widens access), as is
disabling row security. Round trip on real PostgreSQL, with a real role reading through the policies."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dataflow.errors import SchemaError
from dataflow.models import model_to_table
from dataflow.options import MigrationOptions
from dataflow.reconcile import Outcome, plan, reconcile
from dataflow.schema import Policy, Schema
from tests.helpers import dataflow, output, replans_empty


@pytest.fixture
async def reader(conn: asyncpg.Connection) -> AsyncIterator[str]:
    """A login-less role of the cluster for this test, dropped with whatever it owns afterwards."""
    role = f"dataflow_reader_{uuid.uuid4().hex[:8]}"
    await conn.execute(f'CREATE ROLE "{role}"')
    try:
        yield role
    finally:
        await conn.execute(f'DROP OWNED BY "{role}"')
        await conn.execute(f'DROP ROLE "{role}"')


async def visible(conn: asyncpg.Connection, role: str, table: str) -> list[str]:
    """What ``role`` reads from ``table`` through row security."""
    async with conn.transaction():
        await conn.execute(f'SET LOCAL ROLE "{role}"')
        rows = await conn.fetch(f'SELECT owner FROM "{table}" ORDER BY owner')
    return [r[0] for r in rows]


async def policies(conn: asyncpg.Connection, table: str) -> dict[str, tuple[str, str | None]]:
    rows = await conn.fetch("SELECT policyname, cmd, qual FROM pg_policies WHERE tablename = $1", table)
    return {r["policyname"]: (r["cmd"], r["qual"]) for r in rows}


def test_model_and_manifest_policies_are_the_same_schema() -> None:
    class Note:
        __dataflow__ = {
            "rls": True,
            "policies": [
                {
                    "name": "own_rows",
                    "command": "select",
                    "roles": ["app", "public"],
                    "using": "owner = current_user",
                },
                {"name": "insert_own", "command": "INSERT", "with_check": "(owner = CURRENT_USER)"},
            ],
        }
        owner: str

    table = model_to_table(Note)
    assert table.row_level_security is True
    assert table.policies == (
        Policy("insert_own", "INSERT", ("public",), None, "owner = CURRENT_USER"),
        Policy("own_rows", "SELECT", ("app", "public"), "owner = CURRENT_USER", None),
    )
    data = Schema((table,)).to_dict()["tables"][0]
    assert data["rowLevelSecurity"] is True
    assert data["policies"][0] == {
        "name": "insert_own",
        "command": "INSERT",
        "withCheck": "owner = CURRENT_USER",
    }
    assert Schema.from_dict({"tables": [data]}).tables[0] == table
    # a model that says nothing of row security declares none (and the canonical form is unchanged)
    assert (
        "rowLevelSecurity"
        not in Schema((model_to_table(type("Plain", (), {"__annotations__": {"a": str}})),)).to_dict()[
            "tables"
        ][0]
    )


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"name": "p", "command": "SELECT", "with_check": "true"}, r"policies\[0\]\.withCheck|policies\[0\]"),
        ({"name": "p", "command": "INSERT", "using": "true"}, r"policies\[0\]\.using"),
        ({"name": "p", "command": "MERGE", "using": "true"}, r"policies\[0\]\.command"),
        ({"name": "p", "using": "true; DROP TABLE x"}, r"policies\[0\]\.using"),
        ({"name": "p"}, r"policies\[0\]"),
        ({"name": "p", "using": "true", "roles": []}, r"policies\[0\]\.roles"),
        ({"name": "p", "using": "true", "extra": 1}, r"policies\[0\]"),
    ],
)
def test_bad_policies_name_the_field(policy: dict[str, object], field: str) -> None:
    class Bad:
        __dataflow__ = {"rls": True, "policies": [policy]}
        owner: str

    with pytest.raises(SchemaError, match=rf"Bad\.__dataflow__\.{field}"):
        model_to_table(Bad)


async def test_row_security_and_policies_round_trip_and_roll_back(
    dsn: str, conn: asyncpg.Connection, reader: str
) -> None:
    db = dataflow(dsn)

    @db.model
    class Note:
        __dataflow__ = {
            "rls": True,
            "policies": [
                {"name": "own_rows", "command": "SELECT", "roles": [reader], "using": "owner = current_user"}
            ],
        }
        owner: str

    success, [created] = await db.auto_migrate(auto_confirm=True)
    assert success, output(db)
    assert [(op.kind, op.risk.name) for op in created.operations] == [
        ("CREATE_TABLE", "SAFE"),
        ("CREATE_POLICY", "SAFE"),
        ("SET_ROW_SECURITY", "SAFE"),
    ]
    assert "CREATE_POLICY" in output(db)
    await replans_empty(db)
    await conn.execute(f'GRANT SELECT ON note TO "{reader}"')
    await conn.execute(f"INSERT INTO note (owner) VALUES ('{reader}'), ('someone_else')")
    assert await visible(conn, reader, "note") == [reader]

    # widen the policy (ALTER POLICY, MEDIUM), add a second one
    @db.model
    class Note:  # noqa: F811
        __dataflow__ = {
            "rls": True,
            "policies": [
                {
                    "name": "own_rows",
                    "command": "SELECT",
                    "roles": [reader],
                    "using": "owner = current_user OR owner = 'x'",
                },
                {"name": "everyone_reads_x", "command": "SELECT", "using": "owner = 'x'"},
            ],
        }
        owner: str

    success, [changed] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert success, output(db)
    assert sorted((op.kind, op.risk.name) for op in changed.operations) == [
        ("ALTER_POLICY", "MEDIUM"),
        ("CREATE_POLICY", "SAFE"),
    ]
    assert set(await policies(conn, "note")) == {"own_rows", "everyone_reads_x"}
    await replans_empty(db)

    # dropping a policy is HIGH, and refused below it
    @db.model
    class Note:  # noqa: F811
        __dataflow__ = {
            "rls": True,
            "policies": [
                {
                    "name": "own_rows",
                    "command": "SELECT",
                    "roles": [reader],
                    "using": "owner = current_user OR owner = 'x'",
                }
            ],
        }
        owner: str

    [pending] = await db.get_pending_migrations()
    assert [(op.kind, op.risk.name) for op in pending.operations] == [("DROP_POLICY", "HIGH")]
    assert "everyone_reads_x" in pending.operations[0].assessment.reason
    success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert not success
    assert "everyone_reads_x" in await policies(conn, "note")

    # the rollback of the change restores the first policy and drops the added one
    assert await db.rollback_migration(changed.version)
    assert await policies(conn, "note") == {"own_rows": ("SELECT", "(owner = CURRENT_USER)")}
    assert await visible(conn, reader, "note") == [reader]


async def test_disabling_row_security_is_high_and_undeclared_security_is_left_alone(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    @db.model
    class Doc:
        title: str

    assert await db.initialize()
    # a DBA's policy and row security on a table whose model says nothing of them: left alone
    await conn.execute("ALTER TABLE doc ENABLE ROW LEVEL SECURITY")
    await conn.execute("CREATE POLICY dba_policy ON doc USING (true)")
    await replans_empty(db)

    @db.model
    class Doc:  # noqa: F811
        __dataflow__ = {"rls": False}
        title: str

    [pending] = await db.get_pending_migrations()
    assert sorted((op.kind, op.risk.name) for op in pending.operations) == [
        ("DROP_POLICY", "HIGH"),
        ("SET_ROW_SECURITY", "HIGH"),
    ]
    success, [migration] = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success, output(db)
    assert not await conn.fetchval("SELECT relrowsecurity FROM pg_class WHERE relname = 'doc'")
    await replans_empty(db)
    assert await db.rollback_migration(migration.version)
    assert await conn.fetchval("SELECT relrowsecurity FROM pg_class WHERE relname = 'doc'")
    assert await policies(conn, "doc") == {"dba_policy": ("ALL", "true")}


MANIFEST = {
    "tables": [
        {
            "name": "ledger_entry",
            "comment": "Money moved",
            "rowLevelSecurity": True,
            "columns": [
                {"name": "id", "type": "BIGINT", "nullable": False, "identity": "BY DEFAULT"},
                {"name": "owner", "type": "TEXT", "nullable": False, "collation": "C", "comment": "Who"},
            ],
            "primaryKey": ["id"],
            "policies": [{"name": "mine", "command": "ALL", "using": "owner = current_user"}],
        }
    ]
}


async def test_a_manifest_is_graded_and_applied_like_the_models(dsn: str, conn: asyncpg.Connection) -> None:
    """The operator's path: spec.tables through Schema.from_dict and reconcile, the same kinds and grades."""
    desired = Schema.from_dict(MANIFEST)
    result = await reconcile(conn, dsn, desired, "manifest", MigrationOptions())
    assert result.outcome is Outcome.APPLIED, result.reason
    assert [(op.kind, op.risk.name) for op in result.migration.operations] == [
        ("CREATE_TABLE", "SAFE"),
        ("SET_COMMENT", "SAFE"),
        ("SET_COMMENT", "SAFE"),
        ("CREATE_POLICY", "SAFE"),
        ("SET_ROW_SECURITY", "SAFE"),
    ]
    again, _ = await plan(conn, desired, "manifest", MigrationOptions(), fast=False)
    assert again.operations == []
    assert (await reconcile(conn, dsn, desired, "manifest", MigrationOptions())).outcome is Outcome.IN_SYNC

    # a policy whose command changes is replaced: its drop is HIGH, so the default policy refuses it
    changed = json.loads(json.dumps(MANIFEST))
    changed["tables"][0]["policies"][0]["command"] = "SELECT"
    result = await reconcile(conn, dsn, Schema.from_dict(changed), "manifest", MigrationOptions())
    assert result.outcome is Outcome.REFUSED
    assert [(op.kind, op.risk.name) for op in result.migration.operations] == [
        ("DROP_POLICY", "HIGH"),
        ("CREATE_POLICY", "SAFE"),
    ]
    assert await policies(conn, "ledger_entry") == {"mine": ("ALL", "(owner = CURRENT_USER)")}
