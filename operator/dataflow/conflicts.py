"""When a plan would overwrite someone else's decision: the conflicts :class:`MigrationConflictError` lists.

Two kinds. Drift: a column this owner set (its ledger keeps the definition every applied operation
left) was changed by hand since, and the plan would change it again, undoing that hand change
without anyone deciding so. Ownership: tables another owner holds.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from dataflow.diff import compare_column
from dataflow.errors import Conflict, MigrationConflictError
from dataflow.jsonfields import from_json
from dataflow.ledger import STATUS_APPLIED, Ledger
from dataflow.plan import Migration
from dataflow.schema import Column

HISTORY_LIMIT = 500  # applied migrations searched for the definition a column was last given


def _differences(applied: Column, now: Column) -> list[str]:
    """What differs between the column as applied and as it is now, for people."""
    out = []
    if applied.type != now.type:
        out.append(f"type {applied.type} → {now.type}")
    if applied.default != now.default:
        out.append(f"default {applied.default or 'none'} → {now.default or 'none'}")
    if applied.nullable != now.nullable:
        out.append("NOT NULL dropped" if now.nullable else "NOT NULL added")
    return out


async def last_applied_columns(
    conn: asyncpg.Connection, schema: str, owner: str, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, Column]]:
    """(table, column) → (version, definition) as the newest applied migration of ``owner`` left it."""
    found: dict[tuple[str, str], tuple[str, Column]] = {}
    for record in await Ledger(schema).history(conn, HISTORY_LIMIT, owner):
        if record.status != STATUS_APPLIED:
            continue
        for op in reversed(record.operations):
            for definition in op.get("columns") or ():
                key = (op.get("table", ""), definition.get("name", ""))
                if key in wanted and key not in found:
                    found[key] = (record.version, from_json(Column, definition))
        if len(found) == len(wanted):
            break
    return found


async def drift_conflicts(
    conn: asyncpg.Connection, schema: str, owner: str, migration: Migration
) -> list[Conflict]:
    """Columns the plan changes that were changed by hand since this owner last applied them."""
    changed = {
        (op.table, op.change.old.name): op for op in migration.operations if isinstance(op.change.old, Column)
    }
    if not changed:
        return []
    applied = await last_applied_columns(conn, schema, owner, set(changed))
    conflicts = []
    for (table, column), (version, definition) in sorted(applied.items()):
        op = changed[(table, column)]
        now: Column = op.change.old
        if not list(compare_column(table, definition, now)):
            continue
        what = "; ".join(_differences(definition, now)) or "definition changed"
        conflicts.append(
            Conflict(
                table,
                f"{table}.{column} was changed outside DataFlow since {version} applied it ({what}); "
                f"this plan's {op.kind} ({op.details}) would overwrite that change",
                [
                    f"keep the change: update the model of {table} so {column} matches the database",
                    "discard the change: undo it in the database, then migrate again",
                    f"leave {table} alone for now: auto_migrate(include_tables=[...]) without it",
                ],
                column,
            )
        )
    return conflicts


def ownership_conflicts(conflicts: Mapping[str, str], owner: str) -> list[Conflict]:
    """Tables the models define that another owner holds (``conflicts``: table → its owner)."""
    return [
        Conflict(
            table,
            f"table {table} is owned by {other}, not by {owner}: migrating it would change another "
            "application's table",
            [
                f"if this application is {other}: DataFlow(migration_config={{'owner': {other!r}}})",
                f"leave it to {other}: remove the model of {table}, or auto_migrate(include_tables=[...]) "
                "without it",
                f"hand it over: {other} releases it (deleting its DataFlowSchema releases its tables), "
                "then migrate again",
            ],
        )
        for table, other in sorted(conflicts.items())
    ]


def conflict_error(conflicts: list[Conflict]) -> MigrationConflictError:
    tables = ", ".join(dict.fromkeys(c.table for c in conflicts))
    return MigrationConflictError(
        f"{len(conflicts)} conflict(s) on {tables}: " + "; ".join(c.description for c in conflicts),
        conflicts,
    )
