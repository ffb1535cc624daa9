"""Spec chapters "Concurrent Access Protection", "Migration Monitoring", "Production Best Practices"
and "Troubleshooting"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from dataflow import DataFlow
from tests.contract_examples.quick_start import pending_user_change, user_table
from tests.contract_examples.rollback import three_migrations
from tests.contract_examples.runner import Example, Exited, Runner, http_server

LOCKING = Example(
    "Migration Locking",
    """
# Automatic migration locking for multi-process environments
async with db.migration_lock("users_schema"):
    success, migrations = await db.auto_migrate()
    if success:
        print("Migration applied successfully")
""",
)


@LOCKING.check()
async def locking_applies_inside_the_lock_and_releases_it(run: Runner) -> None:
    names = await pending_user_change(run)
    await run.run(LOCKING, typed="y\n", **names)
    assert "Migration applied successfully" in run.out
    assert "phone" in await run.columns("user")
    db: DataFlow = names["db"]  # type: ignore[assignment]
    async with db.migration_lock("users_schema", timeout=1):  # released: taken again at once
        pass


QUEUE = Example(
    "Queue Management",
    """
# Queue migrations for high-concurrency scenarios
migration_id = await db.queue_migration({
    "target_schema": updated_schema,
    "priority": 1,  # Higher priority = processed first
    "timeout": 300  # 5 minute timeout
})

# Check queue status
status = await db.get_migration_status(migration_id)
print(f"Migration status: {status.status}")
print(f"Queue position: {status.position}")
""",
)


@QUEUE.check()
async def queue_returns_an_id_and_a_status(run: Runner) -> None:
    names = await pending_user_change(run)
    db: DataFlow = names["db"]  # type: ignore[assignment]
    result = await run.run(QUEUE, updated_schema=db.schema(), **names)
    assert result["migration_id"]
    status = result["status"]
    assert status.status in ("queued", "running", "applied")
    assert isinstance(status.position, int) and status.position >= 0
    assert f"Migration status: {status.status}\nQueue position: {status.position}\n" in run.out
    # the docs' call starts a worker task: let it finish before this test's database is reused
    assert (await db.wait_for_migration(result["migration_id"], timeout=60)).status == "applied"
    assert "phone" in await run.columns("user")


METRICS = Example(
    "Performance Metrics",
    """
# Enable migration monitoring
db = DataFlow(
    migration_config={
        "monitoring": True,
        "performance_tracking": True,
        "slow_migration_threshold": 5000,  # 5 seconds
    }
)

# Get migration performance data
metrics = await db.get_migration_metrics()
print(f"Average migration time: {metrics.avg_duration_ms}ms")
print(f"Success rate: {metrics.success_rate}%")
print(f"Rollback rate: {metrics.rollback_rate}%")
""",
)


@METRICS.check()
async def metrics_from_the_ledger(run: Runner) -> None:
    versions = await three_migrations(run)
    assert await (await run.quiet_db()).rollback_migration(versions[2])
    result = await run.run(METRICS)
    metrics = result["metrics"]
    assert metrics.success_rate == 100.0
    assert metrics.rollback_rate == pytest.approx(100 / 3)
    assert metrics.avg_duration_ms > 0
    assert f"Average migration time: {metrics.avg_duration_ms}ms" in run.out
    assert "Success rate: 100.0%" in run.out
    assert f"Rollback rate: {metrics.rollback_rate}%" in run.out


HISTORY = Example(
    "Migration History",
    """
# View migration history
history = await db.get_migration_history(limit=10)

for record in history:
    print(f"Migration: {record.name}")
    print(f"Applied: {record.applied_at}")
    print(f"Status: {record.status}")
    print(f"Operations: {len(record.operations)}")
    print("---")
""",
)


@HISTORY.check()
async def history_lists_each_migration_newest_first(run: Runner) -> None:
    versions = await three_migrations(run)
    result = await run.run(HISTORY, db=DataFlow())
    history = result["history"]
    assert [r.name for r in history] == versions[::-1]
    for record in history:
        assert isinstance(record.applied_at, datetime)
        assert (
            f"Migration: {record.name}\nApplied: {record.applied_at}\nStatus: applied\nOperations: 1\n---\n"
            in run.out
        )


CI_CD = Example(
    "CI/CD Integration",
    """
# In your deployment pipeline
import os

