"""DROP_TRIGGER: a trigger dropped, either because its table declares another definition under its name (or
its function is dropped and created again): then ``new`` holds the definition CREATE_TRIGGER puts back in
the same transaction, MEDIUM; or because the owner's set is complete and the table no longer declares it:
HIGH, what it did on every write stops. It runs early, before the columns it names or its function change.
The undo creates the old trigger again.
"""

from __future__ import annotations

from dataflow.functions import create_trigger_sql, drop_trigger_sql
from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_trigger import DROP_TRIGGER, details
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Table, Trigger
from dataflow.sqlgen import Options, Rendered, tx


@register
class DropTrigger(Kind):
    name = DROP_TRIGGER
    order = 32  # after constraints are dropped, before columns and functions change
    undo_risk = Risk.MEDIUM  # CREATE TRIGGER on a table that may hold rows

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        t: Trigger = change.old
        if change.new is not None:
            return Assessment(
                Risk.MEDIUM,
                f"trigger {t.name} on {change.table} dropped and created again with its new definition "
                "in the same transaction",
                "ACCESS EXCLUSIVE",
                METADATA_MS,
            )
        return Assessment(
            Risk.HIGH,
            f"drops trigger {t.name} on {change.table}, no longer declared: {t.function}() stops running "
            f"on {'/'.join(t.events)}",
            "ACCESS EXCLUSIVE",
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t: Trigger = change.old
        return Rendered(
            tx(drop_trigger_sql(t, change.table, options.schema)),
            (create_trigger_sql(t, change.table, options.schema),),
            details(t),
        )
