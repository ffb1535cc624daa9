"""Prometheus metrics end to end: real Kopf against the emulated API server, real PostgreSQL,
/metrics scraped over HTTP as Prometheus would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataflow.k8s import metrics
from tests import test_operator as base
from tests.kube.emulator import ApiServer
from tests.test_ha import free_port

NS, PATH, MERGE = base.NS, base.PATH, base.MERGE
api, http, secret_dsn = base.api, base.http, base.secret_dsn


@pytest.fixture
async def port(monkeypatch: pytest.MonkeyPatch) -> int:
    chosen = free_port()
    monkeypatch.setenv("DATAFLOW_METRICS_PORT", str(chosen))
    return chosen


@pytest.fixture
async def operator(api: ApiServer, port: int, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    async for runner in base.operator.__wrapped__(api, monkeypatch):  # type: ignore[attr-defined]
        yield runner


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def until(port: int, name: str, labels: tuple[tuple[str, str], ...], check, what: str) -> float:
    key = (name, labels)
    for _ in range(200):
        value = (await scrape(port)).get(key)
        if value is not None and check(value):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: {name}{labels} is {(await scrape(port)).get(key)}")


async def test_counters_move_with_what_the_operator_does(
    api: ApiServer, operator: None, http: aiohttp.ClientSession, dsn: str, secret_dsn: str, port: int
) -> None:
    for _ in range(100):  # KopfRunner returns before the startup handlers have run
        try:
            before = await scrape(port)
            break
        except aiohttp.ClientConnectorError:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"metrics never served on port {port}")
    applied = ("dataflow_reconciles_total", (("phase", "Applied"), ("reason", "Applied")))
    durations = ("dataflow_migration_duration_seconds_count", ())
    drift = ("dataflow_drift_detected_total", ())
    assert before[("dataflow_approvals_pending", ())] == 0

    base.make_secret(api, "shop-db", secret_dsn)
    shop = base.resource("shop", "shop-db", [base.user_table(base.column("legacy", "TEXT"))])
    shop["spec"]["policy"]["driftCheckInterval"] = "1s"
    await base.send(http, "POST", PATH, shop)
    await base.phase(api, "shop", "Applied")
    await until(port, *applied, lambda v: v >= before.get(applied, 0) + 1, "reconciles by outcome")
    after = await scrape(port)
    assert after[durations] >= before.get(durations, 0) + 1
    assert after[("dataflow_resources", (("phase", "Applied"),))] == 1

    # a DBA drops a column: the drift check finds it (drift: report keeps it dropped) and counts it
    conn = await asyncpg.connect(dsn)
    await conn.execute('ALTER TABLE "user" DROP COLUMN legacy')
    await conn.close()
    await until(port, *drift, lambda v: v >= before.get(drift, 0) + 1, "drift detected")

    # a HIGH change (dropping email) waits for a person: one approval pending, counted in that phase
    table = base.user_table()
    table["columns"] = [c for c in table["columns"] if c["name"] != "email"]
    await base.send(http, "PATCH", f"{PATH}/shop", {"spec": {"tables": [table]}}, headers=MERGE)
    await base.phase(api, "shop", "AwaitingApproval")
    await until(port, "dataflow_approvals_pending", (), lambda v: v == 1, "approvals pending")
    now = await scrape(port)
    assert now[("dataflow_resources", (("phase", "AwaitingApproval"),))] == 1
    assert now[("dataflow_resources", (("phase", "Applied"),))] == 0

    # the pool reports its connections with a database label, never a DSN
    metrics.set_pool_connections("127.0.0.1:5432/shop", 3)
    assert (await scrape(port))[
        ("dataflow_pool_connections_in_use", (("database", "127.0.0.1:5432/shop"),))
    ] == 3
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert base.PASSWORD not in await resp.text()
