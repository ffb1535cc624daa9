"""The operator's steady state (issue 9, item 5): an in-sync check is one statement on a pooled
session, and an unchanged resource is parsed once. Through ``reconcile_resource``, the operator's
own code path, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dataflow import fingerprint
from dataflow.k8s.manifest_cache import MANIFESTS
from dataflow.k8s.reconciler import reconcile_resource
from dataflow.manifest import APPROVAL_ANNOTATION
from dataflow.pool import POOLS


def body(name: str, schema: str = "public", generation: int = 1, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {
            "name": name,
            "namespace": "prod",
            "uid": f"uid-{name}",
            "generation": generation,
            "annotations": annotations,
        },
        "spec": {
            "database": {"secretRef": {"name": "db", "key": "dsn"}, "schema": schema},
            "policy": {"maxRiskLevel": "MEDIUM"},
            "tables": [
                {
                    "name": f"{name}_item",
                    "primaryKey": ["id"],
                    "columns": [
                        {"name": "id", "type": "BIGINT", "nullable": False},
                        {"name": "label", "type": "TEXT"},
                    ],
                }
            ],
        },
    }


@pytest.fixture
async def pools() -> AsyncIterator[None]:
    """One pooled session per database, so every reconcile below runs on the session the test watches."""
    POOLS.configure(1)
    try:
        yield
    finally:
        await POOLS.close()
        POOLS.configure(5)


async def reconciled(doc: dict[str, Any], dsn: str) -> dict[str, Any]:
    """One reconcile of ``doc``; its status is kept in ``doc``, as the API server would (the next
    reconcile of an applied spec is a drift check)."""

    async def secret(namespace: str, name: str, key: str) -> str:
        return dsn

    async def no_peer(namespace: str, name: str) -> None:
        return None

    async def no_api_write(*_: Any, **__: Any) -> None:
        return None

    reaction = await reconcile_resource(
        doc, read_secret=secret, read_peer=no_peer, write_plan=no_api_write, patch_status=no_api_write
    )
    doc["status"] = {**doc.get("status", {}), **reaction.status}
    return reaction.status


async def test_an_in_sync_check_is_one_statement_on_the_pooled_session(pools: None, dsn: str) -> None:
    doc = body("shop")
    assert (await reconciled(doc, dsn))["phase"] == "Applied"
    assert (await reconciled(doc, dsn))["phase"] == "InSync"

    statements: list[str] = []
    pool = await POOLS.get(dsn)
    async with pool.session("public") as session:  # the one pooled session: watch what it is sent
        session.add_query_logger(lambda record: statements.append(record.query))
    statements.clear()
    for _ in range(3):
        st = await reconciled(doc, dsn)
        assert st["phase"] == "InSync"
    await asyncio.sleep(0.05)  # asyncpg calls query loggers soon after, not during, the query
    assert len(statements) == 3, statements
    assert all("AS catalog" in sql for sql in statements), statements  # the fingerprint query

    fingerprint.IN_SYNC.clear()  # a restarted operator: the ledger's record answers, still one statement
    MANIFESTS.clear()
    statements.clear()
    assert (await reconciled(doc, dsn))["phase"] == "InSync"
    await asyncio.sleep(0.05)
    assert len(statements) == 1, statements


async def test_schemas_taking_turns_keep_sessions_of_their_own(pools: None, dsn: str) -> None:
    """Two schemas, two pooled sessions: checks that alternate between them never re-pin a session."""
    POOLS.configure(2)
    docs = [body("a", "sales"), body("b", "stock")]
    for doc in docs:
        assert (await reconciled(doc, dsn))["phase"] == "Applied"
    statements: list[str] = []
    pool = await POOLS.get(dsn)
    async with pool.session("sales") as one, pool.session("stock") as other:
        for session in (one, other):
            session.add_query_logger(lambda record: statements.append(record.query))
    assert pool.size == 2
    for _ in range(3):
        for doc in docs:
            assert (await reconciled(doc, dsn))["phase"] == "InSync"
    await asyncio.sleep(0.05)
    assert len(statements) == 6 and all("AS catalog" in sql for sql in statements), statements


async def test_schemas_sharing_a_session_are_each_pinned(pools: None, dsn: str) -> None:
    """Resources of two schemas on one database, one pooled session: each applies into its own schema."""
    for name, schema in (("a", "sales"), ("b", "stock"), ("c", "sales")):
        assert (await reconciled(body(name, schema), dsn))["phase"] == "Applied", name
    pool = await POOLS.get(dsn)
    assert pool.size == 1
    async with pool.session("stock") as session:
        assert await session.fetchval("SHOW search_path") == '"stock"'
        rows = await session.fetch(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            " WHERE table_name LIKE '%\\_item' ORDER BY 1"
        )
    assert [r[0] for r in rows] == ["sales.a_item", "sales.c_item", "stock.b_item"]
    async with pool.session("sales") as session:
        assert await session.fetchval("SHOW search_path") == '"sales"'


def test_an_unchanged_resource_is_parsed_once() -> None:
    MANIFESTS.clear()
    doc = body("shop")
    first = MANIFESTS.parsed(doc)
    assert MANIFESTS.parsed(copy.deepcopy(doc)) is first

    approved = copy.deepcopy(doc)
    approved["metadata"]["annotations"][APPROVAL_ANNOTATION] = "abc123"  # no new generation
    assert MANIFESTS.parsed(approved).options.approved_plan == "abc123"
    assert first.options.approved_plan is None

    changed = copy.deepcopy(doc)
    changed["metadata"]["generation"] = 2
    changed["spec"]["tables"][0]["columns"].append({"name": "price", "type": "NUMERIC"})
    assert "price" in [c.name for c in MANIFESTS.parsed(changed).schema.tables[0].columns]

    anonymous = copy.deepcopy(changed)  # not from an API server: keyed by its spec
    del anonymous["metadata"]["uid"], anonymous["metadata"]["generation"]
    assert MANIFESTS.parsed(anonymous) is not MANIFESTS.parsed(changed)
    anonymous["spec"]["tables"][0]["columns"].pop()
    assert "price" not in [c.name for c in MANIFESTS.parsed(anonymous).schema.tables[0].columns]