# Production migration script
async def deploy_migrations():
    db = DataFlow()

    # Check for pending migrations
    pending = await db.get_pending_migrations()

    if not pending:
        print("No migrations to apply")
        return True

    # Apply with production safety settings
    success, applied = await db.auto_migrate(
        auto_confirm=True,              # No interactive prompts
        max_risk_level="MEDIUM",        # Block HIGH risk operations
        backup_before_migration=True,   # Always backup
        rollback_on_error=True,         # Auto-rollback failures
        timeout=600                     # 10 minute timeout
    )

    if success:
        print(f"Applied {len(applied)} migrations successfully")
        return True
    else:
        print("Migration failed - check logs")
        return False

# Use in your deployment
if __name__ == "__main__":
    success = await deploy_migrations()
    exit(0 if success else 1)
""",
)


async def exit_code(run: Runner, example: Example, **names: Any) -> int:
    with pytest.raises(Exited) as exited:
        await run.run(example, **names)
    return exited.value.code


@CI_CD.check()
async def ci_cd_on_a_new_database_has_nothing_to_do(run: Runner) -> None:
    assert await exit_code(run, CI_CD) == 0
    assert "No migrations to apply" in run.out


@CI_CD.check()
async def ci_cd_keeps_the_tables_of_the_application_that_made_them(run: Runner) -> None:
    await three_migrations(run)  # another DataFlow (same default owner) made "user"
    assert await exit_code(run, CI_CD) == 0
    assert "No migrations to apply" in run.out
    assert "is_active" in await run.columns("user")


ALERTING = Example(
    "Monitoring & Alerting",
    """
# Set up migration monitoring
db = DataFlow(
    migration_config={
        "monitoring": {
            "enabled": True,
            "webhook_url": WEBHOOK_URL,  # was: "webhook_url": "https://your-monitoring.com/webhooks/migrations",
            "alert_on_failure": True,
            "alert_on_rollback": True,
            "performance_threshold": 10000,  # Alert if >10s
        }
    }
)
""",
)


@ALERTING.check()
async def alerting_posts_a_json_alert_on_rollback(run: Runner) -> None:
    await user_table(run)
    with http_server() as (url, received):
        result = await run.run(ALERTING, WEBHOOK_URL=url + "/webhooks/migrations")
        db: DataFlow = result["db"]

        @db.model
        class User:
            name: str
            email: str
            phone: str = None  # type: ignore[assignment]
            created_at: datetime = None  # type: ignore[assignment]

        success, [migration] = await db.auto_migrate(auto_confirm=True)
        assert success and await db.rollback_migration(migration.version)
    alerts = [r for r in received if r.path == "/webhooks/migrations"]
    assert alerts, "no alert posted"
    assert alerts[-1].headers.get("Content-Type", "").startswith("application/json")
    assert migration.version in alerts[-1].body.decode()
    assert isinstance(alerts[-1].json(), dict)


BLUE_GREEN = Example(
    "Blue-Green Deployments",
    """
# Blue-green deployment with migrations
async def blue_green_migration():
    # Apply to staging first
    staging_db = DataFlow(database_url=STAGING_URL)
    success = await staging_db.auto_migrate(auto_confirm=True)

    if not success:
        raise Exception("Staging migration failed")

    # Run validation tests
    await run_integration_tests(staging_db)

    # Apply to production
    prod_db = DataFlow(database_url=PRODUCTION_URL)
    success = await prod_db.auto_migrate(auto_confirm=True)

    if not success:
        # Rollback staging
        await staging_db.rollback_last_migration()
        raise Exception("Production migration failed")

    return True
deployed = await blue_green_migration()  # adapted: run it
""",
)


async def blue_green(run: Runner) -> tuple[dict[str, Any], list[DataFlow]]:
    """Both databases hold the application's tables; runs the block; its locals and the dbs tested."""
    production = await run.second_database()
    await three_migrations(run)
    await three_migrations(Runner(production, run.capsys, run.monkeypatch, run.tmp_path, run.second_database))
    tested: list[DataFlow] = []

    async def run_integration_tests(db: DataFlow) -> None:
        async with db.connection() as conn:
            assert await conn.fetchval('SELECT count(*) FROM "user"') == 0
        tested.append(db)

    result = await run.run(
        BLUE_GREEN,
        STAGING_URL=run.dsn,
        PRODUCTION_URL=production,
        run_integration_tests=run_integration_tests,
    )
    for dsn in (run.dsn, production):
        kept = Runner(dsn, run.capsys, run.monkeypatch, run.tmp_path, run.second_database)
        assert "is_active" in await kept.columns("user")
    return result, tested


@BLUE_GREEN.check()
async def blue_green_stages_then_production(run: Runner) -> None:
    result, tested = await blue_green(run)
    assert result["deployed"] is True
    assert [db.dsn for db in tested] == [run.dsn]  # the tests ran against staging


