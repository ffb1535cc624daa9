"""Spec chapters "Advanced Features", "Migration Workflow Examples" and "Integration with DataFlow Features"."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from dataflow import DataFlow
from tests.contract_examples.quick_start import pending_user_change, user_table
from tests.contract_examples.runner import Example, Runner, http_server

STRATEGY = Example(
    "Custom Migration Strategies",
    """
from dataflow.migrations import MigrationStrategy

class CustomMigrationStrategy(MigrationStrategy):
    def should_apply_migration(self, migration):
        # Custom logic for migration approval
        if migration.risk_level == "HIGH":
            return self.require_manual_approval(migration)
        return True

    def optimize_migration(self, migration):
        # Custom optimization logic
        if migration.table_size > 1000000:  # Large table
            migration.batch_size = 100
            migration.use_concurrent_index_creation = True
        return migration

# Use custom strategy
db = DataFlow(migration_strategy=CustomMigrationStrategy())
""",
)


@STRATEGY.check()
async def strategy_lets_safe_through_and_holds_high_for_a_person(run: Runner) -> None:
    await user_table(run)
    result = await run.run(STRATEGY)
    db: DataFlow = result["db"]

    @db.model
    class User:
        name: str
        email: str
        phone: str = None  # type: ignore[assignment]
        created_at: datetime = None  # type: ignore[assignment]

    assert (await db.auto_migrate(auto_confirm=True))[0]
    assert "phone" in await run.columns("user")

    @db.model
    class User:  # noqa: F811 - email removed: HIGH, and no person to approve it here
        name: str
        phone: str = None  # type: ignore[assignment]
        created_at: datetime = None  # type: ignore[assignment]

    success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert success is False
    assert "email" in await run.columns("user")


EXTERNAL = Example(
    "Integration with External Tools",
    """
# Integrate with schema versioning tools
await db.auto_migrate(
    version_control=True,           # Track in git
    schema_registry_url=REGISTRY_URL,  # was: schema_registry_url="http://registry.example.com",
    generate_documentation=True,    # Auto-generate docs
    notify_team=True               # Send notifications
)
""",
)


@EXTERNAL.check()
async def external_tools_get_files_the_schema_and_a_notification(run: Runner) -> None:
    await user_table(run)
    with http_server() as (url, received):
        db = DataFlow(migration_config={"monitoring": {"enabled": True, "webhook_url": url + "/hook"}})

        @db.model
        class User:
            name: str
            email: str
            phone: str = None  # type: ignore[assignment]
            created_at: datetime = None  # type: ignore[assignment]

        await run.run(EXTERNAL, typed="y\n", db=db, REGISTRY_URL=url + "/registry")
    assert "phone" in await run.columns("user")
    registry = [r for r in received if r.path.startswith("/registry")]
    assert registry and "phone" in registry[-1].body.decode() and isinstance(registry[-1].json(), dict)
    assert [r for r in received if r.path == "/hook"], "notify_team posted nothing"
    written = {p: p.read_text() for p in Path(run.tmp_path).rglob("*") if p.is_file()}
    assert any(p.suffix == ".sql" and 'ADD COLUMN "phone"' in t for p, t in written.items())
    assert any(p.suffix == ".sql" and 'DROP COLUMN "phone"' in t for p, t in written.items())
    assert any(p.suffix == ".md" and "phone" in t for p, t in written.items())


ECOMMERCE = Example(
    "E-commerce Platform Evolution",
    """
# Phase 1: Basic e-commerce models
@db.model
class Product:
    name: str
    price: float
    description: str = None

@db.model
class Order:
    product_id: int
    quantity: int
    total: float
await db.auto_migrate()  # adapted: phase 1 triggers its migration

# Phase 2: Add inventory management
@db.model
class Product:
    name: str
    price: float
    description: str = None
    inventory_count: int = 0        # NEW: inventory tracking
    sku: str = None                 # NEW: SKU field
    category: str = None            # NEW: categorization

@db.model
class Order:
    product_id: int
    quantity: int
    total: float
    status: str = 'pending'         # NEW: order status
    tracking_number: str = None     # NEW: shipping tracking
await db.auto_migrate()  # adapted: phase 2 triggers its migration

# Phase 3: Add advanced features
@db.model
class Product:
    name: str
    price: float
    description: str = None
    inventory_count: int = 0
    sku: str = None
    category: str = None
    specifications: dict = None      # NEW: JSONB specs
    images: list = None             # NEW: JSONB image array
    is_featured: bool = False       # NEW: featured flag

