"""Spec chapters "Quick Start" and "Migration Modes"."""

from __future__ import annotations

from datetime import datetime

from dataflow import DataFlow
from tests.contract_examples.runner import Example, Runner

PREVIEW_LINES = (  # the fixed lines of the spec's "Visual Migration Preview"
    "🔄 DataFlow Auto-Migration Preview",
    "Schema Changes Detected:",
    "┌",
    "│ Table",
    "│ Operation",
    "│ Details",
    "│ Safety Level",
    "Generated SQL:",
    "Migration Safety Assessment",
    "  • All operations are backward compatible",
    "  • No data loss risk detected",
    "  • Estimated execution time: <100ms",
    "  • Rollback plan: Available (3 steps)",
    "Apply these changes? [y/N]:",
)


async def user_table(run: Runner, rows: int = 2) -> None:
    """The docs' initial User (name, email, created_at), created and holding ``rows`` rows."""
    db = await run.quiet_db()

    @db.model
    class User:
        name: str
        email: str
        created_at: datetime = None  # type: ignore[assignment]

    await db.initialize()
    await run.execute(
        *(f"INSERT INTO \"user\" (name, email) VALUES ('n{i}', 'u{i}@example.com')" for i in range(rows))
    )


async def pending_user_change(run: Runner) -> dict[str, object]:
    """A database holding the initial User and a ``db`` whose User adds a nullable ``phone``."""
    await user_table(run)
    db = DataFlow()  # as the docs build it: DATABASE_URL, the preview on stdout

    @db.model
    class User:
        name: str
        email: str
        phone: str = None  # type: ignore[assignment]
        created_at: datetime = None  # type: ignore[assignment]

    return {"db": db}


BASIC = Example(
    "Basic Auto-Migration Pattern",
    """
from dataflow import DataFlow

db = DataFlow()

# Define your initial model
@db.model
class User:
    name: str
    email: str
    created_at: datetime = None

# Initialize database (creates tables)
await db.initialize()

# Later, evolve your model by adding fields
@db.model
class User:
    name: str
    email: str
    phone: str = None        # NEW FIELD - triggers auto-migration
    is_active: bool = True   # NEW FIELD - triggers auto-migration
    created_at: datetime = None
    updated_at: datetime = None  # NEW FIELD - triggers auto-migration

# Auto-migration detects changes and provides visual confirmation
await db.auto_migrate()  # Interactive preview + confirmation
""",
)


@BASIC.check()
async def basic_creates_then_evolves_after_a_yes(run: Runner) -> None:
    await run.run(BASIC, typed="y\n")
    assert list(await run.columns("user")) == [
        "id",
        "name",
        "email",
        "created_at",
        "phone",
        "is_active",
        "updated_at",
    ]
    for line in PREVIEW_LINES:  # the "Visual Migration Preview" the docs show
        assert line in run.out, (line, run.out)
    for detail in ("phone (TEXT)", "is_active (BOOLEAN)", "updated_at (TIMESTAMPTZ)", "✅ SAFE"):
        assert detail in run.out
    assert 'ADD COLUMN "phone" TEXT NULL;' in run.out


@BASIC.check()
async def basic_answered_no_changes_nothing(run: Runner) -> None:
    await run.run(BASIC, typed="n\n")
    assert list(await run.columns("user")) == ["id", "name", "email", "created_at"]
    assert "Apply these changes? [y/N]:" in run.out


INTERACTIVE = Example(
    "Interactive Mode (Default)",
    """
# Interactive with visual confirmation
success, migrations = await db.auto_migrate()
# Shows preview table, asks for confirmation
first = success  # adapted: keep the first answer's result

# Interactive with detailed analysis
success, migrations = await db.auto_migrate(
    interactive=True,
    show_sql=True,          # Display generated SQL
    show_rollback_plan=True, # Show rollback steps
    safety_analysis=True    # Show detailed safety assessment
)
""",
)


