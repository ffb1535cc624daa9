"""Issue 10, generated nodes: every model gets Create/Read/Update/Delete/List nodes of the Kailash SDK.

The blocks of the docs' "Integration with DataFlow Features" run as written, with the SDK's own
WorkflowBuilder and LocalRuntime (the optional extra ``kailash``, installed by ``make test``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from dataflow import Field
from dataflow.errors import SchemaError
from dataflow.filters import Condition
from dataflow.schema import Column, Table
from tests.helpers import dataflow

pytest.importorskip("kailash")

from kailash.nodes.base import NodeRegistry  # noqa: E402
from kailash.runtime.local import LocalRuntime  # noqa: E402
from kailash.workflow.builder import WorkflowBuilder  # noqa: E402


def run(workflow: WorkflowBuilder) -> dict[str, Any]:
    with LocalRuntime() as runtime:
        results, run_id = runtime.execute(workflow.build())
    assert run_id
    return results


async def user_db(dsn: str):  # type: ignore[no-untyped-def]
    db = dataflow(dsn)

    @db.model
    class User:
        name: str
        email: str = Field(max_length=255, unique=True)

    assert await db.initialize()
    return db


def add_phone(db) -> None:  # type: ignore[no-untyped-def]
    @db.model
    class User:
        name: str
        email: str = Field(max_length=255, unique=True)
        phone: str = None


async def test_every_model_registers_its_nodes_on_the_sdk_node_base(dsn: str) -> None:
    from kailash.nodes.base import Node

    db = await user_db(dsn)
    for name in ("UserCreateNode", "UserReadNode", "UserUpdateNode", "UserDeleteNode", "UserListNode"):
        assert issubclass(NodeRegistry.get(name), Node)
        assert NodeRegistry.get(name).db is db
    assert issubclass(NodeRegistry.get("MigrationCheckNode"), Node)
    assert issubclass(NodeRegistry.get("AutoMigrationNode"), Node)


async def test_the_docs_workflow_migrates_then_creates_with_the_new_field(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = await user_db(dsn)
    add_phone(db)  # the model gains 'phone'; the database does not have it yet

    # Migration-aware workflows (the docs' block, with auto_confirm: nobody is at a terminal here)
    workflow = WorkflowBuilder()
    workflow.add_node("MigrationCheckNode", "check", {"models": ["User"]})
    workflow.add_node("AutoMigrationNode", "migrate", {"auto_confirm": True, "safety_level": "MEDIUM"})
    workflow.add_node(
        "UserCreateNode",
        "create_user",
        {"name": "Alice", "email": "alice@example.com", "phone": "+1-555-0123"},
    )
    workflow.add_connection("check", "migrations_needed", "migrate", "input")
    workflow.add_connection("migrate", "success", "create_user", "input")
    results = run(workflow)

    assert results["check"]["migrations_needed"] is True
    assert [p["operation"] for p in results["check"]["pending"]] == ["ADD_COLUMN"]
    assert results["migrate"]["success"] is True and results["migrate"]["outcome"] == "Applied"
    created = results["create_user"]
    assert created["phone"] == "+1-555-0123" and created["name"] == "Alice" and isinstance(created["id"], int)
    assert await conn.fetchval('SELECT phone FROM "user" WHERE id = $1', created["id"]) == "+1-555-0123"


async def test_auto_generated_nodes_accept_and_return_the_new_field(dsn: str) -> None:
    db = await user_db(dsn)
    add_phone(db)
    assert (await db.auto_migrate(auto_confirm=True))[0]

    workflow = WorkflowBuilder()
    workflow.add_node(
        "UserCreateNode", "create", {"name": "Alice", "email": "alice@example.com", "phone": "+1-555-0123"}
    )
    workflow.add_node("UserCreateNode", "create_bob", {"name": "Bob", "email": "bob@example.com"})
    workflow.add_node("UserListNode", "search", {"filter": {"phone": {"$exists": True}}})
    workflow.add_connection("create", "id", "search", "input")
    workflow.add_connection("create_bob", "id", "search", "input")
    results = run(workflow)
    alice = results["create"]["id"]
    assert [r["name"] for r in results["search"]["records"]] == ["Alice"]
    assert results["search"]["count"] == 1

    workflow = WorkflowBuilder()
    workflow.add_node("UserUpdateNode", "update", {"id": alice, "phone": "+1-555-9999"})
    workflow.add_node("UserReadNode", "read", {"id": alice})
    workflow.add_connection("update", "id", "read", "input")
    workflow.add_node("UserListNode", "nobody", {"filter": {"phone": {"$exists": False}}})
    results = run(workflow)
    assert results["update"]["phone"] == "+1-555-9999"
    assert results["read"] == {
        "id": alice,
        "name": "Alice",
        "email": "alice@example.com",
        "phone": "+1-555-9999",
    }
    assert [r["name"] for r in results["nobody"]["records"]] == ["Bob"]

    workflow = WorkflowBuilder()
    workflow.add_node("UserDeleteNode", "delete", {"id": alice})
    workflow.add_node("UserListNode", "all", {})
    workflow.add_connection("delete", "deleted", "all", "input")
    results = run(workflow)
    assert results["delete"] == {"deleted": True, "id": alice}
    assert [r["name"] for r in results["all"]["records"]] == ["Bob"]


async def test_auto_migration_node_without_auto_confirm_asks_and_nobody_answers(
    dsn: str, conn: asyncpg.Connection
) -> None:
    """Nobody at a terminal answers no: the SDK stops the workflow there, and the create never runs."""
    from kailash.sdk_exceptions import RuntimeExecutionError

    db = await user_db(dsn)
    add_phone(db)
    workflow = WorkflowBuilder()
    workflow.add_node("AutoMigrationNode", "migrate", {"auto_confirm": False, "safety_level": "MEDIUM"})
    workflow.add_node(
        "UserCreateNode", "create_user", {"name": "Alice", "email": "a@example.com", "phone": "1"}
    )
    workflow.add_connection("migrate", "success", "create_user", "input")
    with pytest.raises(RuntimeExecutionError, match="Declined: not confirmed"):
        run(workflow)
    assert await conn.fetchval('SELECT count(*) FROM "user"') == 0
    [pending] = await db.get_pending_migrations()
    assert [op.kind for op in pending.operations] == ["ADD_COLUMN"]

    workflow = WorkflowBuilder()
    workflow.add_node("MigrationCheckNode", "check", {})
    assert run(workflow)["check"]["migrations_needed"] is True


async def test_list_filters_cover_the_closed_operator_list(dsn: str) -> None:
    db = dataflow(dsn)

    @db.model
    class Product:
        __dataflow__ = {"extensions": ["citext"]}
        name: str = Field(db_type="citext")
        price: float
        labels: list = None
        stock: int = None

    assert await db.initialize()
    workflow = WorkflowBuilder()
    for i, (name, price, stock) in enumerate([("Apple", 1.5, 10), ("banana", 0.5, None), ("Cherry", 4.0, 0)]):
        workflow.add_node(
            "ProductCreateNode", f"p{i}", {"name": name, "price": price, "stock": stock, "labels": [i]}
        )
    run(workflow)

    cases = {
        "eq_citext": ({"name": "APPLE"}, ["Apple"]),
        "gt": ({"price": {"$gt": 1}}, ["Apple", "Cherry"]),
        "range": ({"price": {"$gte": 0.5, "$lt": 4}}, ["Apple", "banana"]),
        "in": ({"name": {"$in": ["cherry", "BANANA"]}}, ["banana", "Cherry"]),
        "nin": ({"stock": {"$nin": [0]}}, ["Apple", "banana"]),
        "ne": ({"stock": {"$ne": 10}}, ["banana", "Cherry"]),
        "null": ({"stock": None}, ["banana"]),
        "like": ({"name": {"$ilike": "%an%"}}, ["banana"]),
        "or": ({"$or": [{"stock": 0}, {"price": {"$lte": 0.5}}]}, ["banana", "Cherry"]),
        "not": ({"$not": {"price": {"$gt": 1}}}, ["banana"]),
        "injection": ({"name": "x' OR '1'='1"}, []),
    }
    workflow = WorkflowBuilder()
    for key, (filter, _) in cases.items():
        workflow.add_node("ProductListNode", key, {"filter": filter, "order_by": ["name"]})
    results = run(workflow)
    assert {k: [r["name"] for r in results[k]["records"]] for k in cases} == {
        k: v for k, (_, v) in cases.items()
    }
    assert results["gt"]["records"][0]["labels"] == [0]


def test_filters_name_what_they_refuse_and_bind_every_value() -> None:
    table = Table(
        "t", (Column("id", "BIGINT", False, identity="BY DEFAULT"), Column("phone", "TEXT")), ("id",)
    )
    condition = Condition(table)
    assert condition.where({"phone": {"$exists": True}, "id": {"$in": [1, 2]}}) == (
        '"phone" IS NOT NULL AND coalesce("id" = ANY($1::text[]::BIGINT[]), false)'
    )
    assert condition.params == [["1", "2"]]
    for bad, field in (
        ({"nope": 1}, "filter.nope"),
        ({"phone": {"$where": "1"}}, "filter.phone"),
        ({"phone": {}}, "filter.phone"),
        ({"$or": []}, r"filter.\$or"),
        ({"id": {"$in": 3}}, r"filter.id.\$in"),
    ):
        with pytest.raises(SchemaError, match=field):
            Condition(table).where(bad)
