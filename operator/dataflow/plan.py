"""Build a :class:`Migration` from the database's state and a desired schema."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import asyncpg

from dataflow.diff import compare_schemas
from dataflow.introspect import DatabaseState
from dataflow.operations import OPERATION_KINDS, Change, Operation, Risk, RollbackStep
from dataflow.safety import Facts, assess, count_rows, probe
from dataflow.schema import Schema
from dataflow.errors import SchemaError
from dataflow.sqlgen import Options, render
from dataflow.sqltext import constraint_name

PLAN_HASH_LENGTH = 12
_ROW_SENSITIVE = frozenset({"DROP_COLUMN", "DROP_TABLE", "ALTER_COLUMN_TYPE", "SET_NOT_NULL", "ADD_CONSTRAINT"})


def needs_row_count(change: Change) -> bool:
    """Whether the change's risk or SQL depends on exact row counts (else the planner's estimate serves)."""
    if change.kind == "ADD_COLUMN":
        c = change.new
        return not c.nullable and c.default is None and c.identity is None
    return change.kind in _ROW_SENSITIVE


@dataclass
class Migration:
    """A planned (or applied) migration: the unit the executor runs in one transaction."""

    version: str
    description: str
    operations: list[Operation]
    schema_hash: str
    checksum: str
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def risk(self) -> Risk:
        return max((op.risk for op in self.operations), default=Risk.SAFE)

    @property
    def safety_level(self) -> str:
        return self.risk.name

    risk_level = safety_level

    @property
    def plan_hash(self) -> str:
        """Short hash naming this exact plan (what an approval refers to)."""
        return self.checksum[:PLAN_HASH_LENGTH]

    @property
    def sql_up(self) -> list[str]:
        return [s for op in self.operations for s in op.sql_up]

    @property
    def sql_down(self) -> list[str]:
        return [s for op in reversed(self.operations) for s in op.sql_down]

    @property
    def rollback_steps(self) -> list[RollbackStep]:
        return [
            RollbackStep(
                operation_type=f"UNDO_{op.kind}",
                sql=sql,
                risk_level=op.risk.name,
                estimated_duration_ms=op.assessment.estimated_duration_ms,
                irreversible=op.irreversible,
                note="data removed by this migration is not restored" if op.irreversible else "",
            )
            for op in reversed(self.operations)
            for sql in op.sql_down
        ]

    @property
    def estimated_duration_ms(self) -> int:
        return sum(op.assessment.estimated_duration_ms for op in self.operations)

    @property
    def tables(self) -> list[str]:
        return sorted({op.table for op in self.operations})

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "description": self.description,
            "safetyLevel": self.safety_level,
            "schemaHash": self.schema_hash,
            "checksum": self.checksum,
            "planHash": self.plan_hash,
            "operations": [op.to_dict() for op in self.operations],
            "backups": [op.backup for op in self.operations if op.backup],
            "sqlUp": self.sql_up,
            "sqlDown": self.sql_down,
        }


def new_version(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("migration_%Y%m%d_%H%M%S")


def _check_filters(include_tables: Iterable[str] | None, exclude_operations: Iterable[str] | None) -> None:
    for op in exclude_operations or ():
        if op not in OPERATION_KINDS:
            raise SchemaError("exclude_operations", f"unknown operation {op!r}; known: {', '.join(OPERATION_KINDS)}")
    if isinstance(include_tables, str):
        raise SchemaError("include_tables", "must be a list of table names, not a string")


def filter_changes(changes: list[Change], include_tables: Iterable[str] | None,
                   exclude_operations: Iterable[str] | None) -> list[Change]:
    include = set(include_tables) if include_tables is not None else None
    exclude = set(exclude_operations or ())
    return [c for c in changes if (include is None or c.table in include) and c.kind not in exclude]


@dataclass(frozen=True)
class PlanOptions:
    """How the planner renders changes.

    ``strategy``: "online" uses lock-friendly strategies on tables that have rows; "transactional"
    runs plain DDL. ``backup``: keep data a destructive change removes in ``dataflow_backup``
    (None: yes, for every destructive change). ``batch_size``: rows per backfill batch.
    """

    strategy: str = "online"
    backup: bool | None = None
    batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.strategy not in ("online", "transactional"):
            raise SchemaError("strategy", f"must be 'online' or 'transactional', not {self.strategy!r}")
        if int(self.batch_size) < 1:
            raise SchemaError("batch_size", "must be at least 1")


_DESTRUCTIVE = frozenset({"DROP_COLUMN", "DROP_TABLE", "ALTER_COLUMN_TYPE"})


def backup_name(change: Change, schema_hash: str) -> str:
    """Deterministic (so a plan made again is the same plan), unique per change and schema."""
    return constraint_name(change.table, [change.subject or "table"], schema_hash[:10])


async def build_migration(
    conn: asyncpg.Connection,
    state: DatabaseState,
    desired: Schema,
    owned: Iterable[str] = (),
    *,
    include_tables: Iterable[str] | None = None,
    exclude_operations: Iterable[str] | None = None,
    options: PlanOptions = PlanOptions(),
) -> Migration:
    """Diff, probe facts, grade and render: the migration that makes the database ``desired``."""
    _check_filters(include_tables, exclude_operations)
    changes = filter_changes(compare_schemas(state.schema, desired, owned), include_tables, exclude_operations)
    renamed = {c.table: c.old for c in changes if c.kind == "RENAME_TABLE"}
    schema_hash = desired.hash()
    row_counts: dict[str, int] = {}
    operations: list[Operation] = []
    for change in changes:
        db_table = renamed.get(change.table, change.table)
        table_facts = state.facts.get(db_table)
        facts = Facts()
        if table_facts is not None and change.kind != "CREATE_TABLE":
            # the planner's estimate is 0 for a table never analysed: then, or when the grade
            # depends on it, count (capped); otherwise the estimate is good enough
            if db_table not in row_counts and (needs_row_count(change) or table_facts.rows == 0):
                row_counts[db_table] = await count_rows(conn, db_table, table_facts.rows)
            rows = row_counts.get(db_table, table_facts.rows)
            facts = await probe(conn, change, db_table, rows, table_facts.size_bytes)
        online = options.strategy == "online" and facts.rows > 0
        existing = state.schema.table(db_table)
        backup = None
        if change.kind in _DESTRUCTIVE and options.backup is not False and (facts.rows > 0 or change.kind == "DROP_TABLE"):
            backup = backup_name(change, schema_hash)
        render_options = Options(populated=facts.rows > 0, nulls=facts.nulls, online=online,
                                 batch_size=options.batch_size, backup=backup, schema=desired.name,
                                 primary_key=existing.primary_key if existing else ())
        assessment = assess(change, facts, state.schema, online)
        r = render(change, render_options, desired.table(change.table))
        operations.append(Operation(change, assessment, r.steps, r.down, r.irreversible, r.details,
                                    r.strategy, r.backup))
    checksum = plan_checksum(schema_hash, operations)
    return Migration(new_version(), describe(operations), operations, schema_hash, checksum)


def plan_checksum(schema_hash: str, operations: list[Operation]) -> str:
    payload = json.dumps({"schema": schema_hash, "sql": [[(s.sql, s.transactional) for s in op.steps] for op in operations],
                          "risk": [op.risk.name for op in operations]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def describe(operations: list[Operation]) -> str:
    if not operations:
        return "no changes"
    counts: dict[str, int] = {}
    for op in operations:
        counts[op.kind] = counts.get(op.kind, 0) + 1
    tables = sorted({op.table for op in operations})
    parts = ", ".join(f"{n} {kind.lower().replace('_', ' ')}" for kind, n in counts.items())
    return f"{parts} on {', '.join(tables)}"
