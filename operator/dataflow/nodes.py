"""Kailash SDK nodes for every model (the optional extra ``kailash``), run by its WorkflowBuilder and LocalRuntime.

``@db.model class User`` registers ``UserCreateNode``, ``UserReadNode``, ``UserUpdateNode``,
``UserDeleteNode`` and ``UserListNode`` in the SDK's NodeRegistry, plus ``MigrationCheckNode`` and
``AutoMigrationNode`` for the DataFlow instance that registered a model last. They are the SDK's
own ``AsyncNode``; their parameters are read from the model when a node is built, so a field a
migration added is accepted and returned without registering anything again. Every node takes an
optional ``input``: a connection's target that orders it after another node (its value is unused).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kailash.nodes.base import NodeParameter, NodeRegistry
from kailash.nodes.base_async import AsyncNode

from dataflow import records
from dataflow.errors import DataFlowError
from dataflow.models import model_to_table
from dataflow.schema import Table

if TYPE_CHECKING:
    from dataflow.dataflow import DataFlow

ACTIONS = ("Create", "Read", "Update", "Delete", "List")


def _table(db: DataFlow, model: str) -> Table:
    """The table ``model`` describes now (a model registered again after a change gives its new fields)."""
    cls = db.models.get(model)
    if cls is None:
        raise DataFlowError(f"model {model} is not registered")
    return model_to_table(cls, vars(sys.modules.get(cls.__module__, sys)))


def _param(
    name: str, kind: Any = Any, required: bool = False, default: Any = None, doc: str = ""
) -> NodeParameter:
    return NodeParameter(name=name, type=kind, required=required, default=default, description=doc)


class _ModelNode(AsyncNode):
    """A node bound to one model of one DataFlow instance (set on the generated subclass)."""

    db: DataFlow
    model: str

    def table(self) -> Table:
        return _table(self.db, self.model)

    def field_params(self, required_key: bool) -> dict[str, NodeParameter]:
        table = self.table()
        params = {name: _param(name, doc=f"{self.model}.{name}") for name in records.writable(table)}
        params["input"] = _param("input", doc="ordering only: a connection's target, value unused")
        if required_key:
            key = records.key_column(table)
            params[key] = _param(key, required=True, doc=f"primary key of {self.model}")
        return params

    def key_params(self) -> dict[str, NodeParameter]:
        """The primary key alone (read, delete)."""
        key = records.key_column(self.table())
        return {key: _param(key, required=True), "input": _param("input")}

    def keyed(self, kwargs: dict[str, Any]) -> tuple[Table, Any]:
        """The table and the primary-key value the caller passed."""
        table = self.table()
        return table, kwargs[records.key_column(table)]

    def given(self, kwargs: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """The field values the caller passed (not ``input``, not ``skip``)."""
        names = set(records.writable(self.table())) - set(skip)
        return {k: v for k, v in kwargs.items() if k in names}


class _Create(_ModelNode):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return self.field_params(required_key=False)

    async def async_run(self, **kwargs: Any) -> dict[str, Any]:
        async with self.db.connection() as conn:
            return await records.create(conn, self.db.schema_name, self.table(), self.given(kwargs))


class _Read(_ModelNode):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return self.key_params()

    async def async_run(self, **kwargs: Any) -> dict[str, Any]:
        table, key = self.keyed(kwargs)
        async with self.db.connection() as conn:
            row = await records.read(conn, self.db.schema_name, table, key)
        if row is None:
            raise DataFlowError(f"{self.model} {key!r} not found")
        return row


class _Update(_ModelNode):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return self.field_params(required_key=True)

    async def async_run(self, **kwargs: Any) -> dict[str, Any]:
        table = self.table()
        key_name = records.key_column(table)
        values = self.given(kwargs, skip=(key_name,))
        async with self.db.connection() as conn:
            row = await records.update(conn, self.db.schema_name, table, kwargs[key_name], values)
        if row is None:
            raise DataFlowError(f"{self.model} {kwargs[key_name]!r} not found")
        return row


class _Delete(_ModelNode):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return self.key_params()

    async def async_run(self, **kwargs: Any) -> dict[str, Any]:
        table, key = self.keyed(kwargs)
        async with self.db.connection() as conn:
            deleted = await records.delete(conn, self.db.schema_name, table, key)
        return {"deleted": deleted, records.key_column(table): key}


class _List(_ModelNode):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "filter": _param("filter", dict, doc='Mongo-style: {"phone": {"$exists": True}}'),
            "order_by": _param("order_by", list, doc='field names, "-name" for descending'),
            "limit": _param("limit", int, default=100),
            "offset": _param("offset", int, default=0),
            "input": _param("input"),
        }

    async def async_run(self, **kwargs: Any) -> dict[str, Any]:
        limit, offset = kwargs.get("limit", 100), kwargs.get("offset", 0)
        async with self.db.connection() as conn:
            rows = await records.list_rows(
                conn,
                self.db.schema_name,
                self.table(),
                kwargs.get("filter"),
                kwargs.get("order_by"),
                limit,
                offset,
            )
        return {"records": rows, "count": len(rows), "limit": limit, "offset": offset}


class _MigrationCheck(AsyncNode):
    """Whether the models (``models``: class names, default all) have changes waiting, and which."""

    db: DataFlow

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"models": _param("models", list), "input": _param("input")}

    async def async_run(self, **kwargs: Any) -> dict[str, Any]:
        names = kwargs.get("models") or list(self.db.models)
        unknown = [n for n in names if n not in self.db.models]
        if unknown:
            raise DataFlowError(f"MigrationCheckNode: unknown model(s) {', '.join(unknown)}")
        tables = {_table(self.db, n).name for n in names}
        everyone = {_table(self.db, n).name for n in self.db.models}
        pending = [  # the models' changes, and those of no model's table (an extension they need)
            {"table": op.table, "operation": op.kind, "details": op.details, "risk": op.risk.name}
            for m in await self.db.get_pending_migrations()
            for op in m.operations
            if op.table in tables or op.table not in everyone
        ]
        return {"migrations_needed": bool(pending), "pending": pending, "tables": sorted(tables)}


class _AutoMigration(AsyncNode):
    """``db.auto_migrate`` up to ``safety_level``; without ``auto_confirm`` a person confirms at the prompt.

    A migration that is not applied (declined, refused, failed) returns ``success=False`` with an
    ``error``: the SDK then stops the workflow, so business logic connected after it does not run.
    """

    db: DataFlow

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "auto_confirm": _param("auto_confirm", bool, default=False),
            "safety_level": _param("safety_level", str, default="MEDIUM"),
            "dry_run": _param("dry_run", bool, default=False),
            "input": _param("input"),
        }

    async def async_run(self, **kwargs: Any) -> dict[str, Any]:
        success, migrations = await self.db.auto_migrate(
            auto_confirm=bool(kwargs.get("auto_confirm", False)),
            max_risk_level=kwargs.get("safety_level", "MEDIUM"),
            dry_run=bool(kwargs.get("dry_run", False)),
        )
        result = self.db.last_result
        outcome, reason = (result.outcome.value, result.reason) if result else ("", "")
        out = {
            "success": success,
            "outcome": outcome,
            "reason": reason,
            "migrations": [m.version for m in migrations],
        }
        if not success:  # the SDK stops the workflow on success=False and reports ``error``
            out["error"] = f"{outcome}: {reason}"
        return out


_KINDS: dict[str, type[_ModelNode]] = {
    "Create": _Create,
    "Read": _Read,
    "Update": _Update,
    "Delete": _Delete,
    "List": _List,
}


def _bound(base: type, name: str, **attrs: Any) -> type:
    return type(name, (base,), {"__doc__": base.__doc__, **attrs})


def register_model(db: DataFlow, model: str) -> list[str]:
    """Register the five nodes of ``model`` and the two migration nodes for ``db``; the names registered."""
    made: list[tuple[str, type]] = [
        (f"{model}{action}Node", _bound(_KINDS[action], f"{model}{action}Node", db=db, model=model))
        for action in ACTIONS
    ]
    made += [
        ("MigrationCheckNode", _bound(_MigrationCheck, "MigrationCheckNode", db=db)),
        ("AutoMigrationNode", _bound(_AutoMigration, "AutoMigrationNode", db=db)),
    ]
    register: Callable[..., None] = NodeRegistry.register
    for name, cls in made:
        register(cls, alias=name, allow_override=True)
    return [name for name, _ in made]
