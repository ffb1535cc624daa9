"""CREATE_VIEW: a view (or materialized view) the schema declares, created, or replaced in place.

- missing: ``CREATE [MATERIALIZED] VIEW ... AS <query>`` (a materialized one ``WITH DATA``), SAFE;
- changed, a plain view whose new columns extend the old ones (same names and types, in the same order):
  ``CREATE OR REPLACE VIEW``, SAFE: readers and dependent views keep working;
- any other change (columns removed, renamed or retyped; a materialized view; plain turned materialized):
  DROP_VIEW then CREATE_VIEW in the same transaction, with every view that depends on it.

Created after every table and column change (they may be what it reads), in dependency order among
themselves; :func:`compare_views` also re-creates the declared views a column type change, a dropped
column or a dropped table would break (PostgreSQL refuses those while a view uses the column).

The undo drops a created view, or puts a replaced view's old text back. Refreshing a materialized
view's rows is not a migration: nothing here runs ``REFRESH``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.alter_enum import ALTER_ENUM, enum_swap
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Schema, Table, View
from dataflow.sqlgen import Options, Rendered, tx
from dataflow.sqltext import qualified
from dataflow.viewsql import referenced_relations

CREATE_VIEW = "CREATE_VIEW"
DROP_VIEW = "DROP_VIEW"  # dataflow.ops.drop_view; named here for the diff below

# table changes PostgreSQL refuses while a view uses the column (or the table): the views are re-created
_BREAKING = {
    "ALTER_COLUMN_TYPE": "its type changes",
    "ALTER_COLUMN_COLLATION": "its collation changes",
    "ALTER_GENERATED": "its generation expression changes",
    "DROP_COLUMN": "it is dropped",
    "DROP_TABLE": "it is dropped",
}


@dataclass(frozen=True)
class DroppedView:
    """What DROP_VIEW removes (the live view), why, and whether CREATE_VIEW puts the declared one back."""

    view: View
    reason: str
    recreated: bool
    blocked_by: tuple[str, ...] = ()  # undeclared views that read it (the drop will fail)


@dataclass(frozen=True)
class ReplacedView:
    """The live view CREATE OR REPLACE changes, and the views that read it (dependants first), which its
    undo drops and creates again when the old text has fewer columns (CREATE OR REPLACE cannot drop any)."""

    view: View
    readers: tuple[View, ...] = ()


def create_view_sql(view: View, schema: str, replace: bool = False) -> str:
    name = qualified(schema, view.name)
    if view.materialized:
        return f"CREATE MATERIALIZED VIEW {name} AS {view.query} WITH DATA;"
    return f"CREATE {'OR REPLACE ' if replace else ''}VIEW {name} AS {view.query};"


def drop_view_sql(view: View, schema: str) -> str:
    return f"DROP {'MATERIALIZED ' if view.materialized else ''}VIEW {qualified(schema, view.name)};"


def extends(old: Iterable[tuple[str, str]] | None, new: Iterable[tuple[str, str]] | None) -> bool:
    """Whether ``new`` columns keep ``old`` ones as a prefix (what CREATE OR REPLACE VIEW accepts)."""
    if old is None or new is None:
        return False
    old, new = list(old), list(new)
    return len(new) >= len(old) and new[: len(old)] == old


def compare_views(
    current: Schema,
    desired: Schema,
    changes: Iterable[Change],
    owned: Iterable[str] = (),
    drop_missing: bool = True,
) -> Iterator[Change]:
    """Views to create, replace, re-create (drop, then create) and drop, given the tables' ``changes``.

    A view nobody declared is left alone, unless this owner declared it before (``owned``) and the
    declared set is complete (``drop_missing``): then it is dropped. A live view whose table column
    changes in a way PostgreSQL refuses under a view, or that reads a view being dropped, is dropped
    first and, when declared, created again afterwards.
    """
    declared = {v.name: v for v in desired.views}
    live = {v.name: v for v in current.views}
    reasons: dict[str, str] = {}  # live views to drop, with why
    replaced: set[str] = set()
    for name, view in declared.items():
        old = live.get(name)
        if old is None or old == view:
            continue
        if not view.materialized and not old.materialized and extends(old.columns, view.columns):
            replaced.add(name)
        elif old.materialized != view.materialized:
            reasons[name] = "declared materialized" if view.materialized else "declared a plain view"
        else:
            reasons[name] = "its query changes"
    for name, why in _reading_broken(live, changes).items():
        reasons.setdefault(name, why)
    owned_views = set(owned) - set(declared)
    if drop_missing:
        for name in sorted(owned_views & set(live)):
            reasons.setdefault(name, "no longer declared")
    # what reads a view being dropped goes first (PostgreSQL refuses to drop a view others read)
    grew = True
    while grew:
        grew = False
        for name, view in live.items():
            if name in reasons:
                continue
            reader_of = next((rel for rel, _ in view.depends_on if rel in reasons and rel in live), None)
            if reader_of is not None:
                reasons[name] = f"it reads view {reader_of}, re-created"
                grew = True
    dropped = {n: r for n, r in reasons.items() if n in declared or n in owned_views}
    for name in _dependants_first(dropped, live):
        # a reader nobody declared is not dropped for it: PostgreSQL will refuse, and the grade says so
        blocked = tuple(sorted(n for n in _readers(name, live) if n not in dropped))
        yield Change(
            DROP_VIEW, name, name, old=DroppedView(live[name], dropped[name], name in declared, blocked)
        )
    for name in _dependencies_first(declared, desired.name):
        view = declared[name]
        if name not in live or name in dropped:
            yield Change(CREATE_VIEW, name, name, new=view)
        elif name in replaced:
            readers = [n for n in _readers(name, live) if n not in dropped]
            replaced_view = ReplacedView(live[name], tuple(live[n] for n in _dependants_first(readers, live)))
            yield Change(CREATE_VIEW, name, name, old=replaced_view, new=view)


def _broken_columns(changes: Iterable[Change]) -> dict[tuple[str, str], str]:
    """(table, column) → why PostgreSQL refuses ``changes`` under a view reading it ("" for a whole table)."""
    broken: dict[tuple[str, str], str] = {}
    for c in changes:
        if c.kind == ALTER_ENUM and enum_swap(c.old, c.new):  # every column of the type is converted
            for table, column, _ in c.old.usages:
                broken[(table, column)] = f"{table}.{column}: its enum type {c.new.name} is swapped"
        if c.kind in _BREAKING:
            column = "" if c.kind == "DROP_TABLE" else (c.subject or "")
            broken[(c.table, column)] = f"{c.table}{'.' + column if column else ''}: {_BREAKING[c.kind]}"
    return broken


def _reading_broken(live: dict[str, View], changes: Iterable[Change]) -> dict[str, str]:
    """Live views that read a column (or table) ``changes`` alter in a way PostgreSQL refuses under a view."""
    broken = _broken_columns(changes)
    found: dict[str, str] = {}
    for name, view in live.items():
        for rel, col in view.depends_on:
            why = broken.get((rel, col)) or broken.get((rel, ""))
            if why and name not in found:
                found[name] = f"it reads {why}"
    return found


def undeclared_view_refusals(current: Schema, changes: Iterable[Change]) -> list[str]:
    """Views the plan leaves in place (no model declares them, so they are never dropped) that read what
    ``changes`` alter in a way PostgreSQL refuses under a view: the apply would fail, so the plan says so
    first. ``changes`` are the plan's, after filtering; the views it drops or re-creates are not counted."""
    changes = list(changes)
    handled = {c.table for c in changes if c.kind == DROP_VIEW}
    live = {v.name: v for v in current.views}
    return [
        f"view {name} (no model declares it) {why}"
        for name, why in sorted(_reading_broken(live, changes).items())
        if name not in handled
    ]


