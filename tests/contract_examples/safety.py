"""Spec chapter "Safety & Risk Management"."""

from __future__ import annotations

from datetime import datetime

from dataflow import DataFlow
from dataflow.operations import Risk
from tests.contract_examples.quick_start import user_table
from tests.contract_examples.runner import Example, Runner


async def name_email_table(run: Runner) -> None:
    """A populated ``user`` (name, email) table, as the examples below start from."""
    db = await run.quiet_db()

    @db.model
    class User:
        name: str
        email: str

    await db.initialize()
    await run.execute(
        "INSERT INTO \"user\" (name, email) VALUES ('Ann', 'ann@example.com'), ('Bo', 'bo@x.org')"
    )


def levels(db: DataFlow, migrations: list) -> dict[tuple[str, str], Risk]:
    [migration] = migrations
    return {(op.kind, op.change.subject or op.table): op.risk for op in migration.operations}


SAFE = Example(
    "✅ SAFE Operations",
    """
# Example SAFE migrations
@db.model
class User:
    name: str
    email: str
    phone: str = None           # SAFE: nullable column
    is_active: bool = True      # SAFE: has default value
    created_at: datetime = None # SAFE: nullable timestamp
""",
)


@SAFE.check()
async def safe_changes_are_safe_and_apply_under_a_safe_limit(run: Runner) -> None:
    await name_email_table(run)
    db = DataFlow()
    await run.run(SAFE, db=db)
    pending = await db.get_pending_migrations()
    assert levels(db, pending) == {
        ("ADD_COLUMN", "phone"): Risk.SAFE,
        ("ADD_COLUMN", "is_active"): Risk.SAFE,
        ("ADD_COLUMN", "created_at"): Risk.SAFE,
    }
    success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="SAFE")
    assert success
    rows = await run.fetch('SELECT phone, is_active FROM "user"')
    assert [tuple(r) for r in rows] == [(None, True), (None, True)]


MEDIUM = Example(
    "⚠️ MEDIUM Risk Operations",
    """
# Example MEDIUM risk migrations
@db.model
class User:
    name: str
    email: str = Field(max_length=255)  # MEDIUM: length constraint
    age: int                            # MEDIUM: NOT NULL on existing table
""",
)


@MEDIUM.check(missing="issue 10: narrowing graded by what the data holds (all values fit: MEDIUM)")
async def medium_changes_are_medium_and_apply_under_a_medium_limit(run: Runner) -> None:
    await name_email_table(run)
    db = DataFlow()
    await run.run(MEDIUM, db=db)
    pending = await db.get_pending_migrations()
    assert levels(db, pending) == {
        ("ALTER_COLUMN_TYPE", "email"): Risk.MEDIUM,
        ("ADD_COLUMN", "age"): Risk.MEDIUM,
    }
    success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="MEDIUM")
    assert success
    assert (await run.columns("user"))["email"] == "character varying(255)"


@MEDIUM.check()
async def medium_not_null_column_on_a_populated_table(run: Runner) -> None:
    await name_email_table(run)
    db = DataFlow()
    await run.run(MEDIUM, db=db)
    [migration] = await db.get_pending_migrations()
    [age] = [op for op in migration.operations if op.change.subject == "age"]
    assert age.risk is Risk.MEDIUM and "2 rows" in age.assessment.reason


HIGH = Example(
    "🚨 HIGH Risk Operations",
    """
# HIGH risk operations require explicit confirmation
@db.model
class User:
    name: str
    # email field removed - HIGH RISK: data loss
    new_email: str  # Requires manual data migration
""",
)


@HIGH.check()
async def high_changes_need_a_person(run: Runner) -> None:
    await name_email_table(run)
    db = DataFlow()
    await run.run(HIGH, db=db)
    [migration] = await db.get_pending_migrations()
    assert migration.risk is Risk.HIGH
    assert levels(db, [migration])[("DROP_COLUMN", "email")] is Risk.HIGH
    success, _ = await db.auto_migrate(auto_confirm=True)  # no person: MEDIUM at most
    assert not success
    assert "email" in await run.columns("user")
    with run.terminal("y\n"):  # a person confirms at the prompt
        success, _ = await db.auto_migrate()
    assert success
    assert "email" not in await run.columns("user")
    assert await run.backup_values("user", "email") == ["ann@example.com", "bo@x.org"]  # kept


MITIGATION = Example(
    "Risk Mitigation Strategies",
    """
# Configure safety thresholds
await db.auto_migrate(
    max_risk_level="MEDIUM",        # Reject HIGH risk operations
    require_confirmation=True,       # Always ask for HIGH/MEDIUM risk
    data_loss_protection=True,       # Extra checks for data loss
    create_backup=True,             # Backup before risky operations
    rollback_on_failure=True        # Auto-rollback on error
)
""",
)


@MITIGATION.check()
async def mitigation_asks_for_medium_and_applies_on_yes(run: Runner) -> None:
    await name_email_table(run)
    db = DataFlow()

    @db.model
    class User:
        name: str
        email: str
        age: int  # MEDIUM: NOT NULL on a populated table

    await run.run(MITIGATION, typed="y\n", db=db)
    assert "Apply these changes? [y/N]:" in run.out
    assert db.last_result is not None and db.last_result.success
    assert "age" in await run.columns("user")


@MITIGATION.check()
async def mitigation_rejects_high_and_data_loss_even_after_a_yes(run: Runner) -> None:
    await user_table(run)
    db = DataFlow()

    @db.model
    class User:  # email removed: data loss, HIGH
        name: str
        created_at: datetime = None  # type: ignore[assignment]

    await run.run(MITIGATION, typed="y\n", db=db)
    assert db.last_result is not None and not db.last_result.success
    assert [r[0] for r in await run.fetch('SELECT email FROM "user" ORDER BY 1')] == [
        "u0@example.com",
        "u1@example.com",
    ]


EXAMPLES = [SAFE, MEDIUM, HIGH, MITIGATION]
