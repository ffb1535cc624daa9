"""Diff of what a table declares beyond its shape: comments, collations, row security and policies.

Each is compared only where the desired table declares it: a comment of None (no docstring, no
``Field(comment=...)``) leaves the database's comment alone, and a table whose ``row_level_security``
is None leaves row security and its policies alone. A declared one is the complete set: a policy the
table does not list is dropped. An empty comment and no comment are the same.
"""

from __future__ import annotations

from collections.abc import Iterator

from dataflow.operations import Change
from dataflow.ops.alter_column_collation import ALTER_COLUMN_COLLATION
from dataflow.ops.alter_policy import ALTER_POLICY
from dataflow.ops.create_policy import CREATE_POLICY
from dataflow.ops.drop_policy import DROP_POLICY
from dataflow.ops.set_comment import SET_COMMENT
from dataflow.ops.set_row_security import SET_ROW_SECURITY
from dataflow.policy_sql import alterable
from dataflow.schema import Column, Table


def compare_table_extras(old: Table | None, new: Table) -> Iterator[Change]:
    """Changes for ``new`` against ``old`` (None: the table is created by this plan)."""
    if new.comment is not None and (new.comment or None) != (old.comment if old else None):
        yield Change(SET_COMMENT, new.name, None, old=old.comment if old else None, new=new.comment or None)
    for col in new.columns:
        existing = _existing(old, col)
        if col.comment is not None and (col.comment or None) != (existing.comment if existing else None):
            yield Change(
                SET_COMMENT,
                new.name,
                col.name,
                old=existing.comment if existing else None,
                new=col.comment or None,
            )
        # a type change resets the collation to the new type's default: a declared one is set again
        if existing is not None and (
            existing.collation != col.collation or (existing.type != col.type and col.collation)
        ):
            yield Change(ALTER_COLUMN_COLLATION, new.name, col.name, old=existing, new=col)
    if new.row_level_security is None:
        return
    if new.row_level_security != bool(old and old.row_level_security):
        yield Change(
            SET_ROW_SECURITY,
            new.name,
            None,
            old=bool(old and old.row_level_security),
            new=new.row_level_security,
        )
    olds = {p.name: p for p in (old.policies if old else ())}
    news = {p.name: p for p in new.policies}
    for name, p in olds.items():
        if name not in news or (news[name] != p and not alterable(p, news[name])):
            yield Change(DROP_POLICY, new.name, name, old=p)
    for name, p in news.items():
        before = olds.get(name)
        if before is None or (before != p and not alterable(before, p)):
            yield Change(CREATE_POLICY, new.name, name, new=p)
        elif before != p:
            yield Change(ALTER_POLICY, new.name, name, old=before, new=p)


def _existing(old: Table | None, col: Column) -> Column | None:
    if old is None:
        return None
    found = old.column(col.name)
    if found is None and col.renamed_from:
        found = old.column(col.renamed_from)
    return found
