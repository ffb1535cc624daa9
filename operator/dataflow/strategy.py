"""Custom migration strategies: ``DataFlow(migration_strategy=...)`` consults one before each migration.

``should_apply_migration`` may veto the plan; ``optimize_migration`` may change how it is rendered
(``batch_size`` of backfills and data moves; ``use_concurrent_index_creation``: the lock-friendly
"online" strategy, ``CREATE INDEX CONCURRENTLY`` on tables with rows, or plain transactional DDL).
The migration a strategy sees carries real figures: ``risk_level`` of the plan, and ``table_size``,
the row count of the largest existing table it touches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from dataflow.errors import SchemaError
from dataflow.options import MigrationOptions, whole_number
from dataflow.plan import Migration
from dataflow.safety import count_rows

log = logging.getLogger("dataflow.strategy")

Approver = Callable[["StrategyMigration"], bool]


@dataclass
class StrategyMigration:
    """The planned migration as a strategy sees it; other attributes come from the :class:`Migration`."""

    migration: Migration
    table_size: int  # rows of the largest existing table the migration touches (exact up to a cap)
    batch_size: int
    use_concurrent_index_creation: bool

    @property
    def risk_level(self) -> str:
        return self.migration.risk_level

    def __getattr__(self, name: str) -> Any:
        if name == "migration":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.migration, name)


class MigrationStrategy:
    """Subclass and override: the defaults apply every migration unchanged."""

    approver: Approver | None = None  # set by DataFlow: asks the person at the terminal

    def should_apply_migration(self, migration: StrategyMigration) -> bool:
        return True

    def optimize_migration(self, migration: StrategyMigration) -> StrategyMigration:
        return migration

    def require_manual_approval(self, migration: StrategyMigration) -> bool:
        """Ask the person at the terminal to approve this migration; without a terminal the answer is no."""
        if self.approver is None:
            log.warning("%s needs manual approval and nobody can be asked", migration.version)
            return False
        return self.approver(migration)


async def table_size(conn: asyncpg.Connection, schema: str, tables: Iterable[str]) -> int:
    """Rows of the largest of ``tables`` that exist: counted exactly up to the cap, else the estimate."""
    rows = await conn.fetch(
        "SELECT c.relname, greatest(c.reltuples, 0)::bigint AS estimate FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p')",
        schema,
        list(tables),
    )
    return max([await count_rows(conn, schema, r["relname"], r["estimate"]) for r in rows], default=0)


async def consult(
    strategy: MigrationStrategy,
    conn: asyncpg.Connection,
    migration: Migration,
    schema: str,
    options: MigrationOptions,
) -> tuple[bool, MigrationOptions, StrategyMigration]:
    """Ask ``strategy`` about ``migration``: (whether it may apply, the options it leaves, what it saw)."""
    seen = StrategyMigration(
        migration,
        await table_size(conn, schema, migration.tables),
        options.batch_size,
        options.strategy == "online",
    )
    if not strategy.should_apply_migration(seen):
        return False, options, seen
    optimized = strategy.optimize_migration(seen)
    if not isinstance(optimized, StrategyMigration):
        raise SchemaError(
            "migration_strategy.optimize_migration",
            f"must return the migration it was given, not {type(optimized).__name__}",
        )
    if problem := whole_number(1)(optimized.batch_size):
        raise SchemaError("migration_strategy.optimize_migration.batch_size", problem)
    concurrent = optimized.use_concurrent_index_creation
    if not isinstance(concurrent, bool):
        raise SchemaError(
            "migration_strategy.optimize_migration.use_concurrent_index_creation",
            f"must be True or False, not {concurrent!r}",
        )
    changed = replace(
        options,
        batch_size=optimized.batch_size,
        strategy="online" if concurrent else "transactional",
    )
    return True, changed, optimized
