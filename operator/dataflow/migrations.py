"""Names the product documentation imports from ``dataflow.migrations``."""

from dataflow.operations import Operation, RollbackStep
from dataflow.plan import Migration

__all__ = ["Migration", "Operation", "RollbackStep"]
