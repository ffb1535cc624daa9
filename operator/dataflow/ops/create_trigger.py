"""CREATE_TRIGGER: a trigger a table declares (``Table.triggers``). It takes SHARE ROW EXCLUSIVE on the table
and changes what every later write does: MEDIUM on a table with rows, SAFE on an empty or new one. It runs
after the functions (it executes one). The undo drops it.

:func:`compare_triggers` is the diff of triggers: a declared trigger missing is created; one whose
definition changed, or whose function the plan drops and creates again, is dropped and created in the
same transaction; one the table does not declare is dropped only when the owner's set is complete
(drop missing): a DBA's trigger is left alone otherwise.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from dataflow.errors import SchemaError
from dataflow.functions import create_trigger_sql, drop_trigger_sql
from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import METADATA_MS, Facts, rows_text
from dataflow.schema import Schema, Table, Trigger
from dataflow.sqlgen import Options, Rendered, tx

CREATE_TRIGGER = "CREATE_TRIGGER"
DROP_TRIGGER = "DROP_TRIGGER"
LOCK = "SHARE ROW EXCLUSIVE"


def compare_triggers(
    current: Schema, desired: Schema, drop_missing: bool, recreated: Collection[str] = ()
) -> Iterator[Change]:
    """Triggers of the desired tables (``recreated``: functions the plan drops and creates again)."""
    for table in desired.tables:
        existing = current.table(table.name)
        if existing is None and table.renamed_from:
            existing = current.table(table.renamed_from)
        olds = {t.name: t for t in (existing.triggers if existing else ())}
        news = {t.name: t for t in table.triggers}
        for name, t in olds.items():
            if name in news:
                if news[name] != t or t.function in recreated:
                    yield Change(DROP_TRIGGER, table.name, name, old=t, new=news[name])
            elif drop_missing:
                yield Change(DROP_TRIGGER, table.name, name, old=t)
        for name, t in news.items():
            before = olds.get(name)
            if before is None or before != t or t.function in recreated:
                _check_function(t, table.name, current, desired)
                yield Change(CREATE_TRIGGER, table.name, name, new=t)


def _check_function(t: Trigger, table: str, current: Schema, desired: Schema) -> None:
    """A declared trigger executes a trigger function of the schema: declared, or already in the database."""
    field = f"{table}.triggers.{t.name}.function"
    declared = desired.function(t.function)
    if declared is None:
        found = [f for f in current.functions if f.name == t.function]
        if not found:
            raise SchemaError(field, f"no function {t.function} is declared nor in the database")
        if all(f.returns != "trigger" or f.arguments for f in found):
            raise SchemaError(field, f"{t.function} in the database is not a trigger function")
    elif declared.returns != "trigger" or declared.arguments:
        raise SchemaError(field, f"{t.function} must return trigger and take no arguments")


def details(t: Trigger) -> str:
    events = " OR ".join(
        e + (f" OF {', '.join(t.columns)}" if e == "UPDATE" and t.columns else "") for e in t.events
    )
    when = f" WHEN ({t.when})" if t.when else ""
    return f"{t.name}: {t.timing} {events} FOR EACH {t.level}{when} EXECUTE {t.function}()"


@register
class CreateTrigger(Kind):
    name = CREATE_TRIGGER
    order = 145  # after the functions it executes and the table's own changes, before tables are dropped

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        t: Trigger = change.new
        if facts.rows > 0:
            return Assessment(
                Risk.MEDIUM,
                f"trigger {t.name} on {change.table} ({rows_text(facts.rows)}): every later "
                f"{'/'.join(t.events)} runs {t.function}()",
                LOCK,
                METADATA_MS,
            )
        return Assessment(Risk.SAFE, f"trigger {t.name} on an empty table", LOCK, METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t: Trigger = change.new
        return Rendered(
            tx(create_trigger_sql(t, change.table, options.schema)),
            (drop_trigger_sql(t, change.table, options.schema, if_exists=True),),
            details(t),
        )
