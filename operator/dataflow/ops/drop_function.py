"""DROP_FUNCTION: a function DataFlow created (marked) that no model declares any more, planned only when the
owner's set is complete (drop missing). HIGH: whatever still calls it breaks. It runs after the tables and
triggers that used it are gone; the undo creates it again, marked."""

from __future__ import annotations

from dataflow.functions import create_function_sql, drop_function_sql, mark_function_sql
from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_function import DROP_FUNCTION, details
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Function, Table
from dataflow.sqlgen import Options, Rendered, tx


@register
class DropFunction(Kind):
    name = DROP_FUNCTION
    order = 152  # after DROP_TABLE (its triggers go with it), before DROP_ENUM (a type it may use)
    reads_table = False
    undo_risk = Risk.SAFE  # CREATE FUNCTION

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        f: Function = change.old
        return Assessment(
            Risk.HIGH,
            f"drops function {f.name}({f.arguments}), no longer declared; anything still calling it breaks",
            "ACCESS EXCLUSIVE on the function",
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        f: Function = change.old
        return Rendered(
            tx(drop_function_sql(f, options.schema)),
            (create_function_sql(f, options.schema), mark_function_sql(f, options.schema)),
            details(f),
        )
