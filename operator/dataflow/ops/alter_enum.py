"""ALTER_ENUM: an enum type's labels changed. One change per type, graded by its worst part:

- a label added is SAFE: ``ALTER TYPE ... ADD VALUE`` placed where the model lists it, run on its own
  (outside the migration's transaction) so later steps may already use it;
- a label renamed (declared: ``renamed_values``) is MEDIUM: ``RENAME VALUE``, rows keep their value;
- a label removed (or the labels reordered) is a type swap: rename the type away, create it with the
  new labels, convert every column through text, drop the old type. Removing is HIGH and the grade
  counts the rows that hold a removed label (the conversion fails while any does).

The undo is the same algorithm from the new labels back to the old ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import asyncpg

from dataflow.operations import Assessment, Change, Risk, Step
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_enum import CREATE_ENUM, create_enum_sql
from dataflow.ops.drop_enum import DROP_ENUM
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts, rows_text
from dataflow.schema import EnumType, Schema, Table
from dataflow.sqlgen import Options, Rendered
from dataflow.sqltext import MAX_IDENTIFIER_BYTES, qualified, quote_ident, quote_literal

ALTER_ENUM = "ALTER_ENUM"
_SWAP_SUFFIX = "_dataflow_old"


def compare_enums(
    current: Schema, desired: Schema, owned: Iterable[str] = (), drop_missing: bool = True
) -> Iterator[Change]:
    """Enum types the desired schema declares, created or altered; one no model uses any more dropped only
    when the owner set is complete and every column that used it lies in this owner's tables."""
    for e in desired.enums:
        existing = current.enum(e.name)
        if existing is None:
            yield Change(CREATE_ENUM, e.name, e.name, new=e)
        elif existing.values != e.values:
            yield Change(ALTER_ENUM, e.name, e.name, old=existing, new=e)
    if not drop_missing:
        return
    owned_tables, declared = set(owned), {e.name for e in desired.enums}
    used = {c.type for t in desired.tables for c in t.columns}
    for e in current.enums:
        if e.name in declared or e.name in used or not e.usages:
            continue
        if all(table in owned_tables for table, _, _ in e.usages):
            yield Change(DROP_ENUM, e.name, e.name, old=e)


def _renames(old: EnumType, new: EnumType) -> list[tuple[str, str]]:
    """Declared renames that apply: the old label exists and the new one does not yet."""
    return [(r.old, r.new) for r in new.renamed_values if r.old in old.values and r.new not in old.values]


def _plan(old: EnumType, new: EnumType) -> tuple[list[tuple[str, str]], list[str], list[str], bool]:
    """(renames, labels added, labels removed, whether a type swap is needed)."""
    renames = _renames(old, new)
    mapping = dict(renames)
    current = [mapping.get(v, v) for v in old.values]
    removed = [v for v in current if v not in new.values]
    added = [v for v in new.values if v not in current]
    kept = [v for v in current if v in new.values]
    swap = bool(removed) or kept != [v for v in new.values if v in current]
    return renames, added, removed, swap


def enum_swap(old: EnumType, new: EnumType) -> bool:
    """Whether turning ``old`` into ``new`` swaps the type (converting every column of it)."""
    return _plan(old, new)[3]


def enum_steps(
    old: EnumType, new: EnumType, usages: tuple[tuple[str, str, str | None], ...], schema: str
) -> list[Step]:
    """Statements that turn the type's labels ``old.values`` into ``new.values``."""
    name = qualified(schema, new.name)
    renames, added, _, swap = _plan(old, new)
    steps = [
        Step(f"ALTER TYPE {name} RENAME VALUE {quote_literal(a)} TO {quote_literal(b)};") for a, b in renames
    ]
    if swap:
        return steps + [Step(s) for s in _swap(new, usages, schema)]
    current = [dict(renames).get(v, v) for v in old.values]
    for i, label in enumerate(new.values):
        if label in current:
            continue
        where = f"AFTER {quote_literal(new.values[i - 1])}" if i else f"BEFORE {quote_literal(current[0])}"
        sql = f"ALTER TYPE {name} ADD VALUE IF NOT EXISTS {quote_literal(label)} {where};"
        steps.append(Step(sql, transactional=False))  # committed on its own: later steps may use the label
        current.insert(current.index(new.values[i - 1]) + 1 if i else 0, label)
    return steps


