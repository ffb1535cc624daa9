"""Issue 10, monitoring: webhook alerts against a real local HTTP server, slow-migration warnings, the
measured per-step performance analysis, and the docs' advanced ``auto_migrate`` parameters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from dataflow import DataFlow
from dataflow import monitoring as monitoring_module
from dataflow.errors import SchemaError
from dataflow.models import Field
from dataflow.reconcile import Outcome
from tests.helpers import dataflow

URL = "postgresql://u@127.0.0.1:1/d"  # never connected to


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every JSON body POSTed to it."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    fail_first: int = 0  # answer 500 to this many requests first
    delay_s: float = 0.0  # answer this late
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def alerts(self) -> list[list[str]]:
        return [b["alerts"] for b in self.bodies if "alerts" in b]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    box: list[Receiver] = []

    async def handle(request: web.Request) -> web.Response:
        r = box[0]
        r.attempts += 1
        if r.delay_s:
            with contextlib.suppress(TimeoutError):  # released at teardown: cleanup waits for handlers
                await asyncio.wait_for(r.released.wait(), r.delay_s)
        if r.fail_first > 0:
            r.fail_first -= 1
            return web.Response(status=500)
        r.bodies.append(await request.json())
        return web.json_response({"ok": True})

    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    box.append(Receiver(f"http://127.0.0.1:{port}/hooks/migrations"))
    try:
        yield box[0]
    finally:
        box[0].released.set()
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watched(dsn: str, webhook: str, **monitoring: Any) -> DataFlow:
    return dataflow(dsn, monitoring={"enabled": True, "webhook_url": webhook, **monitoring})


class Gadget:
    name: str


class GadgetUnique:
    name: str = Field(unique=True)
    __dataflow__ = {"table": "gadget"}


async def duplicate_gadgets(dsn: str) -> None:
    db = dataflow(dsn)
    db.model(Gadget)
    assert (await db.auto_migrate(auto_confirm=True))[0]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO gadget (name) VALUES ('same'), ('same')")
    finally:
        await conn.close()


# config --------------------------------------------------------------------------------------------------
def test_the_docs_monitoring_configs_are_accepted() -> None:
    on = DataFlow(
        URL,
        migration_config={"monitoring": True, "performance_tracking": True, "slow_migration_threshold": 5000},
    )
    assert on.options.monitoring.enabled and on.options.slow_migration_threshold_ms == 5000.0
    full = DataFlow(
        URL,
        migration_config={
            "monitoring": {
                "enabled": True,
                "webhook_url": "https://your-monitoring.com/webhooks/migrations",
                "alert_on_failure": True,
                "alert_on_rollback": True,
                "performance_threshold": 10000,
            }
        },
    )
    assert full.options.monitoring.posts and full.options.monitoring.performance_threshold_ms == 10000.0


@pytest.mark.parametrize(
    "value",
    [{"enabled": "yes"}, {"webhook_url": "ftp://x"}, {"performance_threshold": -1}, {"alert_on": True}, "on"],
)
def test_a_wrong_monitoring_value_names_the_key(value: Any) -> None:
    with pytest.raises(SchemaError) as info:
        DataFlow(URL, migration_config={"monitoring": value})
    assert info.value.field == "migration_config.monitoring"


# alerts --------------------------------------------------------------------------------------------------
async def test_a_failed_migration_posts_a_failure_alert_retrying_a_server_error(
    dsn: str, receiver: Receiver
) -> None:
    await duplicate_gadgets(dsn)
    receiver.fail_first = 1  # the first POST gets a 500: the alert is retried
    db = watched(dsn, receiver.url)
    db.model(GadgetUnique)
    ok, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert not ok and db.last_result is not None and db.last_result.outcome is Outcome.FAILED
    assert receiver.attempts == 2 and receiver.alerts() == [["failure"]]
    [body] = receiver.bodies
    assert body["outcome"] == "Failed" and body["version"] == db.last_result.migration.version  # type: ignore[union-attr]
    assert "could not create unique index" in body["reason"] or "duplicate" in body["reason"]


async def test_no_alert_when_failures_are_not_asked_for_nor_on_success(dsn: str, receiver: Receiver) -> None:
    await duplicate_gadgets(dsn)
    db = watched(dsn, receiver.url, alert_on_failure=False)
    db.model(GadgetUnique)
    ok, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert not ok
    quiet = watched(dsn, receiver.url)
    quiet.model(Gadget)

    class Other:
        name: str

    quiet.model(Other)
    ok, _ = await quiet.auto_migrate(auto_confirm=True)
    assert ok and receiver.attempts == 0


async def test_a_migration_over_the_performance_threshold_is_alerted(dsn: str, receiver: Receiver) -> None:
    db = watched(dsn, receiver.url, performance_threshold=0)
    db.model(Gadget)
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok and receiver.alerts() == [["slow"]]
    assert receiver.bodies[0]["duration_ms"] > 0


async def test_a_rollback_is_alerted(dsn: str, receiver: Receiver) -> None:
    db = watched(dsn, receiver.url)
    db.model(Gadget)
    ok, applied = await db.auto_migrate(auto_confirm=True)
    assert ok and receiver.attempts == 0
    assert await db.rollback_migration(applied[0].version)
    assert receiver.alerts() == [["rollback"]]
    assert (
        receiver.bodies[0]["outcome"] == "RolledBack" and receiver.bodies[0]["version"] == applied[0].version
    )


async def test_an_unreachable_webhook_never_fails_the_migration(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = watched(dsn, f"http://user:secret@127.0.0.1:{closed_port()}/hook?token=abc", performance_threshold=0)
    db.model(Gadget)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="dataflow.monitoring"):
        ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok and time.monotonic() - started < 10
    assert "could not deliver slow alert" in caplog.text
    assert "secret" not in caplog.text and "token" not in caplog.text


async def test_a_hanging_webhook_is_cut_off_by_its_timeout(
    dsn: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitoring_module, "ATTEMPT_TIMEOUT_S", 0.3)
    receiver.delay_s = 30
    db = watched(dsn, receiver.url, performance_threshold=0)
    db.model(Gadget)
    started = time.monotonic()
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok and time.monotonic() - started < 8
    assert receiver.attempts == monitoring_module.ATTEMPTS and receiver.bodies == []


async def test_slow_migration_threshold_logs_a_warning(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    db = dataflow(dsn, monitoring=True, slow_migration_threshold=0)
    db.model(Gadget)
    with caplog.at_level(logging.WARNING, logger="dataflow.monitoring"):
        ok, applied = await db.auto_migrate(auto_confirm=True)
    assert ok
    assert f"slow migration: {applied[0].version} took" in caplog.text
    fast = dataflow(dsn, slow_migration_threshold=60_000)

    class Other:
        name: str

    fast.model(Gadget)
    fast.model(Other)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dataflow.monitoring"):
        assert (await fast.auto_migrate(auto_confirm=True))[0]
    assert "slow migration" not in caplog.text


# performance analysis ----------------------------------------------------------------------------------------
ROWS = 300_000


async def _customers_with_orders(dsn: str, strategy: str) -> DataFlow:
    db = dataflow(dsn, strategy=strategy)

    class Customer:
        name: str

    class Order:
        customer_id: int
        total: float

    db.model(Customer)
    db.model(Order)
    assert (await db.auto_migrate(auto_confirm=True))[0]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO customer (name) SELECT 'c' || g FROM generate_series(1, 1000) g")
        await conn.execute(
            f'INSERT INTO "order" (customer_id, total) SELECT 1 + g % 1000, g FROM generate_series(1, {ROWS}) g'
        )
        await conn.execute('ANALYZE "order"')
    finally:
        await conn.close()

    class Order:  # type: ignore[no-redef]
        customer_id: int = Field(references="customer.id", index=True)
        total: float

    db.model(Order)
    ok, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
    assert ok, db.last_result
    return db


async def test_performance_analysis_suggests_concurrent_indexes_and_not_valid_constraints(dsn: str) -> None:
    db = await _customers_with_orders(dsn, "transactional")
    [last, *_] = await db.get_migration_history()
    assert {t["operation"] for t in last.step_timings} == {"CREATE_INDEX", "ADD_CONSTRAINT"}
    assert sum(t["ms"] for t in last.step_timings) <= (last.duration_ms or 0)
    analysis = await db.analyze_migration_performance(threshold_ms=0)
    by_kind = {op.operation: op for op in analysis.slow_operations if op.version == last.version}
    assert "CONCURRENTLY" in by_kind["CREATE_INDEX"].optimization_suggestion
    assert "NOT VALID" in by_kind["ADD_CONSTRAINT"].optimization_suggestion
    durations = [op.duration_ms for op in analysis.slow_operations]
    assert durations == sorted(durations, reverse=True) and durations[0] > 0
    for op in analysis.slow_operations:
        print(f"  {op.operation}: {op.duration_ms}ms\n  Suggestion: {op.optimization_suggestion}")
    none = await db.analyze_migration_performance(threshold_ms=10_000_000)
    assert none.slow_operations == [] and none.steps_measured == analysis.steps_measured


async def test_performance_analysis_of_the_online_strategy_suggests_an_index_for_validation(dsn: str) -> None:
    db = await _customers_with_orders(dsn, "online")
    analysis = await db.analyze_migration_performance(threshold_ms=0)
    validations = [op for op in analysis.slow_operations if "VALIDATE CONSTRAINT" in op.sql]
    assert validations and "index on the referencing" in validations[0].optimization_suggestion
    concurrent = [op for op in analysis.slow_operations if "CONCURRENTLY" in op.sql]
    assert concurrent and "did not block writes" in concurrent[0].optimization_suggestion


async def test_performance_tracking_off_records_no_step_durations(dsn: str) -> None:
    db = dataflow(dsn, performance_tracking=False)
    db.model(Gadget)
    assert (await db.auto_migrate(auto_confirm=True))[0]
    [record] = await db.get_migration_history()
    assert record.step_timings == () and record.duration_ms is not None
    assert (await db.analyze_migration_performance()).slow_operations == []


# the docs' advanced parameters ----------------------------------------------------------------------------
async def test_advanced_parameters_write_files_register_the_schema_and_notify(
    dsn: str, receiver: Receiver, tmp_path: Path
) -> None:
    db = dataflow(
        dsn,
        monitoring={"enabled": True, "webhook_url": receiver.url},
        version_control_dir=str(tmp_path / "migrations"),
        documentation_path=str(tmp_path / "docs" / "schema.md"),
    )
    db.model(Gadget)
    ok, [applied] = await db.auto_migrate(
        auto_confirm=True,
        version_control=True,
        schema_registry_url=receiver.url.replace("/hooks/migrations", "/registry"),
        generate_documentation=True,
        notify_team=True,
    )
    assert ok
    up = sorted((tmp_path / "migrations").glob("*.up.sql"))
    down = sorted((tmp_path / "migrations").glob("*.down.sql"))
    assert len(up) == len(down) == 1 and up[0].name.startswith(applied.version + "_")
    assert 'CREATE TABLE "public"."gadget"' in up[0].read_text()
    assert 'DROP TABLE "public"."gadget";' in down[0].read_text()
    docs = (tmp_path / "docs" / "schema.md").read_text()
    assert "## gadget" in docs and "| name | TEXT | no |  |" in docs and applied.version in docs
    registered = [b for b in receiver.bodies if "definition" in b]
    assert len(registered) == 1 and registered[0]["definition"] == db.schema().to_dict()
    assert registered[0]["hash"] == db.schema().hash()
    assert receiver.alerts() == [["applied"]]


async def test_advanced_parameters_do_nothing_on_a_dry_run(
    dsn: str, receiver: Receiver, tmp_path: Path
) -> None:
    db = dataflow(dsn, version_control_dir=str(tmp_path / "m"), documentation_path=str(tmp_path / "d.md"))
    db.model(Gadget)
    ok, _ = await db.auto_migrate(
        dry_run=True, version_control=True, generate_documentation=True, schema_registry_url=receiver.url
    )
    assert ok and not (tmp_path / "m").exists() and not (tmp_path / "d.md").exists()
    assert receiver.attempts == 0


def test_a_registry_url_must_be_http() -> None:
    db = DataFlow(URL)
    with pytest.raises(SchemaError) as info:
        asyncio.run(db.auto_migrate(schema_registry_url="file:///etc/passwd"))
    assert info.value.field == "schema_registry_url"
