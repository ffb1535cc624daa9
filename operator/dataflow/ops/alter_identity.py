"""ALTER_IDENTITY: an identity column's START or INCREMENT changes (``ALTER COLUMN ... SET``).

Only the identity sequence's options change, in the catalog: no row is read or written. ``SET START WITH``
records the value a later ``RESTART`` goes back to; it does not move the sequence's next value.
"""

from __future__ import annotations

from collections.abc import Iterator

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Column, Table
from dataflow.sqlgen import Options, Rendered, alter, identity_options, tx
from dataflow.sqltext import quote_ident as q

ALTER_IDENTITY = "ALTER_IDENTITY"


@register
class AlterIdentity(Kind):
    name = ALTER_IDENTITY
    order = 95  # with the other column options, after type changes

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(
            Risk.SAFE, "identity sequence options, catalog only", f"{ACCESS_EXCLUSIVE} (brief)", METADATA_MS
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, old, new = change.table, change.old, change.new
        return Rendered(
            tx(_set(t, new, options)),
            (_set(t, old, options),),
            f"{new.name}: {identity_options(old, both=True)} → {identity_options(new, both=True)}",
            strategy="catalog only",
        )


def _set(table: str, column: Column, opts: Options) -> str:
    return alter(table, f"ALTER COLUMN {q(column.name)} {identity_options(column, 'SET ', both=True)}", opts)


def compare_identity(old: Table, new: Table) -> Iterator[Change]:
    """Identity columns on both sides whose START or INCREMENT differ."""
    for col in new.columns:
        existing = old.column(col.name)
        if existing is None or not (existing.identity and col.identity):
            continue
        if (existing.identity_start, existing.identity_increment) != (
            col.identity_start,
            col.identity_increment,
        ):
            yield Change(ALTER_IDENTITY, new.name, col.name, old=existing, new=col)
