"""DROP_NOT_NULL: relaxes a constraint; metadata only."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, alter, tx
from dataflow.sqltext import quote_ident as q

DROP_NOT_NULL = "DROP_NOT_NULL"


@register
class DropNotNull(Kind):
    name = DROP_NOT_NULL
    order = 100
    undo_risk = Risk.MEDIUM  # SET NOT NULL fails when NULLs were written since

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(Risk.SAFE, "relaxes a constraint", f"{ACCESS_EXCLUSIVE} (brief)", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, column = change.table, q(change.new.name)
        return Rendered(
            tx(alter(t, f"ALTER COLUMN {column} DROP NOT NULL", options)),
            (alter(t, f"ALTER COLUMN {column} SET NOT NULL", options),),
            f"{change.new.name} NULL",
        )
