"""DROP_DEFAULT: the default goes; existing rows keep their values."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.set_default import DEFAULT_REASON
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, alter, tx
from dataflow.sqltext import quote_ident as q

DROP_DEFAULT = "DROP_DEFAULT"


@register
class DropDefault(Kind):
    name = DROP_DEFAULT
    order = 70
    undo_risk = Risk.SAFE  # metadata only

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(Risk.SAFE, DEFAULT_REASON, f"{ACCESS_EXCLUSIVE} (brief)", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, o, n = change.table, change.old, change.new
        return Rendered(
            tx(alter(t, f"ALTER COLUMN {q(n.name)} DROP DEFAULT", options)),
            (alter(t, f"ALTER COLUMN {q(n.name)} SET DEFAULT {o.default}", options),),
            f"{n.name} (was {o.default})",
        )
