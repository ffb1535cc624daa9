"""DataFlow: declarative PostgreSQL schemas from Python model classes."""

from dataflow.dataflow import DataFlow, MigrationMetrics, RollbackAnalysis
from dataflow.errors import DataFlowError, MigrationConflictError, MigrationFailed, SchemaError
from dataflow.models import Field
from dataflow.operations import Risk

__all__ = [
    "DataFlow",
    "DataFlowError",
    "Field",
    "MigrationConflictError",
    "MigrationFailed",
    "MigrationMetrics",
    "Risk",
    "RollbackAnalysis",
    "SchemaError",
]
