"""Spec chapter "Advanced Configuration"."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from dataflow import DataFlow
from dataflow.operations import Risk
from tests.contract_examples.quick_start import user_table
from tests.contract_examples.runner import Example, Runner

CONFIG = Example(
    "Migration System Configuration",
    """
from dataflow.migrations import AutoMigrationSystem

# Custom migration system configuration
migration_config = {
    "dialect": "postgresql",           # Database-specific optimizations
    "interactive": True,               # Enable interactive mode
    "safety_checks": True,             # Perform safety analysis
    "max_risk_level": "MEDIUM",        # Reject HIGH risk migrations
    "backup_before_migration": True,   # Auto-backup before changes
    "rollback_on_error": True,         # Auto-rollback on failure
    "concurrent_access_protection": True, # Enable migration locking
    "migration_timeout": 300,          # 5 minute timeout
    "batch_size": 1000,                # For bulk operations
}

db = DataFlow(migration_config=migration_config)
""",
)


@CONFIG.check()
async def configuration_is_read_and_rejects_high_risk(run: Runner) -> None:
    await user_table(run)
    result = await run.run(CONFIG)
    assert isinstance(result["AutoMigrationSystem"], type)
    db: DataFlow = result["db"]
    options = db.options
    assert options.max_risk_level is Risk.MEDIUM
    assert (options.backup, options.rollback_on_error) == (True, True)
    assert (options.migration_timeout_s, options.batch_size) == (300.0, 1000)

    @db.model
    class User:  # email removed: HIGH, above the configured MEDIUM
        name: str
        created_at: datetime = None  # type: ignore[assignment]

    with run.terminal("y\n"):  # "interactive": True asks; a person's yes cannot exceed MEDIUM
        success, _ = await db.auto_migrate()
    assert success is False
    assert "email" in await run.columns("user")


POSTGRESQL = Example(
    "PostgreSQL-Specific Features",
    """
@db.model
class Product:
    name: str
    specs: dict         # Becomes JSONB in PostgreSQL
    tags: list          # Becomes JSONB array in PostgreSQL
    price: Decimal      # Becomes DECIMAL(10,2) with precision
    location: str       # Can use PostGIS types if enabled

    __dataflow__ = {
        'postgresql': {
            'jsonb_gin_indexes': ['specs', 'tags'],  # Auto-create GIN indexes
            'text_search': ['name'],                 # Full-text search indexes
            'partial_indexes': [                     # Conditional indexes
                {
                    'fields': ['price'],
                    'condition': 'price > 0'
                }
            ]
        }
    }
await db.auto_migrate(auto_confirm=True)  # adapted: create the table the model describes
""",
)


@POSTGRESQL.check()
async def postgresql_types_and_indexes(run: Runner) -> None:
    await run.run(POSTGRESQL, db=DataFlow())
    assert await run.columns("product") == {
        "id": "bigint",
        "name": "text",
        "specs": "jsonb",
        "tags": "jsonb",
        "price": "numeric(10,2)",
        "location": "text",
    }
    indexes = sorted(
        r[0].split(" ON ", 1)[1]
        for r in await run.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'product'")
    )
    assert indexes == [
        "public.product USING btree (id)",
        "public.product USING btree (price) WHERE (price > (0)::numeric)",
        "public.product USING gin (specs)",
        "public.product USING gin (tags)",
        "public.product USING gin (to_tsvector('english'::regconfig, COALESCE(name, ''::text)))",
    ]
    probe = await run.fetch(
        "INSERT INTO product (name, specs, tags, price, location) VALUES"
        " ('Red chair', '{\"legs\": 4}', '[\"red\"]', 19.99, 'here') RETURNING jsonb_typeof(tags), price"
    )
    assert tuple(probe[0]) == ("array", Decimal("19.99"))


EXAMPLES = [CONFIG, POSTGRESQL]
