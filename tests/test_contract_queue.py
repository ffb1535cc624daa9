"""The migration queue: a table in the database, shared by processes, run by priority then arrival."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest

from dataflow import DataFlow, DataFlowError, SchemaError
from dataflow.migrations import MigrationStrategy
from dataflow.schema import Column, Schema, Table
from tests.helpers import dataflow

WORKER = (
    "import asyncio, sys\n"
    "from dataflow import DataFlow\n"
    "print(asyncio.run(DataFlow(sys.argv[1]).process_migration_queue()))\n"
)


def one_table(name: str) -> Schema:
    return Schema((Table(name, (Column("id", "BIGINT", nullable=False),), primary_key=("id",)),))


async def run_worker_process(dsn: str) -> list[int]:
    """``process_migration_queue`` in another OS process (its own connections); the ids it ran."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, dsn, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [int(x) for x in out.decode().strip().strip("[]").split(",") if x.strip()]


async def test_priority_then_arrival_across_processes_and_timeouts(
    dsn: str, conn: asyncpg.Connection
) -> None:
    apps = [dataflow(dsn, owner=f"app-{n}") for n in "abcd"]
    assert await conn.fetchval("SELECT to_regclass('dataflow_migration_queue')") is None

    low = await apps[0].queue_migration({"target_schema": one_table("t_low"), "priority": 1}, process=False)
    high = await apps[1].queue_migration(
        {"target_schema": one_table("t_high"), "priority": 5, "timeout": 300}, process=False
    )
    high_later = await apps[2].queue_migration(
        {"target_schema": one_table("t_high_later").to_dict(), "priority": 5}, process=False
    )
    expiring = await apps[3].queue_migration(
        {"target_schema": one_table("t_expired"), "priority": 9, "timeout": 0.3}, process=False
    )
    assert await conn.fetchval("SELECT to_regclass('dataflow_migration_queue')") is not None

    # every process sees the same queue, in the same order
    statuses = [await apps[0].get_migration_status(i) for i in (expiring, high, high_later, low)]
    assert [(s.status, s.position) for s in statuses] == [
        ("queued", 1),
        ("queued", 2),
        ("queued", 3),
        ("queued", 4),
    ]
    assert (await apps[3].get_migration_status(low)).position == 4

    await asyncio.sleep(0.4)  # past the expiring entry's timeout: it is never run
    status = await apps[1].get_migration_status(expiring)
    assert (status.status, status.position) == ("timed_out", 0)
    assert "not started within its timeout" in (status.error or "")
    assert (await apps[1].get_migration_status(high)).position == 1

    # two workers at once: another process and this one; one drains, none runs an entry twice
    here, there = await asyncio.gather(apps[0].process_migration_queue(), run_worker_process(dsn))
    assert sorted(here + there) == sorted([high, high_later, low])

    rows = await conn.fetch(
        "SELECT id, status, version FROM dataflow_migration_queue ORDER BY started_at, id"
    )
    ran = [(r["id"], r["status"]) for r in rows if r["status"] != "timed_out"]
    assert ran == [(high, "applied"), (high_later, "applied"), (low, "applied")]
    for name in ("t_high", "t_high_later", "t_low"):
        assert await conn.fetchval("SELECT to_regclass($1)", name) is not None
    assert await conn.fetchval("SELECT to_regclass('t_expired')") is None
    versions = {r["version"] for r in rows if r["version"]}
    assert versions == {r.version for r in await apps[0].get_migration_history()}
    assert len(versions) == 3


async def test_background_worker_cancel_and_failures(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Widget:
        name: str

    # the docs' call: the models' schema by default, a worker task runs it
    migration_id = await db.queue_migration({"priority": 1, "timeout": 300})
    status = await db.wait_for_migration(migration_id, timeout=30)
    assert (status.status, status.position) == ("applied", 0) and status.version
    assert await conn.fetchval("SELECT to_regclass('widget')") is not None

    cancelled = await db.queue_migration({"target_schema": one_table("never")}, process=False)
    assert await db.cancel_migration(cancelled) is True
    assert await db.cancel_migration(cancelled) is False
    assert (await db.get_migration_status(cancelled)).status == "cancelled"

    # a plan above the entry's max_risk_level fails with the reason; the queue goes on
    await conn.execute("INSERT INTO widget (name) VALUES ('x')")
    risky = await db.queue_migration(
        {"target_schema": one_table("widget"), "max_risk_level": "SAFE"}, process=False
    )
    other = dataflow(dsn, owner="other")  # its own tables: the widget's owner would plan to drop widget
    after = await other.queue_migration({"target_schema": one_table("later")}, process=False)
    await db.process_migration_queue()
    failed = await db.get_migration_status(risky)
    assert failed.status == "failed" and "exceeds max_risk_level SAFE" in (failed.error or "")
    assert (await db.get_migration_status(after)).status == "applied"
    assert await conn.fetchval("SELECT to_regclass('never')") is None

    # model classes as the target; the instance's strategy is consulted and may veto
    class Gizmo:
        label: str

    class Never(MigrationStrategy):
        def should_apply_migration(self, migration):  # type: ignore[no-untyped-def]
            return migration.table_size > 0  # only over tables with rows

    vetoing = DataFlow(dsn, migration_strategy=Never(), migration_config={"owner": "gizmo"})
    vetoed = await vetoing.queue_migration({"target_schema": [Gizmo]}, process=False)
    await vetoing.process_migration_queue()
    status = await vetoing.get_migration_status(vetoed)
    assert status.status == "failed" and "strategy declined" in (status.error or "")
    assert await conn.fetchval("SELECT to_regclass('gizmo')") is None

    # an entry a stopped worker left running is failed by the next worker, never run twice
    stuck = await other.queue_migration({"target_schema": one_table("stuck")}, process=False)
    await conn.execute("UPDATE dataflow_migration_queue SET status = 'running' WHERE id = $1", stuck)
    await other.queue_migration({"target_schema": one_table("later")}, process=False)
    await db.process_migration_queue()
    left = await db.get_migration_status(stuck)
    assert left.status == "failed" and "worker running it stopped" in (left.error or "")


async def test_bad_requests_name_the_key(dsn: str) -> None:
    db = dataflow(dsn)
    cases = [
        ({"priority": "high"}, "queue_migration.priority"),
        ({"timeout": 0}, "queue_migration.timeout"),
        ({"timeout": -1}, "queue_migration.timeout"),
        ({"urgent": True}, "queue_migration.urgent"),
        ({"max_risk_level": "EXTREME"}, "queue_migration.max_risk_level"),
        ({"target_schema": 42}, "queue_migration.target_schema"),
        ({"target_schema": {"tables": [{"name": "x"}]}}, "queue_migration.target_schema.tables[0].columns"),
    ]
    for request, field in cases:
        with pytest.raises(SchemaError) as err:
            await db.queue_migration(request, process=False)
        assert err.value.field == field, request
    with pytest.raises(DataFlowError, match="unknown queued migration"):
        await db.get_migration_status(12345)
