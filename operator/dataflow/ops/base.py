"""The operation kind: one class holds everything DataFlow knows about one kind of change.

A kind says which database facts its grade needs (:meth:`Kind.probe`), grades a change
(:meth:`Kind.assess`), renders its SQL for both strategies with undo and backup
(:meth:`Kind.render`), and answers the planner's questions through flags and small methods.
Nothing outside ``dataflow.ops`` tests a kind's name: it asks the kind (:func:`kind_of`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import asyncpg

from dataflow.operations import Assessment, Change, Risk
from dataflow.safety import Facts
from dataflow.schema import ForeignKey, Table
from dataflow.sqlgen import Options, Rendered


@dataclass(frozen=True)
class Context:
    """What a grade may depend on beyond the change's own facts.

    ``foreign_keys``: every foreign key that points at a table the plan concerns, as ``(table, fk)``.
    ``online``: the change runs with the lock-friendly strategy, which changes the lock it holds,
    not what it does.
    """

    foreign_keys: tuple[tuple[str, ForeignKey], ...] = ()
    online: bool = False


class Kind(ABC):
    """One kind of change. Subclasses set ``name`` and ``order`` and register with :func:`register`.

    ``order``: position in the execution order of one migration (renames first, drops of dependents
    before what they depend on, tables before their columns, constraints after columns); spaced by
    ten so a new kind slots in between without renumbering the others.
    ``destructive``: removes data a backup in ``dataflow_backup`` can keep.
    ``loses_data``: previews list it under data-loss risk whatever the facts say.
    ``reads_table``: the change concerns a table that exists, so its facts (rows, size) are read.
    ``undo_risk``: what undoing it risks, graded like the change the undo is (undoing ADD COLUMN is a
    DROP COLUMN of whatever the column received since); see :meth:`undo_grade`.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    undo_risk: ClassVar[Risk | None] = None  # the grade of this kind's undo; None: the change's own
    destructive: ClassVar[bool] = False
    loses_data: ClassVar[bool] = False
    reads_table: ClassVar[bool] = True

    def needs_row_count(self, change: Change) -> bool:
        """Whether the grade or SQL depends on exact row counts (else the planner's estimate serves)."""
        return False

    def needs_backup(self, change: Change, facts: Facts) -> bool:
        """Whether this change, with these facts, keeps the data it removes (when backups are on)."""
        return self.destructive and facts.rows > 0

    def undo_grade(self, change: Change, assessment: Assessment) -> Risk:
        """The risk of this change's undo (a rollback step), not of the change itself."""
        return assessment.risk if self.undo_risk is None else self.undo_risk

    def schema_wide(self, change: Change, include: set[str]) -> bool:
        """Whether a plan limited to the tables ``include`` keeps this change though it names no table of
        them: a new schema-wide object (type, sequence, function) an included table being created may use,
        touching no table outside them."""
        return False

    def renamed_from(self, change: Change) -> str | None:
        """The table's name in the database before this change, when the change renames it."""
        return None

    def released_tables(self, change: Change) -> tuple[str, ...]:
        """Tables this change takes out of the owner's hands (dropped, or renamed away)."""
        return ()

    def added_default(self, change: Change) -> str | None:
        """The default expression this change gives existing rows; its volatility picks the strategy."""
        return None

    async def probe(
        self, conn: asyncpg.Connection, change: Change, schema: str, db_table: str, facts: Facts
    ) -> Facts:
        """``facts`` completed with what this kind's grade needs; ``db_table`` is the table's current name."""
        return facts

    @abstractmethod
    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        """The risk of ``change`` given the facts; its reason names the facts."""

    @abstractmethod
    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        """Steps, rollback SQL and backup; ``table`` is the desired table (column names vs expressions)."""


_REGISTRY: dict[str, Kind] = {}


def register(cls: type[Kind]) -> type[Kind]:
    """Class decorator: make ``cls`` the kind named ``cls.name``; a name registers once."""
    if cls.name in _REGISTRY:
        raise ValueError(f"operation kind {cls.name} is already registered")
    if any(k.order == cls.order for k in _REGISTRY.values()):
        raise ValueError(f"operation kind {cls.name}: another kind already runs at position {cls.order}")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    """Forget the kind ``name`` (tests that register a toy kind clean up with this)."""
    _REGISTRY.pop(name, None)


def kind_of(name: str) -> Kind:
    """The registered kind called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown change kind {name}") from None


def all_kinds() -> tuple[Kind, ...]:
    """Every registered kind, in execution order."""
    return tuple(sorted(_REGISTRY.values(), key=lambda k: k.order))


def kind_names() -> tuple[str, ...]:
    """The names of every registered kind, in execution order."""
    return tuple(k.name for k in all_kinds())


def execution_order() -> dict[str, int]:
    """Kind name → its rank in one migration (0 runs first)."""
    return {k.name: i for i, k in enumerate(all_kinds())}


def sort_changes(changes: Iterable[Change]) -> list[Change]:
    """``changes`` in execution order (stable within one kind)."""
    return sorted(changes, key=lambda c: kind_of(c.kind).order)
