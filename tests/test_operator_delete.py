"""Deleting a DataFlowSchema (spec.deletionPolicy) end to end: real Kopf, real kubectl, real PostgreSQL.

The tables and their data stay; under Retain (the default) the claim on them is released, so a
successor resource that was Blocked by it takes them over; an unreachable database holds the
deletion (the finalizer retries) until deletionPolicy Orphan lets it go.
"""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml

from tests import test_operator as base
from tests.kube.emulator import ApiServer

NS, RESOURCE, PATH, MERGE = base.NS, base.RESOURCE, base.PATH, base.MERGE
api, http, secret_dsn = base.api, base.http, base.secret_dsn


@pytest.fixture
async def operator(api: ApiServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATAFLOW_METRICS_PORT", "0")  # tests/test_metrics.py serves metrics
    async for runner in base.operator.__wrapped__(api, monkeypatch):  # type: ignore[attr-defined]
        yield runner


def events(api: ApiServer, reason: str) -> list[dict]:
    return [e for e in api.list_objects("v1/events", NS) if e.get("reason") == reason]


async def owners(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT table_name, owner FROM dataflow_owned_tables")
        return {r["table_name"]: r["owner"] for r in rows}
    finally:
        await conn.close()


async def test_delete_keeps_tables_and_releases_them_to_a_successor(
    api: ApiServer, operator: None, dsn: str, secret_dsn: str, tmp_path: Path
) -> None:
    base.make_secret(api, "shop-db", secret_dsn)
    first = tmp_path / "shop.yaml"
    first.write_text(yaml.safe_dump(base.resource("shop", "shop-db", [base.user_table()])))
    await base.kubectl(api, "apply", "--validate=false", "-f", str(first))
    await base.phase(api, "shop", "Applied")
    assert api.get(RESOURCE, NS, "shop")["spec"]["deletionPolicy"] == "Retain"  # the CRD's default
    conn = await asyncpg.connect(dsn)
    await conn.execute("""INSERT INTO "user" (email) VALUES ('a@example.com')""")
    await conn.close()
    assert await owners(dsn) == {"user": f"k8s:{NS}/shop"}

    # a successor for the same tables is blocked while the first one holds them
    successor = base.resource("shop-v2", "shop-db", [base.user_table()])
    successor["spec"]["policy"]["driftCheckInterval"] = "1s"
    second = tmp_path / "shop-v2.yaml"
    second.write_text(yaml.safe_dump(successor))
    await base.kubectl(api, "apply", "--validate=false", "-f", str(second))
    await base.phase(api, "shop-v2", "Blocked")

    out = await base.kubectl(api, "delete", "dataflowschema", "shop", "-n", NS, "--timeout=30s")
    assert "deleted" in out
    assert api.get(RESOURCE, NS, "shop") is None
    (released,) = await base.posted(api, "Released")
    assert (
        released["type"] == "Normal" and "1 table(s)" in released["message"] and "user" in released["message"]
    )

    st = await base.phase(api, "shop-v2", "InSync", timeout=30)
    assert st["appliedSchemaHash"] == st["schemaHash"]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval('SELECT email FROM "user"') == "a@example.com"  # tables and data kept
    finally:
        await conn.close()
    assert f"k8s:{NS}/shop" not in (await owners(dsn)).values()


async def test_unreachable_database_holds_the_deletion_until_orphan(
    api: ApiServer, operator: None, http: aiohttp.ClientSession, dsn: str, secret_dsn: str
) -> None:
    base.make_secret(api, "shop-db", secret_dsn)
    await base.send(http, "POST", PATH, base.resource("shop", "shop-db", [base.user_table()]))
    await base.phase(api, "shop", "Applied")
    # the database goes away: the Secret now points at a closed port (with a password that must not leak)
    gone = f"postgresql://app:{base.PASSWORD}@127.0.0.1:1/shop"
    await base.send(
        http,
        "PATCH",
        f"/api/v1/namespaces/{NS}/secrets/shop-db",
        {"data": {"dsn": base64.b64encode(gone.encode()).decode()}},
        headers=MERGE,
    )
    await base.kubectl(api, "delete", "dataflowschema", "shop", "-n", NS, "--wait=false")
    await base.eventually(lambda: len(events(api, "ReleasePending")) >= 2, what="the finalizer retrying")
    held = api.get(RESOURCE, NS, "shop")
    assert held is not None and held["metadata"].get("deletionTimestamp") and held["metadata"]["finalizers"]
    pending = events(api, "ReleasePending")[-1]
    assert (
        pending["type"] == "Warning"
        and "deletionPolicy" in pending["message"]
        and "Orphan" in pending["message"]
    )
    assert all(base.PASSWORD not in e.get("message", "") for e in api.list_objects("v1/events", NS))

    # the escape hatch the event names
    await base.kubectl(
        api,
        "patch",
        "dataflowschema",
        "shop",
        "-n",
        NS,
        "--type=merge",
        "-p",
        '{"spec":{"deletionPolicy":"Orphan"}}',
    )
    await base.eventually(lambda: api.get(RESOURCE, NS, "shop") is None, what="deletion finishing")
    assert await base.posted(api, "Orphaned") and not events(api, "Released")
    assert await owners(dsn) == {"user": f"k8s:{NS}/shop"}  # Orphan leaves the claim as it was
