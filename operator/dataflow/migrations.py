"""Names the product documentation imports from ``dataflow.migrations``."""

from dataflow.plan import Migration
from dataflow.operations import Operation, RollbackStep

__all__ = ["Migration", "Operation", "RollbackStep"]
