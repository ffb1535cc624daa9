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
