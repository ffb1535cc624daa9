"""RENAME_COLUMN: a column whose ``renamed_from`` names an existing column; the data stays."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.rename_table import RENAME_REASON
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, alter, tx
from dataflow.sqltext import quote_ident as q

RENAME_COLUMN = "RENAME_COLUMN"


@register
class RenameColumn(Kind):
    name = RENAME_COLUMN
    order = 20

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(Risk.MEDIUM, RENAME_REASON, f"{ACCESS_EXCLUSIVE} (brief)", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, old, new = change.table, change.old, change.new
        return Rendered(
            tx(alter(t, f"RENAME COLUMN {q(old)} TO {q(new)}", options)),
            (alter(t, f"RENAME COLUMN {q(new)} TO {q(old)}", options),),
            f"{old} → {new}",
        )
