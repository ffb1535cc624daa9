"""Issue 9 item 3 through the operator: `kopf run` killed (SIGKILL) in the middle of a backfill the
schema cannot show, then a new operator process finishes it before anything reports in sync.

Real `kopf run` subprocesses against the emulated API server, real PostgreSQL behind the Secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from dataflow.ledger import STATUS_APPLIED, STATUS_RUNNING
from tests import test_operator as base
from tests.test_operator import api, http  # noqa: F401 - fixtures

ROWS = 300_000  # 300 batches of the default 1,000 rows: seconds of backfill to kill part-way


class Operator:
    """``kopf run`` as its own process, so it can be killed like a pod."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig, self.log = kubeconfig, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--verbose",
            "--namespace",
            base.NS,
            "-m",
            "dataflow.k8s.operator",
            env={
                **os.environ,
                "KUBECONFIG": str(self.kubeconfig),
                "DATAFLOW_METRICS_PORT": "0",
                "DATAFLOW_RETRY_BASE": "0.3",
                "DATAFLOW_DRIFT_TICK": "0",  # act on every timer tick (every 5 s)
            },
            stdout=self.log.open("ab"),
            stderr=asyncio.subprocess.STDOUT,
        )

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), 30)


@pytest.fixture
async def operators(api: base.ApiServer, tmp_path: Path) -> AsyncIterator[list[Operator]]:  # noqa: F811
    started: list[Operator] = []
    try:
        yield started
    finally:
        for op in started:
            await op.stop(signal.SIGKILL)
        api.close_watches()


async def batches_done(conn: asyncpg.Connection) -> int:
    """Batches the running migration has committed (0 until the operator has made its ledger)."""
    try:
        progress = await conn.fetchval(
            "SELECT progress FROM dataflow_migrations WHERE status = $1 ORDER BY id DESC LIMIT 1",
            STATUS_RUNNING,
        )
    except asyncpg.UndefinedTableError:
        return 0
    pending = json.loads(progress)["pending"] if progress else []
    return pending[0]["batches"] if pending else 0


async def test_operator_killed_mid_backfill_is_finished_by_the_next_one(
    api: base.ApiServer,  # noqa: F811
    http,  # noqa: F811
    operators: list[Operator],
    dsn: str,
    tmp_path: Path,
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute('CREATE TABLE "item" ("id" BIGINT NOT NULL PRIMARY KEY, "name" TEXT)')
        await conn.execute("INSERT INTO item SELECT g, 'n' || g FROM generate_series(1, $1) g", ROWS)
        await conn.execute("ANALYZE item")
        base.make_secret(api, "shop-db", dsn)
        table = {
            "name": "item",
            "primaryKey": ["id"],
            "columns": [
                base.column("id", "BIGINT", nullable=False),
                base.column("name", "TEXT"),
                base.column("token", "UUID", default="gen_random_uuid()"),
            ],
        }
        shop = base.resource("shop", "shop-db", [table])
        shop["spec"]["policy"]["maxRiskLevel"] = "HIGH"
        shop["spec"]["policy"]["driftCheckInterval"] = "1s"

        first = Operator(api.kubeconfig, tmp_path / "first.log")
        operators.append(first)
        await first.start()
        await base.send(http, "POST", base.PATH, shop)
        async with asyncio.timeout(60):
            while await batches_done(conn) < 5:
                assert first.proc and first.proc.returncode is None, (tmp_path / "first.log").read_text()
                await asyncio.sleep(0.02)
        await first.stop(signal.SIGKILL)

        # what the killed pod left: rows still NULL, a running ledger row, status saying Applying
        assert 0 < await conn.fetchval("SELECT count(*) FROM item WHERE token IS NULL") < ROWS
        [version] = await conn.fetch(
            "SELECT version FROM dataflow_migrations WHERE status = $1", STATUS_RUNNING
        )
        assert base.status_of(api, "shop")["phase"] == "Applying"

        second = Operator(api.kubeconfig, tmp_path / "second.log")
        operators.append(second)
        await second.start()
        finished = version["version"]
        await base.eventually(
            lambda: base.status_of(api, "shop").get("lastAppliedVersion") == finished,
            timeout=90,
            what="the second operator finishing the stopped migration",
        )
        st = base.status_of(api, "shop")
        assert st["phase"] in ("Applied", "InSync"), st
        assert await conn.fetchval("SELECT count(*) FROM item WHERE token IS NULL") == 0
        assert await conn.fetchval("SELECT count(DISTINCT token) FROM item") == ROWS
        assert (
            await conn.fetchval(
                "SELECT status FROM dataflow_migrations WHERE version = $1", version["version"]
            )
            == STATUS_APPLIED
        )
        assert await conn.fetchval("SELECT count(*) FROM dataflow_migration_lock") == 0
        # the drift checks after it keep what was applied (no stale body resets it)
        await asyncio.sleep(11)  # two timer ticks
        st = base.status_of(api, "shop")
        assert st["phase"] == "InSync" and st["lastAppliedVersion"] == finished, st
    finally:
        await conn.close()
