"""Issue 10, "fix what differs": grading by data, no implicit drops, rollback of added columns, the
rollback details and MigrationConflictError, each against real PostgreSQL."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dataflow import DataFlow, Field
from dataflow.errors import MigrationConflictError
from tests.helpers import dataflow, output


def make(dsn: str, **kwargs: object) -> DataFlow:
    return DataFlow(dsn, console=Console(file=io.StringIO(), width=160), **kwargs)  # type: ignore[arg-type]


async def test_narrowing_graded_by_the_data(dsn: str, conn) -> None:
    """The docs' MEDIUM example: TEXT → VARCHAR(255) whose values all fit is MEDIUM with the check named,
    so max_risk_level="MEDIUM" applies it; a value that would not fit makes it HIGH, with the count."""
    db = dataflow(dsn)

    @db.model
    class User:
        name: str
        email: str

    await db.initialize()
    await conn.executemany(
        'INSERT INTO "user" (name, email) VALUES ($1, $2)', [("a", "a@x.io"), ("b", "b" * 255)]
    )

    @db.model
    class User:  # noqa: F811
        name: str
        email: str = Field(max_length=255)

    [pending] = await db.get_pending_migrations()
    [op] = pending.operations
    assert (op.kind, op.risk.name) == ("ALTER_COLUMN_TYPE", "MEDIUM")
    assert "checked: every value of 2 rows fits VARCHAR(255)" in op.assessment.reason

    await conn.execute('INSERT INTO "user" (name, email) VALUES ($1, $2), ($1, $2)', "c", "c" * 256)
    refused, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert not refused and m.safety_level == "HIGH"
    assert "2 rows cannot be converted from TEXT to VARCHAR(255)" in m.operations[0].assessment.reason

    await conn.execute("DELETE FROM \"user\" WHERE name = 'c'")
    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert success and m.safety_level == "MEDIUM"
    assert (
        await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'public.user'::regclass AND attname = 'email'"
        )
        == "character varying(255)"
    )


async def test_adding_a_constraint_graded_by_the_data(dsn: str, conn) -> None:
    """A constraint every row satisfies stays MEDIUM (and says it checked); rows that violate it: HIGH."""
    db = dataflow(dsn)

    @db.model
    class Account:
        email: str
        balance: int = 0

    await db.initialize()
    await conn.executemany('INSERT INTO "account" (email, balance) VALUES ($1, $2)', [("a", 1), ("b", 2)])

    @db.model
    class Account:  # noqa: F811
        email: str = Field(unique=True)
        balance: int = 0

    [pending] = await db.get_pending_migrations()
    [op] = [op for op in pending.operations if op.kind == "ADD_CONSTRAINT"]
    assert op.risk.name == "MEDIUM" and "checked: every row satisfies it" in op.assessment.reason

    await conn.executemany('INSERT INTO "account" (email) VALUES ($1)', [("a",), ("a",)])
    [pending] = await db.get_pending_migrations()
    [op] = [op for op in pending.operations if op.kind == "ADD_CONSTRAINT"]
    assert op.risk.name == "HIGH" and "2 rows violate it" in op.assessment.reason
    refused, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert not refused

    await conn.execute('DELETE FROM "account" WHERE balance = 0')
    success, [m] = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert success and m.safety_level == "MEDIUM"


async def test_dropping_tables_is_never_implicit(dsn: str, conn) -> None:
    """Models a DataFlow instance does not mention are kept and listed, unless it is told the model set is
    complete; a DataFlow() without models, or a second application with the same default owner, plans
    nothing destructive."""
    first = make(dsn)

    @first.model
    class Customer:
        name: str

    @first.model
    class Invoice:
        total: int

    assert (await first.auto_migrate(auto_confirm=True))[0]
    await conn.execute("INSERT INTO customer (name) VALUES ('kept')")

    bare = make(dsn)  # the docs' CI/CD snippet: DataFlow() with no models
    success, applied = await bare.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert success and applied == []
    assert "Not in models (kept): customer, invoice" in output(bare)
    assert await bare.get_pending_migrations() == []

    second = make(dsn)  # another application, same default owner

    @second.model
    class Audit:
        event: str

    success, [m] = await second.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert success and [(op.kind, op.table) for op in m.operations] == [("CREATE_TABLE", "audit")]
    assert m.kept_tables == ["customer", "invoice"]
    assert "Not in models (kept): customer, invoice" in output(second)
    assert await conn.fetchval("SELECT name FROM customer") == "kept"

    complete = make(dsn, drop_missing_tables=True)

    @complete.model
    class Customer:  # noqa: F811
        name: str

    @complete.model
    class Audit:  # noqa: F811
        event: str

    [pending] = await complete.get_pending_migrations()
    assert [(op.kind, op.table) for op in pending.operations] == [("DROP_TABLE", "invoice")]
    assert pending.kept_tables == []
    success, _ = await complete.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success and await conn.fetchval("SELECT to_regclass('public.invoice')") is None


async def test_rollback_of_an_added_column_keeps_its_data(dsn: str, conn) -> None:
    """An added column that received data since: analyze_rollback says so (not fully reversible), the
    rollback copies the values to dataflow_backup before the undo drops them, and they can be put back."""
    db = dataflow(dsn)

    @db.model
    class User:
        name: str

    await db.initialize()
    await conn.executemany('INSERT INTO "user" (name) VALUES ($1)', [("a",), ("b",), ("c",)])

    @db.model
    class User:  # noqa: F811
        name: str
        phone: str = None
        active: bool = True

    success, [m] = await db.auto_migrate(auto_confirm=True)
    assert success
    untouched = await db.analyze_rollback(m.version)  # a default fills rows; that is not data written since
    assert untouched.fully_reversible and untouched.data_removed == []

    await conn.execute("UPDATE \"user\" SET phone = '555-' || name WHERE name <> 'c'")
    analysis = await db.analyze_rollback(m.version)
    assert not analysis.fully_reversible
    assert analysis.data_removed == ["user.phone: 2 rows hold a value that the undo would remove"]
    assert "removes data written since the migration" in analysis.data_loss_warning
    assert analysis.irreversible_operations == [
        "UNDO_ADD_COLUMN user.phone: 2 rows hold a value that the undo would remove"
    ]

    assert await db.rollback_migration(m.version)
    [(backup, restore)] = [
        (line.split(" in ", 1)[1].split(";", 1)[0], line.split("again: ", 1)[1])
        for line in output(db).splitlines()
        if line.startswith("kept 2 rows of user.phone")
    ]
    assert backup.startswith('"dataflow_backup".')
    assert sorted(tuple(r) for r in await conn.fetch(f"SELECT id, phone FROM {backup}")) == [
        (1, "555-a"),
        (2, "555-b"),
    ]
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'phone'"
        )
        == 0
    )

    assert (await db.auto_migrate(auto_confirm=True))[0]  # the column again, then its values back
    await conn.execute(restore)
    assert [tuple(r) for r in await conn.fetch('SELECT name, phone FROM "user" ORDER BY id')] == [
        ("a", "555-a"),
        ("b", "555-b"),
        ("c", None),
    ]


async def test_rollback_details(dsn: str, conn) -> None:
    """RollbackStep.risk_level grades the undo (undoing ADD COLUMN drops a column: not SAFE), and
    rollback_migration of an unknown version returns False with a message."""
    db = dataflow(dsn)

    @db.model
    class User:
        name: str

    await db.initialize()

    @db.model
    class User:  # noqa: F811
        name: str
        phone: str = None

    _, [m] = await db.auto_migrate(dry_run=True)
    [op] = m.operations
    assert op.risk.name == "SAFE"
    [step] = m.rollback_steps
    assert step.operation_type == "UNDO_ADD_COLUMN" and "DROP COLUMN" in step.sql
    assert step.risk_level == "HIGH"

    assert await db.rollback_migration("migration_20250131_120000") is False
    assert "rollback of migration_20250131_120000 refused: unknown migration version" in output(db)
    assert await db.rollback_to_version("migration_20250130_100000") is False
    assert "rollback to migration_20250130_100000 refused: unknown migration version" in output(db)


async def test_conflict_error_for_a_column_changed_by_hand(dsn: str, conn) -> None:
    """A column changed by hand since DataFlow applied it, which the plan would change again: the docs'
    MigrationConflictError, with .message and .conflicts (.table, .description, .resolution_options).
    Nothing is applied; a model that matches the database resolves it."""
    db = dataflow(dsn)

    @db.model
    class Product:
        name: str
        sku: str = Field(max_length=20)
        note: str = None

    await db.initialize()
    await conn.execute("INSERT INTO product (name, sku) VALUES ('lamp', 'L-1')")
    await conn.execute("ALTER TABLE product ALTER COLUMN sku TYPE varchar(40)")  # by hand

    @db.model
    class Product:  # noqa: F811
        name: str
        sku: str = Field(max_length=20)
        note: str = Field(default="none")  # the model's own change, on another column

    with pytest.raises(MigrationConflictError) as raised:
        await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    error = raised.value
    assert "product.sku was changed outside DataFlow" in error.message
    [conflict] = error.conflicts
    assert conflict.table == "product"
    assert "type VARCHAR(20) → VARCHAR(40)" in conflict.description
    assert "ALTER_COLUMN_TYPE" in conflict.description
    assert any("update the model" in option for option in conflict.resolution_options)
    assert (
        await conn.fetchval(
            "SELECT column_default FROM information_schema.columns"
            " WHERE table_name = 'product' AND column_name = 'note'"
        )
        is None
    )  # nothing applied, not even the other column's change

    with pytest.raises(MigrationConflictError):  # a dry run says so too
        await db.auto_migrate(dry_run=True)

    @db.model
    class Product:  # noqa: F811
        name: str
        sku: str = Field(max_length=40)  # keep the hand change
        note: str = Field(default="none")

    success, [m] = await db.auto_migrate(auto_confirm=True)
    assert success and [op.kind for op in m.operations] == ["SET_DEFAULT", "SET_NOT_NULL"]


async def test_conflict_error_for_tables_of_another_owner(dsn: str, conn) -> None:
    """Tables another owner holds: MigrationConflictError naming each, with real ways out."""
    other = dataflow(dsn, owner="billing")

    @other.model
    class Invoice:
        total: int

    assert (await other.auto_migrate(auto_confirm=True))[0]

    db = dataflow(dsn)

    @db.model
    class Invoice:  # noqa: F811
        total: int
        note: str = None

    with pytest.raises(MigrationConflictError) as raised:
        await db.auto_migrate(auto_confirm=True)
    [conflict] = raised.value.conflicts
    assert conflict.table == "invoice" and "owned by billing" in conflict.description
    assert "DataFlow(migration_config={'owner': 'billing'})" in conflict.resolution_options[0]
    assert "invoice" in raised.value.message
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'invoice' AND column_name = 'note'"
        )
        == 0
    )

    same = dataflow(dsn, owner="billing")  # the first resolution option, as written
    same.models = dict(db.models)
    assert (await same.auto_migrate(auto_confirm=True))[0]
