"""When a plan would overwrite someone else's decision: the conflicts :class:`MigrationConflictError` lists.

Two kinds. Drift: a column this owner set (its ledger keeps the definition every applied operation
left) was changed by hand since, and the plan would change it again, undoing that hand change
without anyone deciding so. Ownership: tables another owner holds.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from dataflow.errors import Conflict, MigrationConflictError
from dataflow.jsonfields import from_json
from dataflow.ledger import STATUS_APPLIED, Ledger
from dataflow.operations import Operation
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


async def definitions_since_applied(
    conn: asyncpg.Connection, schema: str, owner: str, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, Column, list[Column]]]:
    """(table, column) → (version, definition, tried): the newest applied migration of ``owner`` that set
    the column, the definition it left, and every one attempts since (interrupted, failed) left or tried:
    a column found as any of them was left so by DataFlow, not changed by hand."""
    tried: dict[tuple[str, str], list[Column]] = {}
    settled: dict[tuple[str, str], tuple[str, Column, list[Column]]] = {}
    for record in await Ledger(schema).history(conn, HISTORY_LIMIT, owner):
        left: dict[tuple[str, str], Column] = {}  # what this migration's last operation on each column set
        for op in record.operations:
            for definition in op.get("columns") or ():
                left[(op.get("table", ""), definition.get("name", ""))] = from_json(Column, definition)
        for key, definition in left.items():
            if key not in wanted or key in settled:
                continue
            tried.setdefault(key, []).append(definition)
            if record.status == STATUS_APPLIED:
                settled[key] = (record.version, definition, tried[key])
        if len(settled) == len(wanted):
            break
    return settled


ATTRIBUTES = ("type", "default", "nullable")  # what a plan compares (diff.compare_column)


def drifted(applied: Column, tried: list[Column], now: Column) -> set[str]:
    """The attributes of ``now`` that no definition DataFlow left or tried holds: changed by hand.

    Attribute by attribute, because an attempt stopped half-way leaves a mix (the new type, not yet
    the NOT NULL that came next), which is no hand change.
    """
    return {a for a in ATTRIBUTES if all(getattr(d, a) != getattr(now, a) for d in (applied, *tried))}


async def drift_conflicts(
    conn: asyncpg.Connection, schema: str, owner: str, migration: Migration
) -> list[Conflict]:
    """Columns changed by hand since this owner last applied them, where the plan would change them again."""
    touched: dict[tuple[str, str], tuple[set[str], list[Operation]]] = {}
    for op in migration.operations:
        old, new = op.change.old, op.change.new
        if isinstance(old, Column):
            attributes, ops = touched.setdefault((op.table, old.name), (set(), []))
            changes = {
                a for a in ATTRIBUTES if not isinstance(new, Column) or getattr(old, a) != getattr(new, a)
            }
            attributes.update(changes)
            ops.append(op)
    if not touched:
        return []
    known = await definitions_since_applied(conn, schema, owner, set(touched))
    conflicts = []
    for (table, column), (version, applied, tried) in sorted(known.items()):
        attributes, ops = touched[(table, column)]
        now: Column = ops[0].change.old
        overwritten = drifted(applied, tried, now) & attributes
        if not overwritten:
            continue
        what = "; ".join(_differences(applied, now)) or "definition changed"
        plan = ", ".join(f"{op.kind} ({op.details})" for op in ops)
        conflicts.append(
            Conflict(
                table,
                f"{table}.{column} was changed outside DataFlow since {version} applied it ({what}); "
                f"this plan's {plan} would overwrite that change",
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
