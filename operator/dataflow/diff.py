"""Compare a desired schema with the database's; one comparator per object kind.

Only tables the desired schema names, or that this owner created before (``owned``), are
considered: other tables in the database are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

from dataflow.diff_table_extras import compare_table_extras
from dataflow.operations import Change
from dataflow.ops import sort_changes
from dataflow.ops.add_column import ADD_COLUMN
from dataflow.ops.add_constraint import ADD_CONSTRAINT
from dataflow.ops.add_exclusion import compare_exclusions
from dataflow.ops.alter_column_type import ALTER_COLUMN_TYPE
from dataflow.ops.alter_enum import compare_enums
from dataflow.ops.alter_generated import compare_generated
from dataflow.ops.alter_identity import compare_identity
from dataflow.ops.create_function import compare_functions, recreated_functions
from dataflow.ops.create_index import CREATE_INDEX
from dataflow.ops.create_sequence import compare_sequences
from dataflow.ops.create_table import CREATE_TABLE
from dataflow.ops.create_trigger import compare_triggers
from dataflow.ops.create_view import compare_views
from dataflow.ops.drop_column import DROP_COLUMN
from dataflow.ops.drop_constraint import DROP_CONSTRAINT
from dataflow.ops.drop_default import DROP_DEFAULT
from dataflow.ops.drop_index import DROP_INDEX
from dataflow.ops.drop_not_null import DROP_NOT_NULL
from dataflow.ops.drop_table import DROP_TABLE
from dataflow.ops.rename_column import RENAME_COLUMN
from dataflow.ops.rename_table import RENAME_TABLE
from dataflow.ops.set_default import SET_DEFAULT
from dataflow.ops.set_not_null import SET_NOT_NULL
from dataflow.schema import Column, PrimaryKey, Schema, Table
from dataflow.sqlgen import primary_key_name


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)  # indexes and constraints, compared by name


def compare_schemas(
    current: Schema, desired: Schema, owned: Iterable[str] = (), drop_missing: bool = True, owner: str = ""
) -> list[Change]:
    """Changes that turn ``current`` into ``desired``, in execution order.

    ``drop_missing``: ``desired`` is the whole model set, so an ``owned`` table it does not name is
    dropped; otherwise such tables are left alone (:func:`missing_tables` lists them). ``owner`` marks the
    functions it creates, and only its own marked functions are dropped.
    """
    changes: list[Change] = []
    for table in desired.tables:
        existing = current.table(table.name)
        if existing is None and table.renamed_from and current.table(table.renamed_from):
            existing = current.table(table.renamed_from)
            changes.append(
                Change(RENAME_TABLE, table.name, table.name, old=table.renamed_from, new=table.name)
            )
        if existing is None:
            changes.append(Change(CREATE_TABLE, table.name, new=table))
            changes.extend(Change(ADD_CONSTRAINT, table.name, fk.name, new=fk) for fk in table.foreign_keys)
            changes.extend(compare_table_extras(None, table))
            continue
        if (
            existing == table
        ):  # in line already (most tables of most plans): no comparator has anything to say
            continue
        for comparator in TABLE_COMPARATORS:
            changes.extend(comparator(existing, table))
    changes.extend(compare_enums(current, desired, owned, drop_missing))
    changes.extend(compare_sequences(current, desired))
    functions = list(compare_functions(current, desired, drop_missing, owner))
    changes.extend(functions)
    changes.extend(compare_triggers(current, desired, drop_missing, recreated_functions(functions)))
    if drop_missing:
        changes.extend(Change(DROP_TABLE, t.name, old=t) for t in missing_tables(current, desired, owned))
    changes.extend(compare_views(current, desired, changes, owned, drop_missing))
    return sort_changes(changes)


def missing_tables(current: Schema, desired: Schema, owned: Iterable[str]) -> list[Table]:
    """Tables of ``current`` that this owner created (``owned``) and ``desired`` no longer names."""
    renamed_sources = {
        t.renamed_from
        for t in desired.tables
        if t.renamed_from and current.table(t.name) is None and current.table(t.renamed_from)
    }
    names = sorted(set(owned) - set(desired.table_names) - renamed_sources)
    return [t for name in names if (t := current.table(name)) is not None]


def compare_columns(old: Table, new: Table) -> Iterator[Change]:
    """Added, dropped, renamed (``renamed_from``) and altered columns."""
    matched: set[str] = set()
    for col in new.columns:
        existing = old.column(col.name)
        if (
            existing is None
            and col.renamed_from
            and old.column(col.renamed_from)
            and not new.column(col.renamed_from)
        ):
            existing = old.column(col.renamed_from)
            yield Change(RENAME_COLUMN, new.name, col.name, old=col.renamed_from, new=col.name)
        if existing is None:
            yield Change(ADD_COLUMN, new.name, col.name, new=col)
            continue
        matched.add(existing.name)
        yield from compare_column(new.name, existing, col)
    for col in old.columns:
        if col.name not in matched and new.column(col.name) is None:
            yield Change(DROP_COLUMN, new.name, col.name, old=col)


def compare_column(table: str, old: Column, new: Column) -> Iterator[Change]:
    """Type, default and nullability of one column."""
    if old.type != new.type:
        yield Change(ALTER_COLUMN_TYPE, table, new.name, old=old, new=new)
    if old.identity is None and new.identity is None and old.default != new.default:
        if new.default is None:
            yield Change(DROP_DEFAULT, table, new.name, old=old, new=new)
        else:
            yield Change(SET_DEFAULT, table, new.name, old=old, new=new)
    if old.nullable and not new.nullable:
        yield Change(SET_NOT_NULL, table, new.name, old=old, new=new)
    elif not old.nullable and new.nullable:
        yield Change(DROP_NOT_NULL, table, new.name, old=old, new=new)


def _compare_named(
    kind_add: str,
    kind_drop: str,
    old_items: Sequence[T],
    new_items: Sequence[T],
    table: str,
    same: Callable[[T, T], bool] = lambda a, b: a == b,
) -> Iterator[Change]:
    olds = {i.name: i for i in old_items}
    news = {i.name: i for i in new_items}
    for name, item in olds.items():
        if name not in news or not same(item, news[name]):
            yield Change(kind_drop, table, name, old=item)
    for name, item in news.items():
        if name not in olds or not same(olds[name], item):
            yield Change(kind_add, table, name, new=item)


def compare_indexes(old: Table, new: Table) -> Iterator[Change]:
    """Indexes by name; a changed definition is dropped and created again."""
    yield from _compare_named(CREATE_INDEX, DROP_INDEX, old.indexes, new.indexes, new.name)


def compare_uniques(old: Table, new: Table) -> Iterator[Change]:
    yield from _compare_named(ADD_CONSTRAINT, DROP_CONSTRAINT, old.uniques, new.uniques, new.name)


def compare_foreign_keys(old: Table, new: Table) -> Iterator[Change]:
    yield from _compare_named(ADD_CONSTRAINT, DROP_CONSTRAINT, old.foreign_keys, new.foreign_keys, new.name)


def compare_checks(old: Table, new: Table) -> Iterator[Change]:
    yield from _compare_named(ADD_CONSTRAINT, DROP_CONSTRAINT, old.checks, new.checks, new.name)


def compare_primary_key(old: Table, new: Table) -> Iterator[Change]:
    """The primary key: the existing one dropped by its real name (a renamed table keeps its old
    ``<old>_pkey``), the new one named after the desired table."""
    if old.primary_key != new.primary_key:
        if old.primary_key:
            dropped = old.primary_key_name or primary_key_name(old.name)
            yield Change(DROP_CONSTRAINT, new.name, dropped, old=PrimaryKey(dropped, old.primary_key))
        if new.primary_key:
            added = primary_key_name(new.name)
            yield Change(ADD_CONSTRAINT, new.name, added, new=PrimaryKey(added, new.primary_key))


TABLE_COMPARATORS: tuple[Callable[[Table, Table], Iterator[Change]], ...] = (
    compare_columns,
    compare_primary_key,
    compare_indexes,
    compare_uniques,
    compare_foreign_keys,
    compare_checks,
    compare_exclusions,
    compare_generated,
    compare_identity,
    compare_table_extras,
)
