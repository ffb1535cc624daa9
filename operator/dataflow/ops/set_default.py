"""SET_DEFAULT: a new or changed default; existing rows keep their values."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, alter, tx
from dataflow.sqltext import quote_ident as q

SET_DEFAULT = "SET_DEFAULT"
DEFAULT_REASON = "changes the default for new rows only"


@register
class SetDefault(Kind):
    name = SET_DEFAULT
    order = 90
    undo_risk = Risk.SAFE  # metadata only

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(Risk.SAFE, DEFAULT_REASON, f"{ACCESS_EXCLUSIVE} (brief)", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, o, n = change.table, change.old, change.new
        down = f"ALTER COLUMN {q(n.name)} " + (f"SET DEFAULT {o.default}" if o.default else "DROP DEFAULT")
        return Rendered(
            tx(alter(t, f"ALTER COLUMN {q(n.name)} SET DEFAULT {n.default}", options)),
            (alter(t, down, options),),
            f"{n.name} DEFAULT {n.default}",
        )
