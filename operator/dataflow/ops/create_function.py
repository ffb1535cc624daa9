"""CREATE_FUNCTION: a function a model (or ``spec.functions``) declares and the schema lacks. SAFE: nothing
calls it yet. It runs after the tables and columns (a ``sql`` body is checked against them at creation) and
before the triggers that execute it; it is marked as DataFlow's (:data:`dataflow.functions.MARKER`).
The undo drops it again: nothing existed under that signature before.

:func:`compare_functions` is the diff of functions: declared ones created or replaced
(:mod:`dataflow.ops.replace_function`); with drop missing, a marked one no model declares any more is
dropped (:mod:`dataflow.ops.drop_function`). A DBA's function (unmarked) is never dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from dataflow.errors import SchemaError
from dataflow.functions import create_function_sql, drop_function_sql, identity_arguments, mark_function_sql
from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Function, Schema, Table
from dataflow.sqlgen import Options, Rendered, tx

CREATE_FUNCTION = "CREATE_FUNCTION"
REPLACE_FUNCTION = "REPLACE_FUNCTION"
DROP_FUNCTION = "DROP_FUNCTION"


def _identity(f: Function) -> str | None:
    try:
        return identity_arguments(f.arguments)
    except SchemaError:
        return None


def same_signature(old: Function, new: Function) -> bool:
    """Whether CREATE OR REPLACE can turn ``old`` into ``new`` (same arguments, names and return type)."""
    return old.arguments == new.arguments and old.returns == new.returns


def compare_functions(
    current: Schema, desired: Schema, drop_missing: bool, owner: str = ""
) -> Iterator[Change]:
    """Declared functions created or replaced (marked as ``owner``'s); with drop missing, ``owner``'s marked
    functions no longer declared are dropped. A DBA's function (unmarked) or another owner's is never dropped."""
    for f in desired.functions:
        candidates = [c for c in current.functions if c.name == f.name]
        existing = next((c for c in candidates if _identity(c) == _identity(f)), None)
        if existing is None:  # DataFlow's own under another signature is replaced; a DBA's overload stays
            existing = next((c for c in candidates if c.owner is not None), None)
        if existing is None:
            yield Change(CREATE_FUNCTION, f.name, f.name, new=replace(f, owner=owner))
        elif existing != f:  # a DBA's of the same signature is replaced and becomes this owner's
            mark = owner if existing.owner is None else existing.owner
            yield Change(REPLACE_FUNCTION, f.name, f.name, old=existing, new=replace(f, owner=mark))
    if not drop_missing:
        return
    declared = {f.name for f in desired.functions}
    for c in current.functions:
        if c.owner == owner and c.name not in declared:
            yield Change(DROP_FUNCTION, c.name, c.name, old=c)


def recreated_functions(changes: list[Change]) -> set[str]:
    """Functions the plan drops and creates again: triggers that execute them are re-created around it."""
    return {c.new.name for c in changes if c.kind == REPLACE_FUNCTION and not same_signature(c.old, c.new)}


def details(f: Function) -> str:
    return f"{f.name}({f.arguments}) RETURNS {f.returns} LANGUAGE {f.language} {f.volatility.upper()}"


@register
class CreateFunction(Kind):
    name = CREATE_FUNCTION
    order = 141  # after tables, columns and constraints (a sql body is checked against them); before triggers
    reads_table = False

    def schema_wide(self, change: Change, include: set[str]) -> bool:
        return True  # a new function touches no table; an included table's trigger may execute it

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        f: Function = change.new
        return Assessment(Risk.SAFE, f"new function {f.name}; nothing calls it yet", "none", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        f: Function = change.new
        return Rendered(
            tx(create_function_sql(f, options.schema), mark_function_sql(f, options.schema)),
            (drop_function_sql(f, options.schema, if_exists=True),),
            details(f),
        )
