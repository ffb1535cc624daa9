"""``DataFlow.analyze_migration_performance``: the slowest measured steps and what would make them faster.

Each suggestion is derived from the step itself, parsed with pglast (PostgreSQL's parser): an index
built without ``CONCURRENTLY``, a constraint added without ``NOT VALID``, a validation that scans a
table, an unbatched ``UPDATE``, a type change that rewrites the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast, enums

from dataflow.ledger import MigrationRecord


@dataclass(frozen=True)
class SlowOperation:
    operation: str  # the operation kind, e.g. ADD_INDEX
    table: str
    duration_ms: float
    sql: str
    version: str
    optimization_suggestion: str


@dataclass(frozen=True)
class PerformanceAnalysis:
    slow_operations: list[SlowOperation] = field(default_factory=list)  # slowest first
    migrations_analyzed: int = 0
    steps_measured: int = 0


def _statement(sql: str) -> ast.Node | None:
    try:
        [raw] = pglast.parser.parse_sql(sql)
    except (pglast.parser.ParseError, ValueError):
        return None
    return raw.stmt


def _alter_commands(stmt: ast.AlterTableStmt) -> list[ast.AlterTableCmd]:
    return [c for c in stmt.cmds or () if isinstance(c, ast.AlterTableCmd)]


def suggestion(sql: str, operation: str, table: str, duration_ms: float, batched: bool) -> str:
    """What would make this step cheaper, judged from its statement."""
    stmt = _statement(sql)
    took = f"took {duration_ms:.0f} ms"
    if isinstance(stmt, ast.IndexStmt):
        if not stmt.concurrent:
            return (
                f"{took} holding a lock that blocks writes to {table}: build the index with "
                "CREATE INDEX CONCURRENTLY (strategy='online') so writes go on while it builds"
            )
        return f"{took} building concurrently; it did not block writes, but schedule it when {table} is quiet"
    if isinstance(stmt, ast.UpdateStmt):
        if not batched:
            return (
                f"{took} updating every row of {table} in one statement (one long lock and a big WAL burst): "
                "backfill in batches keyed by primary key (strategy='online', batch_size)"
            )
        return (
            f"{took} in batches: an index on the column(s) of the batch's WHERE lets each batch find its rows "
            "without scanning the table; a smaller batch_size keeps each lock shorter"
        )
    if isinstance(stmt, ast.AlterTableStmt):
        for cmd in _alter_commands(stmt):
            found = _alter_suggestion(cmd, took, table)
            if found:
                return found
    return f"{took}: run it when {table} is quiet, or split it into smaller migrations"


def _alter_suggestion(cmd: ast.AlterTableCmd, took: str, table: str) -> str | None:
    kind = cmd.subtype
    if kind == enums.AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        con = cmd.def_
        if not con.skip_validation and con.contype in (
            enums.ConstrType.CONSTR_FOREIGN,
            enums.ConstrType.CONSTR_CHECK,
        ):
            return (
                f"{took} checking every row of {table} under a lock: add the constraint NOT VALID, then "
                "VALIDATE CONSTRAINT in a separate step (it takes a lock that lets writes go on)"
            )
        if (
            con.contype in (enums.ConstrType.CONSTR_UNIQUE, enums.ConstrType.CONSTR_PRIMARY)
            and not con.indexname
        ):
            return (
                f"{took} building a unique index under a lock: build it with CREATE UNIQUE INDEX CONCURRENTLY, "
                "then add the constraint USING INDEX"
            )
    if kind == enums.AlterTableType.AT_ValidateConstraint:
        return (
            f"{took} validating: it scans all of {table}; for a foreign key, an index on the referencing "
            "column(s) lets the check (and later deletes on the referenced table) use index scans; "
            "run it when the table is quiet"
        )
    if kind == enums.AlterTableType.AT_AlterColumnType:
        return (
            f"{took} rewriting {table}: add a new column, backfill it in batches, then switch over "
            "(expand and contract) instead of changing the type in place"
        )
    if kind == enums.AlterTableType.AT_SetNotNull:
        return (
            f"{took} scanning {table} under a lock: add CHECK (column IS NOT NULL) NOT VALID, VALIDATE it, "
            "then SET NOT NULL (PostgreSQL then skips the scan)"
        )
    return None


def analyze(
    records: Iterable[MigrationRecord], threshold_ms: float = 0.0, limit: int = 10
) -> PerformanceAnalysis:
    """The ``limit`` slowest steps at or above ``threshold_ms`` across ``records``, slowest first."""
    steps: list[tuple[MigrationRecord, dict[str, Any]]] = [
        (r, t) for r in records for t in r.step_timings if isinstance(t.get("ms"), (int, float))
    ]
    counted = {r.version for r, _ in steps}
    slow = sorted((s for s in steps if s[1]["ms"] >= threshold_ms), key=lambda s: -s[1]["ms"])[:limit]
    return PerformanceAnalysis(
        slow_operations=[
            SlowOperation(
                operation=t["operation"],
                table=t["table"],
                duration_ms=t["ms"],
                sql=t["sql"],
                version=r.version,
                optimization_suggestion=suggestion(
                    t["sql"], t["operation"], t["table"], t["ms"], bool(t.get("batched"))
                ),
            )
            for r, t in slow
        ],
        migrations_analyzed=len(counted),
        steps_measured=len(steps),
    )