@INTERACTIVE.check()
async def interactive_asks_each_time(run: Runner) -> None:
    names = await pending_user_change(run)
    result = await run.run(INTERACTIVE, typed="n\ny\n", **names)  # no to the first, yes to the second
    assert result["first"] is False
    assert result["success"] is True
    assert [m.operations[0].kind for m in result["migrations"]] == ["ADD_COLUMN"]
    assert "phone" in await run.columns("user")
    assert run.out.count("Apply these changes? [y/N]:") == 2
    assert run.out.count("DataFlow Auto-Migration Preview") == 2
    detailed = run.out.rsplit("DataFlow Auto-Migration Preview", 1)[1]
    assert 'ADD COLUMN "phone" TEXT NULL;' in detailed  # show_sql
    assert "Rollback Plan:" in detailed and 'DROP COLUMN "phone"' in detailed  # show_rollback_plan
    assert "Migration Safety Assessment" in detailed  # safety_analysis


DRY_RUN = Example(
    "Dry-Run Mode (Preview Only)",
    """
# Preview changes without applying
success, migrations = await db.auto_migrate(dry_run=True)

print("Detected migrations:")
for migration in migrations:
    print(f"  - {migration.description}")
    print(f"    Safety: {migration.safety_level}")
    print(f"    SQL: {migration.sql_up}")
""",
)


@DRY_RUN.check()
async def dry_run_prints_and_applies_nothing(run: Runner) -> None:
    names = await pending_user_change(run)
    result = await run.run(DRY_RUN, **names)
    assert result["success"] is True
    assert "phone" not in await run.columns("user")
    assert "Detected migrations:\n  - 1 add column on user\n    Safety: SAFE\n" in run.out
    assert """    SQL: ['ALTER TABLE "public"."user" ADD COLUMN "phone" TEXT NULL;']""" in run.out
    assert "Apply these changes?" not in run.out


AUTO_CONFIRM = Example(
    "Auto-Confirm Mode (Production)",
    """
# Automatic application for CI/CD
success, migrations = await db.auto_migrate(
    auto_confirm=True,      # Skip interactive confirmation
    safety_check=True,      # Still perform safety analysis
    max_risk_level="MEDIUM" # Reject HIGH risk migrations
)

if not success:
    print("Migration failed safety checks")
    # Handle failure
""",
)


@AUTO_CONFIRM.check()
async def auto_confirm_applies_a_safe_change_without_asking(run: Runner) -> None:
    names = await pending_user_change(run)
    result = await run.run(AUTO_CONFIRM, **names)
    assert result["success"] is True
    assert "phone" in await run.columns("user")
    assert "Apply these changes?" not in run.out
    assert "Migration Safety Assessment" in run.out  # safety_check: the analysis is still shown
    assert "Migration failed safety checks" not in run.out


@AUTO_CONFIRM.check()
async def auto_confirm_rejects_a_high_risk_change(run: Runner) -> None:
    await user_table(run)
    db = DataFlow()

    @db.model
    class User:  # email removed: DROP COLUMN, HIGH
        name: str
        created_at: datetime = None  # type: ignore[assignment]

    result = await run.run(AUTO_CONFIRM, db=db)
    assert result["success"] is False
    assert "Migration failed safety checks" in run.out
    assert "email" in await run.columns("user")
    assert len(await run.fetch('SELECT email FROM "user"')) == 2


SELECTIVE = Example(
    "Selective Migration",
    """
# Apply specific migrations only
success, migrations = await db.auto_migrate(
    include_tables=["user", "order"],  # Only these tables
    exclude_operations=["DROP_COLUMN"] # Skip dangerous operations
)
""",
)


@SELECTIVE.check()
async def selective_touches_only_the_tables_and_kinds_named(run: Runner) -> None:
    await user_table(run)
    await run.execute('ALTER TABLE "user" ADD COLUMN legacy TEXT')  # not in the model: a DROP_COLUMN
    db = DataFlow()

    @db.model
    class User:
        name: str
        email: str
        phone: str = None  # type: ignore[assignment]
        created_at: datetime = None  # type: ignore[assignment]

    @db.model
    class Order:
        total: float

    @db.model
    class Invoice:
        amount: float

    result = await run.run(SELECTIVE, typed="y\n", db=db)
    assert result["success"] is True
    assert "phone" in await run.columns("user") and "legacy" in await run.columns("user")
    assert await run.columns("order") != {}
    assert await run.columns("invoice") == {}  # not included
    [migration] = result["migrations"]
    assert {op.table for op in migration.operations} == {"user", "order"}
    assert "DROP_COLUMN" not in {op.kind for op in migration.operations}


EXAMPLES = [BASIC, INTERACTIVE, DRY_RUN, AUTO_CONFIRM, SELECTIVE]
