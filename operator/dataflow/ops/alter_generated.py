"""ALTER_GENERATED: a stored generated column's expression changes, or a column becomes or stops being one.

PostgreSQL 15 and 16 cannot change a stored expression in place, so a new expression drops the column and
adds it again: nothing is lost (the values are computed), but every row is recomputed under ACCESS
EXCLUSIVE, so the grade follows the table's size. Indexes and constraints over the column go with it;
:func:`compare_generated` rebuilds them around the change. A plain column becoming generated loses its
stored values (HIGH); a generated one becoming plain keeps them (``DROP EXPRESSION``, catalog only).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from pglast import ast
from pglast.stream import RawStream
from pglast.visitors import Visitor

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.add_constraint import ADD_CONSTRAINT
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_index import CREATE_INDEX
from dataflow.ops.drop_constraint import DROP_CONSTRAINT
from dataflow.ops.drop_index import DROP_INDEX
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, REWRITE_HIGH_MS, Facts, rows_text, scan_ms
from dataflow.schema import Check, Column, ForeignKey, Index, Table, Unique
from dataflow.sqlgen import Options, Rendered, alter, column_definition, tx
from dataflow.sqltext import parse_expression
from dataflow.sqltext import quote_ident as q

ALTER_GENERATED = "ALTER_GENERATED"


def assess_recompute(facts: Facts, what: str) -> Assessment:
    """Computing a stored expression for every row: a rewrite under ACCESS EXCLUSIVE, graded by size."""
    rewrite_ms = 2 * scan_ms(facts)
    if not facts.rows:
        return Assessment(Risk.SAFE, f"{what} on an empty table", ACCESS_EXCLUSIVE, rewrite_ms)
    risk = Risk.HIGH if rewrite_ms > REWRITE_HIGH_MS else Risk.MEDIUM
    return Assessment(
        risk,
        f"{what}: recomputes {rows_text(facts.rows)} (~{rewrite_ms / 1000:.1f}s) under ACCESS EXCLUSIVE",
        ACCESS_EXCLUSIVE,
        rewrite_ms,
        affected_rows=facts.rows,
    )


@register
class AlterGenerated(Kind):
    name = ALTER_GENERATED
    order = 85  # after type changes, before defaults; dependent indexes drop before (40), rebuild after (130)
    undo_risk = Risk.MEDIUM  # the undo recomputes the old expression (or re-adds a plain column)

    def needs_row_count(self, change: Change) -> bool:
        return True

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        old, new = change.old, change.new
        if new.generated is None:
            return Assessment(
                Risk.SAFE,
                "stops computing the column; values kept",
                f"{ACCESS_EXCLUSIVE} (brief)",
                METADATA_MS,
            )
        if old.generated is None:
            if not facts.rows:
                return Assessment(
                    Risk.SAFE, "column becomes generated on an empty table", ACCESS_EXCLUSIVE, 0
                )
            return Assessment(
                Risk.HIGH,
                f"column becomes generated: {rows_text(facts.rows)} lose their stored value",
                ACCESS_EXCLUSIVE,
                2 * scan_ms(facts),
                data_loss=True,
                affected_rows=facts.rows,
            )
        return assess_recompute(facts, "new generated expression")

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, old, new, opts = change.table, change.old, change.new, options
        details = f"{new.name}: {old.generated or 'stored'} → {new.generated or 'stored'}"
        if new.generated is None:
            return Rendered(
                tx(alter(t, f"ALTER COLUMN {q(new.name)} DROP EXPRESSION", opts)),
                _readd(t, old, opts),
                details,
                strategy="catalog only",
            )
        return Rendered(
            tx(*_readd(t, new, opts)),
            _readd(t, old, opts),
            details,
            irreversible=old.generated is None and opts.populated,
            strategy="drop and re-add the column (values recomputed)",
        )


def _readd(table: str, column: Column, opts: Options) -> tuple[str, ...]:
    return (
        alter(table, f"DROP COLUMN {q(column.name)}", opts),
        alter(table, f"ADD COLUMN {column_definition(column)}", opts),
    )


def compare_generated(old: Table, new: Table) -> Iterator[Change]:
    """Changed generated expressions, and the unchanged indexes and constraints over a column that is
    dropped and re-added, rebuilt around it (the drop takes them; changed ones are already rebuilt)."""
    readded: list[str] = []
    for col in new.columns:
        existing = old.column(col.name)
        if existing is None or same_expression(existing.generated, col.generated):
            continue
        if col.generated is not None:
            readded.append(col.name)
        yield Change(ALTER_GENERATED, new.name, col.name, old=existing, new=col)
    if not readded:
        return  # DROP EXPRESSION keeps what depends on the column
    for kind_drop, kind_add, olds, news in (
        (DROP_INDEX, CREATE_INDEX, old.indexes, new.indexes),
        (DROP_CONSTRAINT, ADD_CONSTRAINT, old.uniques, new.uniques),
        (DROP_CONSTRAINT, ADD_CONSTRAINT, old.checks, new.checks),
        (DROP_CONSTRAINT, ADD_CONSTRAINT, old.foreign_keys, new.foreign_keys),
    ):
        by_name = {item.name: item for item in olds}
        for item in news:
            if by_name.get(item.name) == item and any(_mentions(_texts(item), n) for n in readded):
                yield Change(kind_drop, new.name, item.name, old=item)
                yield Change(kind_add, new.name, item.name, new=item)


class _DropColumnCasts(Visitor):
    """``CAST(quantity AS numeric)`` → ``quantity``, ``CAST(1 AS numeric)`` → ``1``: the casts PostgreSQL adds
    to columns and literals when it stores an expression (``price * quantity + 1``, integer ``quantity``)."""

    def visit_TypeCast(self, ancestors: Any, node: Any) -> Any:  # noqa: N802 (pglast API)
        return node.arg if isinstance(node.arg, (ast.ColumnRef, ast.A_Const)) else None


@lru_cache(maxsize=4096)
def _without_column_casts(text: str) -> str:
    return str(RawStream()(_DropColumnCasts()(parse_expression(text))))


def same_expression(stored: str | None, desired: str | None) -> bool:
    """Whether the catalog's expression is the desired one. Casts on columns and literals are compared
    away: the catalog cannot tell the ones PostgreSQL added from the ones written, so adding or removing
    only such a cast is not seen as a change (write ``n::numeric / 2`` as ``n / 2.0`` to see it)."""
    if stored is None or desired is None:
        return stored == desired
    return stored == desired or _without_column_casts(stored) == _without_column_casts(desired)


def _texts(item: Index | Unique | Check | ForeignKey) -> tuple[str, ...]:
    """The column names and SQL expressions an index or constraint is made of."""
    if isinstance(item, Check):
        return (item.expression,)
    if isinstance(item, Index):
        return (*item.columns, *((item.where,) if item.where else ()))
    return item.columns


def _mentions(texts: tuple[str, ...], column: str) -> bool:
    """Whether ``column`` is one of ``texts`` or a word inside one (a lookalike only costs a rebuild)."""
    word = re.compile(rf'(?<![\w"]){re.escape(column)}(?![\w"])|"{re.escape(column)}"')
    return any(t == column or word.search(t) for t in texts)
