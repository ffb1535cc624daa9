"""RENAME_TABLE: a table whose ``renamed_from`` names an existing table; the data stays."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, alter, tx
from dataflow.sqltext import quote_ident as q

RENAME_TABLE = "RENAME_TABLE"
RENAME_REASON = "rename keeps the data; clients using the old name break"


@register
class RenameTable(Kind):
    name = RENAME_TABLE
    order = 10  # first: every other change of the table uses its new name

    def renamed_from(self, change: Change) -> str | None:
        return change.old

    def released_tables(self, change: Change) -> tuple[str, ...]:
        return (change.old,)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(Risk.MEDIUM, RENAME_REASON, f"{ACCESS_EXCLUSIVE} (brief)", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        old, new = change.old, change.new
        return Rendered(
            tx(alter(old, f"RENAME TO {q(new)}", options)),
            (alter(new, f"RENAME TO {q(old)}", options),),
            f"{old} → {new}",
        )