def _swap(new: EnumType, usages: tuple[tuple[str, str, str | None], ...], schema: str) -> list[str]:
    """Rename the type away, create it with ``new``'s labels, convert each column through text, drop the old."""
    name = qualified(schema, new.name)
    away = (
        new.name.encode()[: MAX_IDENTIFIER_BYTES - len(_SWAP_SUFFIX)].decode(errors="ignore") + _SWAP_SUFFIX
    )
    sql = [f"ALTER TYPE {name} RENAME TO {quote_ident(away)};", create_enum_sql(new, schema)]
    for table, column, default in usages:
        target, col = qualified(schema, table), quote_ident(column)
        if default is not None:
            sql.append(f"ALTER TABLE {target} ALTER COLUMN {col} DROP DEFAULT;")
        sql.append(f"ALTER TABLE {target} ALTER COLUMN {col} TYPE {name} USING {col}::text::{name};")
        if default is not None:
            sql.append(f"ALTER TABLE {target} ALTER COLUMN {col} SET DEFAULT {default};")
    sql.append(f"DROP TYPE {qualified(schema, away)};")
    return sql


def _inverse(old: EnumType, new: EnumType) -> tuple[EnumType, EnumType]:
    """(from, to) for the undo: the new labels back to the old ones, each rename reversed."""
    from dataflow.schema import EnumRename

    back = tuple(EnumRename(b, a) for a, b in _renames(old, new))
    return new, EnumType(old.name, old.values, back)


@register
class AlterEnum(Kind):
    name = ALTER_ENUM
    order = 47  # after CREATE_ENUM, before the columns that may use a new label
    reads_table = False  # the type's columns are counted by the probe itself

    async def probe(
        self, conn: asyncpg.Connection, change: Change, schema: str, db_table: str, facts: Facts
    ) -> Facts:
        """Count the rows, over every column of the type, that hold a label the change removes."""
        _, _, removed, _ = _plan(change.old, change.new)
        old: EnumType = change.old
        if not removed or not old.usages:
            return facts
        total = 0
        for table, column, _ in old.usages:
            col = quote_ident(column)
            total += await conn.fetchval(
                f"SELECT count(*) FROM {qualified(schema, table)} WHERE {col}::text = ANY($1::text[])",
                removed,
            )
        return Facts(violating=total)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        renames, added, removed, swap = _plan(change.old, change.new)
        users = len(change.old.usages)
        parts = [f"adds {', '.join(added)}"] if added else []
        parts += [f"renames {a} to {b}" for a, b in renames]
        if removed:
            held = facts.violating or 0
            parts.append(
                f"removes {', '.join(removed)} by a type swap over {users} column(s); "
                + (
                    f"{rows_text(held)} hold a removed label: the migration will fail"
                    if held
                    else "no row holds it"
                )
            )
            return Assessment(Risk.HIGH, "; ".join(parts), ACCESS_EXCLUSIVE, METADATA_MS, affected_rows=held)
        if swap:
            parts.append(f"reorders the labels by a type swap over {users} column(s) (tables rewritten)")
            return Assessment(Risk.MEDIUM, "; ".join(parts), ACCESS_EXCLUSIVE, METADATA_MS)
        if renames:
            return Assessment(
                Risk.MEDIUM, "; ".join(parts) + " (rows keep their value)", ACCESS_EXCLUSIVE, METADATA_MS
            )
        return Assessment(Risk.SAFE, "; ".join(parts) + " (catalog only)", "none on tables", METADATA_MS)

    def undo_grade(self, change: Change, assessment: Assessment) -> Risk:
        """Undoing an added label removes it again (a swap); undoing a rename renames back."""
        renames, added, removed, swap = _plan(change.old, change.new)
        if added:
            return Risk.HIGH
        return Risk.MEDIUM

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        old, new = change.old, change.new
        steps = enum_steps(old, new, old.usages, options.schema)
        back_from, back_to = _inverse(old, new)
        down = tuple(s.sql for s in enum_steps(back_from, back_to, old.usages, options.schema))
        strategy = "type swap" if _plan(old, new)[3] else "transactional"
        return Rendered(
            tuple(steps),
            down,
            f"{new.name}: {', '.join(old.values)} -> {', '.join(new.values)}",
            strategy=strategy,
        )
