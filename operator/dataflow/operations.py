"""What a diff produces (changes) and what a plan holds (operations with SQL and risk)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from dataflow.jsonfields import to_json
from dataflow.schema import Column, Table


class Risk(IntEnum):
    """Safety level of an operation or a migration; ordered, so ``max()`` gives the worst."""

    SAFE = 0
    MEDIUM = 1
    HIGH = 2

    @classmethod
    def parse(cls, value: str | Risk, field_name: str = "max_risk_level") -> Risk:
        if isinstance(value, Risk):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            from dataflow.errors import SchemaError

            raise SchemaError(field_name, f"must be SAFE, MEDIUM or HIGH, not {value!r}") from None


def __getattr__(name: str) -> Any:
    """``OPERATION_KINDS`` / ``EXECUTION_ORDER``, kept for callers that import them from here: both come
    from the registry of kinds (:mod:`dataflow.ops`), which builds on this module, hence the late import."""
    if name in ("OPERATION_KINDS", "EXECUTION_ORDER"):
        from dataflow.ops import execution_order, kind_names

        return kind_names() if name == "OPERATION_KINDS" else execution_order()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Change:
    """One difference between the database and the desired schema.

    ``kind`` names a registered operation kind (:mod:`dataflow.ops`); ``old``/``new`` hold the schema
    objects involved (Column, Index, Table, constraint, or a table name for a rename); ``subject`` names
    the column/index/constraint.
    """

    kind: str
    table: str
    subject: str | None = None
    old: Any = None
    new: Any = None

    @property
    def name(self) -> str:
        """The subject, for kinds that always have one (a column, index or constraint)."""
        if self.subject is None:
            raise ValueError(f"{self.kind} on {self.table} names no column, index or constraint")
        return self.subject


@dataclass(frozen=True)
class Assessment:
    """Risk of one change, with the facts behind it."""

    risk: Risk
    reason: str
    lock: str
    estimated_duration_ms: int
    data_loss: bool = False
    affected_rows: int | None = None


@dataclass(frozen=True)
class RollbackStep:
    """One statement of a rollback plan (names and shape from the product documentation)."""

    operation_type: str
    sql: str
    risk_level: str
    estimated_duration_ms: int
    irreversible: bool = False
    note: str = ""


@dataclass(frozen=True)
class Step:
    """One statement of a migration.

    ``transactional=False``: runs on its own, outside any transaction block (``CONCURRENTLY``,
    ``VALIDATE CONSTRAINT``, backfill batches), so it holds no long lock. ``repeat``: a batch
    statement run until it changes no row. ``cleanup``: run before retrying after a failure
    (drops an index a failed concurrent build left INVALID).
    """

    sql: str
    transactional: bool = True
    repeat: bool = False
    cleanup: str | None = None


@dataclass(frozen=True)
class Operation:
    """A change with its SQL steps, rollback and safety assessment."""

    change: Change
    assessment: Assessment
    steps: tuple[Step, ...]
    sql_down: tuple[str, ...]
    irreversible: bool = False
    details: str = ""
    strategy: str = "transactional"
    backup: str | None = None

    @property
    def sql_up(self) -> tuple[str, ...]:
        return tuple(s.sql for s in self.steps)

    @property
    def kind(self) -> str:
        return self.change.kind

    @property
    def operation_type(self) -> str:
        return self.change.kind

    @property
    def table(self) -> str:
        return self.change.table

    @property
    def risk(self) -> Risk:
        return self.assessment.risk

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "operation": self.kind,
            "details": self.details,
            "risk": self.risk.name,
            "reason": self.assessment.reason,
            "lock": self.assessment.lock,
            "estimatedDurationMs": self.assessment.estimated_duration_ms,
            "sql": list(self.sql_up),
            "rollback": list(self.sql_down),
            "irreversible": self.irreversible,
            "dataLoss": self.assessment.data_loss,
            "strategy": self.strategy,
            "backup": self.backup,
            "steps": [
                {"sql": s.sql, "transactional": s.transactional, "repeat": s.repeat} for s in self.steps
            ],
            "subject": self.change.subject,
            "columns": self.columns_left(),
        }

    def columns_left(self) -> list[dict[str, Any]]:
        """The definitions of the columns this change sets (its ledger row keeps them): a later plan
        compares the database with them to tell a column changed by hand since (drift)."""
        new = self.change.new
        if isinstance(new, Table):
            return [to_json(c) for c in new.columns]
        return [to_json(new)] if isinstance(new, Column) else []


@dataclass
class TableFacts:
    """What the database says about a table, for risk and duration estimates."""

    rows: int = 0
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
