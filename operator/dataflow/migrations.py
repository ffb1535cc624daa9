"""Names the product documentation imports from ``dataflow.migrations``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dataflow.explicit_plan import MigrationPlan
from dataflow.operations import Operation, RollbackStep
from dataflow.plan import Migration
from dataflow.queue import MigrationStatus
from dataflow.strategy import MigrationStrategy, StrategyMigration

if TYPE_CHECKING:
    from dataflow.dataflow import DataFlow
    from dataflow.options import MigrationOptions

__all__ = [
    "AutoMigrationSystem",
    "Migration",
    "MigrationPlan",
    "MigrationStatus",
    "MigrationStrategy",
    "Operation",
    "RollbackStep",
    "StrategyMigration",
]

# The configuration keys the documentation shows for the migration system.
DOCUMENTED_KEYS = (
    "dialect",
    "interactive",
    "safety_checks",
    "max_risk_level",
    "backup_before_migration",
    "rollback_on_error",
    "concurrent_access_protection",
    "migration_timeout",
    "batch_size",
)


class AutoMigrationSystem:
    """The auto-migration system of one :class:`DataFlow`, configured by ``migration_config``.

    ``AutoMigrationSystem(migration_config)`` (or keyword arguments with the same keys) checks the
    configuration exactly as ``DataFlow(migration_config=...)`` does, and ``db.migration_system`` is
    the system of an existing instance. It plans, applies, queues and rolls back through that instance.
    """

    def __init__(
        self,
        migration_config: Mapping[str, Any] | None = None,
        *,
        database_url: str | None = None,
        dataflow: DataFlow | None = None,
        **keys: Any,
    ) -> None:
        if dataflow is None:
            from dataflow.dataflow import DataFlow

            dataflow = DataFlow(database_url, migration_config={**dict(migration_config or {}), **keys})
        elif migration_config or keys:
            raise TypeError("give either dataflow or a configuration, not both")
        self.dataflow = dataflow

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.dataflow.config)

    @property
    def options(self) -> MigrationOptions:
        return self.dataflow.options

    def __getattr__(self, name: str) -> Any:
        """``auto_migrate``, ``queue_migration``, ``apply_migration_plan``... of the DataFlow."""
        if name == "dataflow":
            raise AttributeError(name)
        return getattr(self.dataflow, name)