@BLUE_GREEN.check()
async def blue_green_plans_nothing_destructive(run: Runner) -> None:
    result, tested = await blue_green(run)
    staging = tested[0]
    assert staging.last_result is not None and staging.last_result.success
    assert not (staging.last_result.migration and staging.last_result.migration.operations)


CONFLICTS = Example(
    "Migration Conflicts",
    """
# Resolve migration conflicts
try:
    success, migrations = await db.auto_migrate()
except MigrationConflictError as e:
    print(f"Conflict detected: {e.message}")
    print("Manual resolution required")

    # View conflicting changes
    conflicts = e.conflicts
    for conflict in conflicts:
        print(f"Table: {conflict.table}")
        print(f"Conflict: {conflict.description}")
        print(f"Resolution options: {conflict.resolution_options}")
""",
)


@CONFLICTS.check()
async def conflicts_a_column_changed_by_hand(run: Runner) -> None:
    await three_migrations(run)
    await run.execute('ALTER TABLE "user" ALTER COLUMN email TYPE varchar(100)')  # by hand, since
    db = DataFlow()

    @db.model
    class User:  # the model as last applied: the plan would undo the hand-made change
        name: str
        email: str
        phone: str = None  # type: ignore[assignment]
        is_active: bool = True
        created_at: datetime = None  # type: ignore[assignment]

    result = await run.run(CONFLICTS, db=db)
    assert "Conflict detected: " in run.out and "Manual resolution required" in run.out
    [conflict] = result["conflicts"]
    assert conflict.table == "user" and "email" in conflict.description
    assert conflict.resolution_options and all(isinstance(o, str) for o in conflict.resolution_options)
    assert f"Table: user\nConflict: {conflict.description}\n" in run.out
    assert (await run.columns("user"))["email"] == "character varying(100)"  # left as it is


PERFORMANCE = Example(
    "Performance Issues",
    """
# Debug slow migrations
migration_metrics = await db.analyze_migration_performance()

print(f"Slowest operations:")
for op in migration_metrics.slow_operations:
    print(f"  {op.operation}: {op.duration_ms}ms")
    print(f"  Suggestion: {op.optimization_suggestion}")
""",
)


@PERFORMANCE.check()
async def performance_names_the_slowest_steps_with_suggestions(run: Runner) -> None:
    db = await run.quiet_db()

    @db.model
    class Reading:
        value: int

    await db.auto_migrate(auto_confirm=True)
    await run.execute("INSERT INTO reading (value) SELECT g FROM generate_series(1, 50000) g")

    @db.model
    class Reading:  # noqa: F811
        value: int
        __dataflow__ = {"indexes": [{"fields": ["value"]}]}

    assert (await db.auto_migrate(auto_confirm=True))[0]
    result = await run.run(PERFORMANCE, db=DataFlow())
    slow = result["migration_metrics"].slow_operations
    assert slow, "no operation listed"
    assert [op.duration_ms for op in slow] == sorted((op.duration_ms for op in slow), reverse=True)
    for op in slow:
        assert isinstance(op.operation, str) and op.duration_ms >= 0 and op.optimization_suggestion
        assert (
            f"  {op.operation}: {op.duration_ms}ms\n  Suggestion: {op.optimization_suggestion}\n" in run.out
        )


DATA_LOSS = Example(
    "Data Loss Prevention",
    """
# Extra safety for production
success, migrations = await db.auto_migrate(
    data_loss_protection=True,      # Block any data loss risk
    require_explicit_confirm=True,  # Require manual approval
    create_backup=True,             # Always backup first
    validate_after_migration=True   # Verify schema matches models
)
""",
)


@DATA_LOSS.check()
async def data_loss_prevention_applies_a_safe_change_after_approval(run: Runner) -> None:
    names = await pending_user_change(run)
    result = await run.run(DATA_LOSS, typed="y\n", **names)
    assert result["success"] is True
    assert "Apply these changes? [y/N]:" in run.out
    assert "phone" in await run.columns("user")


@DATA_LOSS.check()
async def data_loss_prevention_blocks_a_drop_even_when_the_table_is_typed(run: Runner) -> None:
    await user_table(run)
    db = DataFlow()

    @db.model
    class User:  # email removed: data loss
        name: str
        created_at: datetime = None  # type: ignore[assignment]

    result = await run.run(DATA_LOSS, typed="user\n", db=db)
    assert result["success"] is False
    assert "email" in await run.columns("user")


EXAMPLES = [
    LOCKING,
    QUEUE,
    METRICS,
    HISTORY,
    CI_CD,
    ALERTING,
    BLUE_GREEN,
    CONFLICTS,
    PERFORMANCE,
    DATA_LOSS,
]
