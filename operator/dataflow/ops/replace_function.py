"""REPLACE_FUNCTION: a declared function whose definition differs from the database's.

- Same arguments (names included) and return type: ``CREATE OR REPLACE FUNCTION``, MEDIUM even when only
  the body changes: what every caller (trigger, query, default) gets changes with it.
- Arguments or return type changed: PostgreSQL cannot replace it in place, so the old one is dropped and
  the new one created in the same transaction. HIGH: callers of the old signature break. Triggers of the
  plan's tables that execute it are dropped before and created again after (see ``dataflow.ops.create_trigger``);
  anything else that depends on it makes the DROP fail, and the migration rolls back whole.

A DBA's function the models now declare by name is replaced the same way and marked as DataFlow's.
The undo restores the old definition (and its mark, or its absence).
"""

from __future__ import annotations

from dataflow.errors import SchemaError
from dataflow.functions import create_function_sql, drop_function_sql, mark_function_sql
from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_function import REPLACE_FUNCTION, details, same_signature
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Function, Table
from dataflow.sqlgen import Options, Rendered, tx

_EXCLUSIVE = "ACCESS EXCLUSIVE on the function (callers wait)"


def restore_sql(old: Function, schema: str) -> tuple[str, ...]:
    """Statements that create ``old`` again as it was (marked or not)."""
    return (create_function_sql(old, schema), mark_function_sql(old, schema))


@register
class ReplaceFunction(Kind):
    name = REPLACE_FUNCTION
    order = 142  # right after CREATE_FUNCTION, before the triggers
    reads_table = False

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        old: Function = change.old
        new: Function = change.new
        if not same_signature(old, new):
            return Assessment(
                Risk.HIGH,
                f"function {new.name} changes signature ({old.arguments}) RETURNS {old.returns} -> "
                f"({new.arguments}) RETURNS {new.returns}: dropped and created again; callers of the old "
                "signature break",
                _EXCLUSIVE,
                METADATA_MS,
            )
        what = (
            "adopts the database's function (not DataFlow's until now)" if old.owner is None else "replaced"
        )
        return Assessment(
            Risk.MEDIUM,
            f"function {new.name} {what}: every caller gets the new definition",
            _EXCLUSIVE,
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        old: Function = change.old
        new: Function = change.new
        schema = options.schema
        up = (create_function_sql(new, schema), mark_function_sql(new, schema))
        try:
            down = restore_sql(old, schema)
        except SchemaError:  # the database's text is not one DataFlow can write back
            down = ()
        if same_signature(old, new):
            return Rendered(tx(*up), down, details(new), irreversible=not down, strategy="create or replace")
        try:
            drop_old = drop_function_sql(old, schema)
        except SchemaError:
            raise SchemaError(
                f"functions.{new.name}",
                f"cannot drop the database's {new.name}({old.arguments}) to replace it",
            ) from None
        undo = (drop_function_sql(new, schema, if_exists=True), *down) if down else ()
        return Rendered(
            tx(drop_old, *up), undo, details(new), irreversible=not undo, strategy="drop and create"
        )
