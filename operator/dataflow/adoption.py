"""Adoption without surprises: what the models do not declare on a table being adopted is kept.

A plan *adopts* a table when the table exists and this owner does not hold it yet (the ledger's
ownership rows). Objects on it that the models do not declare (columns, indexes, unique, check,
foreign-key and exclusion constraints, triggers, policies) were put there by someone else, usually a
DBA: dropping them would be a surprise (and, for a column, lose data). Unless the policy says the models are
complete (``prune``), such drops are taken out of the plan and reported as *kept*.

The kept objects are recorded with the ownership row when the table is claimed (by an apply or a
baseline), so they stay kept afterwards. Everything else is as before adoption: declared objects
are compared and changed, and objects added later to an owned table are dropped as drift.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dataflow.operations import Change
from dataflow.ops.drop_column import DROP_COLUMN
from dataflow.ops.drop_constraint import DROP_CONSTRAINT
from dataflow.ops.drop_index import DROP_INDEX
from dataflow.ops.drop_policy import DROP_POLICY
from dataflow.ops.drop_trigger import DROP_TRIGGER
from dataflow.schema import (
    Check,
    Column,
    Exclusion,
    ForeignKey,
    Index,
    Policy,
    Schema,
    Table,
    Trigger,
    Unique,
)

# what a kept object is called, by the schema type the dropping change holds
KEPT_KINDS: dict[type, str] = {
    Column: "column",
    Index: "index",
    Unique: "unique constraint",
    Check: "check constraint",
    ForeignKey: "foreign key",
    Exclusion: "exclusion constraint",
    Trigger: "trigger",
    Policy: "policy",
}
DROP_KINDS = frozenset({DROP_COLUMN, DROP_INDEX, DROP_CONSTRAINT, DROP_TRIGGER, DROP_POLICY})


@dataclass(frozen=True, order=True)
class KeptObject:
    """An object of ``table`` the models do not declare, left alone."""

    table: str
    kind: str  # a value of KEPT_KINDS
    name: str

    def describe(self) -> str:
        return f"{self.kind} {self.name} on {self.table}"

    def to_dict(self) -> dict[str, str]:
        return {"table": self.table, "kind": self.kind, "name": self.name}


def declared_names(table: Table) -> set[str]:
    """The names of everything ``table`` declares: a drop of one of them is a declared change."""
    parts: Iterable[Any] = (
        *table.columns,
        *table.indexes,
        *table.uniques,
        *table.foreign_keys,
        *table.checks,
        *table.exclusions,
        *table.triggers,
        *table.policies,
    )
    return {p.name for p in parts}


def undeclared(change: Change, desired: Schema) -> KeptObject | None:
    """The object ``change`` would drop, when the models do not declare it (else None)."""
    kind = KEPT_KINDS.get(type(change.old))
    if kind is None or change.kind not in DROP_KINDS or change.subject is None:
        return None
    table = desired.table(change.table)
    if table is None or change.subject in declared_names(table):
        return None
    return KeptObject(change.table, kind, change.subject)


def keep_undeclared(
    changes: list[Change],
    desired: Schema,
    adopting: Iterable[str],
    recorded: Iterable[KeptObject],
    prune: bool,
) -> tuple[list[Change], list[KeptObject]]:
    """``changes`` without the drops of undeclared objects on ``adopting`` tables (unless ``prune``) or
    ``recorded`` as kept at an earlier adoption; and the objects so kept."""
    adopting, recorded = set(adopting), set(recorded)
    out: list[Change] = []
    kept: list[KeptObject] = []
    for change in changes:
        obj = undeclared(change, desired)
        if obj is not None and ((change.table in adopting and not prune) or obj in recorded):
            kept.append(obj)
            continue
        out.append(change)
    return out, sorted(set(kept))


def kept_by_table(kept: Iterable[KeptObject], tables: Iterable[str]) -> dict[str, list[KeptObject]]:
    """``kept`` grouped by table, with an (empty) entry for each of ``tables``."""
    out: dict[str, list[KeptObject]] = {t: [] for t in tables}
    for obj in kept:
        if obj.table in out:
            out[obj.table].append(obj)
    return out


def to_json(objects: Iterable[KeptObject]) -> str:
    """The ownership row's ``kept`` column."""
    return json.dumps([{"kind": o.kind, "name": o.name} for o in objects])


def from_rows(rows: Mapping[str, Any]) -> set[KeptObject]:
    """table → the ``kept`` JSON of its ownership row (None: nothing recorded)."""
    out: set[KeptObject] = set()
    for table, raw in rows.items():
        items = json.loads(raw) if isinstance(raw, str) else raw
        for item in items or ():  # SQL NULL, or JSON null: nothing recorded
            out.add(KeptObject(table, str(item["kind"]), str(item["name"])))
    return out


def kept_line(kept: Iterable[KeptObject]) -> str:
    """For people: what the plan keeps although the models do not declare it."""
    return "Kept (not in the models): " + ", ".join(o.describe() for o in kept)