@db.model
class Order:
    product_id: int
    quantity: int
    total: float
    status: str = 'pending'
    tracking_number: str = None
    shipping_address: dict = None    # NEW: JSONB address
    billing_address: dict = None     # NEW: JSONB address
    metadata: dict = None           # NEW: flexible metadata

# Each phase triggers automatic migrations with visual confirmation
await db.auto_migrate()  # Interactive preview for each evolution
""",
)


@ECOMMERCE.check()
async def ecommerce_three_phases_three_confirmed_migrations(run: Runner) -> None:
    db = DataFlow()
    await run.run(ECOMMERCE, typed="y\ny\ny\n", db=db)
    assert run.out.count("Apply these changes? [y/N]:") == 3
    assert list(await run.columns("product")) == [
        "id",
        "name",
        "price",
        "description",
        "inventory_count",
        "sku",
        "category",
        "specifications",
        "images",
        "is_featured",
    ]
    order = await run.columns("order")
    assert [order[c] for c in ("shipping_address", "billing_address", "metadata")] == ["jsonb"] * 3
    history = await db.get_migration_history()
    assert [r.status for r in history] == ["applied"] * 3
    assert await db.get_pending_migrations() == []


KAILASH_IMPORTS = """\
from kailash.workflow.builder import WorkflowBuilder  # adapted: the SDK's builder
from kailash.runtime.local import LocalRuntime  # adapted: the SDK's runtime
"""

NODES = Example(
    "Auto-Generated Nodes Update",
    KAILASH_IMPORTS
    + """\
workflow = WorkflowBuilder()  # adapted: the workflow the nodes go into
# After adding 'phone' field to User model
# These nodes are automatically updated:

workflow.add_node("UserCreateNode", "create", {
    "name": "Alice",
    "email": "alice@example.com",
    "phone": "+1-555-0123"  # New field available
})

workflow.add_node("UserListNode", "search", {
    "filter": {
        "phone": {"$exists": True}  # New field in queries
    }
})

workflow.add_node("UserUpdateNode", "update", {
    "id": 123,
    "phone": "+1-555-9999"  # New field in updates
})
results, run_id = LocalRuntime().execute(workflow.build())  # adapted: run it
""",
)


@NODES.check()
async def nodes_accept_and_return_the_new_field(run: Runner) -> None:
    names = await pending_user_change(run)
    db: DataFlow = names["db"]  # type: ignore[assignment]
    assert (await db.auto_migrate(auto_confirm=True))[0]
    await run.execute(
        "INSERT INTO \"user\" (id, name, email) OVERRIDING SYSTEM VALUE VALUES (123, 'Bob', 'bob@x.org')"
    )
    result = await run.run(NODES, **names)
    assert set(result["results"]) >= {"create", "search", "update"}
    rows = {r[0]: r[1] for r in await run.fetch('SELECT name, phone FROM "user"')}
    assert rows["Alice"] == "+1-555-0123" and rows["Bob"] == "+1-555-9999"
    assert "+1-555-" in str(result["results"]["search"])


WORKFLOW = Example(
    "Workflow Integration",
    KAILASH_IMPORTS
    + """\
# Migration-aware workflows
workflow = WorkflowBuilder()

# Check if migration is needed
workflow.add_node("MigrationCheckNode", "check", {
    "models": ["User", "Order", "Product"]
})

# Apply migrations if needed
workflow.add_node("AutoMigrationNode", "migrate", {
    "auto_confirm": False,    # Require confirmation
    "safety_level": "MEDIUM"  # Safety threshold
})

# Continue with business logic
workflow.add_node("UserCreateNode", "create_user", {
    "name": "Alice",
    "email": "alice@example.com"
})

# Connect migration check to business logic
workflow.add_connection("check", "migrations_needed", "migrate", "input")
workflow.add_connection("migrate", "success", "create_user", "input")
results, run_id = LocalRuntime().execute(workflow.build())  # adapted: run it
""",
)


@WORKFLOW.check()
async def workflow_checks_migrates_then_creates(run: Runner) -> None:
    db = DataFlow()

    @db.model
    class User:
        name: str
        email: str

    @db.model
    class Order:
        total: float

    @db.model
    class Product:
        name: str

    assert (await db.auto_migrate(auto_confirm=True))[0]
    result = await run.run(WORKFLOW, db=db)
    assert result["results"]["check"]["migrations_needed"] is False  # in sync
    assert result["results"]["migrate"]["success"] is True
    assert [tuple(r) for r in await run.fetch('SELECT name, email FROM "user"')] == [
        ("Alice", "alice@example.com")
    ]


EXAMPLES = [STRATEGY, EXTERNAL, ECOMMERCE, NODES, WORKFLOW]