def _readers(name: str, live: dict[str, View]) -> set[str]:
    """The live views that read ``name``, directly or through other views."""
    found: set[str] = set()
    frontier = {name}
    while frontier:
        frontier = {
            n for n, v in live.items() if n not in found and any(r in frontier for r, _ in v.depends_on)
        } - {name}
        found |= frontier
    return found


def _dependants_first(names: Iterable[str], live: dict[str, View]) -> list[str]:
    """``names`` ordered so that a view comes before every view it reads."""
    pending, out = set(names), []
    while pending:
        ready = sorted(
            n for n in pending if not any(n in {r for r, _ in live[o].depends_on} for o in pending if o != n)
        )
        ready = ready or sorted(pending)  # a cycle cannot happen; never loop forever
        out.extend(ready)
        pending -= set(ready)
    return out


def _dependencies_first(declared: dict[str, View], schema: str) -> list[str]:
    """Declared view names ordered so that a view comes after every declared view its query reads."""
    reads = {n: referenced_relations(v.query, schema) & (set(declared) - {n}) for n, v in declared.items()}
    pending, out = set(declared), []
    while pending:
        ready = sorted(n for n in pending if not (reads[n] & pending)) or sorted(pending)
        out.extend(ready)
        pending -= set(ready)
    return out


def columns_text(columns: Iterable[tuple[str, str]] | None) -> str:
    return ", ".join(f"{n} {t}" for n, t in columns or ())


@register
class CreateView(Kind):
    name = CREATE_VIEW
    order = 149  # after every table, column, constraint and comment: what it reads exists
    reads_table = False  # a view: no rows of its own to measure

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        view: View = change.new
        if change.old is not None:
            added = len(view.columns or ()) - len(change.old.view.columns or ())
            return Assessment(
                Risk.SAFE,
                f"CREATE OR REPLACE VIEW: its columns keep their names and types ({added} added); "
                "readers and dependent views keep working",
                f"{ACCESS_EXCLUSIVE} on the view (brief)",
                METADATA_MS,
            )
        if view.materialized:
            return Assessment(
                Risk.SAFE,
                "new materialized view; its query runs once to fill it (WITH DATA), reading its tables",
                "ACCESS SHARE on the tables it reads",
                METADATA_MS,
            )
        return Assessment(Risk.SAFE, "new view; no table is touched", "none", METADATA_MS)

    def undo_grade(self, change: Change, assessment: Assessment) -> Risk:
        """Undoing a creation drops the view (readers break; a materialized one loses its rows)."""
        if change.old is not None:
            return Risk.SAFE
        return Risk.HIGH if change.new.materialized else Risk.MEDIUM

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        view: View = change.new
        schema = options.schema
        if change.old is None:
            down: tuple[str, ...] = (drop_view_sql(view, schema),)
            details = f"{'materialized ' if view.materialized else ''}view {view.name}"
        else:
            replaced: ReplacedView = change.old
            old = replaced.view
            if list(old.columns or ()) == list(view.columns or ()):
                down = (create_view_sql(old, schema, replace=True),)
            else:  # CREATE OR REPLACE cannot take columns away: drop it (its readers first), create the old
                down = (
                    *(drop_view_sql(r, schema) for r in replaced.readers),
                    drop_view_sql(view, schema),
                    create_view_sql(old, schema),
                    *(create_view_sql(r, schema) for r in reversed(replaced.readers)),
                )
            details = f"view {view.name} (OR REPLACE: {columns_text(view.columns)})"
        return Rendered(tx(create_view_sql(view, schema, replace=change.old is not None)), down, details)
