"""Spec chapter "Rollback System"."""

from __future__ import annotations

from datetime import datetime

from dataflow import DataFlow
from tests.contract_examples.quick_start import pending_user_change
from tests.contract_examples.runner import Example, Runner


async def three_migrations(run: Runner) -> list[str]:
    """Apply the User in three steps (create; add phone; add is_active); their versions, oldest first."""
    db = await run.quiet_db()

    @db.model
    class User:
        name: str
        email: str
        created_at: datetime = None  # type: ignore[assignment]

    await db.auto_migrate(auto_confirm=True)

    @db.model
    class User:  # noqa: F811 - a model evolves by redefinition
        name: str
        email: str
        phone: str = None  # type: ignore[assignment]
        created_at: datetime = None  # type: ignore[assignment]

    await db.auto_migrate(auto_confirm=True)

    @db.model
    class User:  # noqa: F811
        name: str
        email: str
        phone: str = None  # type: ignore[assignment]
        is_active: bool = True
        created_at: datetime = None  # type: ignore[assignment]

    await db.auto_migrate(auto_confirm=True)
    history = await db.get_migration_history()
    assert [r.status for r in history] == ["applied"] * 3
    return [r.version for r in reversed(history)]


ANALYSIS = Example(
    "Automatic Rollback Analysis",
    """
# View rollback plan before applying
success, migrations = await db.auto_migrate(dry_run=True)

for migration in migrations:
    print(f"Migration: {migration.description}")
    print(f"Rollback plan: {len(migration.rollback_steps)} steps")

    for step in migration.rollback_steps:
        print(f"  - {step.operation_type}: {step.sql}")
        print(f"    Risk: {step.risk_level}")
        print(f"    Duration: {step.estimated_duration_ms}ms")
""",
)


@ANALYSIS.check()
async def analysis_prints_each_undo_step(run: Runner) -> None:
    names = await pending_user_change(run)
    result = await run.run(ANALYSIS, **names)
    [migration] = result["migrations"]
    [step] = migration.rollback_steps
    assert isinstance(step.estimated_duration_ms, int)
    assert (
        "Migration: 1 add column on user\nRollback plan: 1 steps\n"
        '  - UNDO_ADD_COLUMN: ALTER TABLE "public"."user" DROP COLUMN "phone";\n'
        f"    Risk: {step.risk_level}\n    Duration: {step.estimated_duration_ms}ms\n"
    ) in run.out
    assert "phone" not in await run.columns("user")  # dry run


@ANALYSIS.check(missing="issue 10: RollbackStep.risk_level grades the undo itself (DROP COLUMN is not SAFE)")
async def analysis_grades_the_undo_itself(run: Runner) -> None:
    names = await pending_user_change(run)
    result = await run.run(ANALYSIS, **names)
    [step] = result["migrations"][0].rollback_steps
    assert step.risk_level in ("MEDIUM", "HIGH")
    assert f"Risk: {step.risk_level}" in run.out


MANUAL = Example(
    "Manual Rollback",
    """
# Rollback specific migration
migration_version = LATEST  # was: migration_version = "migration_20250131_120000"
success = await db.rollback_migration(migration_version)

if success:
    print("Rollback completed successfully")
else:
    print("Rollback failed - check logs")

first = success  # adapted: keep the first result
# Rollback to specific point in time
# was: success = await db.rollback_to_version("migration_20250130_100000")
success = await db.rollback_to_version(FIRST)  # adapted: a version this database has
""",
)


@MANUAL.check()
async def manual_rollback_of_the_latest_then_back_to_the_first(run: Runner) -> None:
    versions = await three_migrations(run)
    db = DataFlow()
    result = await run.run(MANUAL, db=db, LATEST=versions[2], FIRST=versions[0])
    assert result["first"] is True and result["success"] is True
    assert "Rollback completed successfully" in run.out
    assert list(await run.columns("user")) == ["id", "name", "email", "created_at"]
    history = await db.get_migration_history()
    assert [r.status for r in history] == ["rolled_back", "rolled_back", "applied"]


@MANUAL.check(missing="issue 10: rollback_migration/rollback_to_version of an unknown version return False")
async def manual_rollback_of_the_docs_versions_returns_false(run: Runner) -> None:
    await three_migrations(run)  # none of them is the docs' migration_20250131_120000
    names = {"LATEST": "migration_20250131_120000", "FIRST": "migration_20250130_100000"}
    result = await run.run(MANUAL, db=DataFlow(), **names)
    assert result["first"] is False and result["success"] is False
    assert "Rollback failed - check logs" in run.out
    assert "migration_20250131_120000" in run.out  # the message names the version
    assert "is_active" in await run.columns("user")  # nothing changed


CHECKS = Example(
    "Rollback Safety Checks",
    """
# Check if rollback is possible
# was: rollback_analysis = await db.analyze_rollback("migration_20250131_120000")
rollback_analysis = await db.analyze_rollback(VERSION)  # adapted: a version this database has

print(f"Rollback possible: {rollback_analysis.fully_reversible}")
print(f"Data loss warning: {rollback_analysis.data_loss_warning}")
print(f"Irreversible operations: {rollback_analysis.irreversible_operations}")
""",
)


@CHECKS.check()
async def checks_an_added_column_without_data_is_reversible(run: Runner) -> None:
    versions = await three_migrations(run)
    await run.run(CHECKS, db=DataFlow(), VERSION=versions[1])
    assert "Rollback possible: True\nData loss warning: None\nIrreversible operations: []\n" in run.out


@CHECKS.check(missing="issue 10: analyze_rollback reports the data an undone ADD COLUMN would remove")
async def checks_an_added_column_holding_data_warns(run: Runner) -> None:
    versions = await three_migrations(run)
    await run.execute("INSERT INTO \"user\" (name, email, phone) VALUES ('Al', 'al@x.org', '+1-555-0123')")
    result = await run.run(CHECKS, db=DataFlow(), VERSION=versions[1])
    analysis = result["rollback_analysis"]
    assert analysis.fully_reversible is False
    assert "phone" in (analysis.data_loss_warning or "")
    assert any("phone" in op for op in analysis.irreversible_operations)
    assert "Rollback possible: False" in run.out


EXAMPLES = [ANALYSIS, MANUAL, CHECKS]
