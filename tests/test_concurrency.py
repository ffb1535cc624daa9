"""Several appliers at once: the lease serialises them; lock timeouts are retried."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from dataflow import DataFlow
from dataflow.errors import LockTimeout
from dataflow.ledger import Ledger
from dataflow.lock import MigrationLease
from tests.helpers import dataflow

ROOT = Path(__file__).resolve().parent.parent

APPLIER = textwrap.dedent(
    """
    import asyncio, io, json, sys
    from datetime import datetime
    from rich.console import Console
    from dataflow import DataFlow

    db = DataFlow(sys.argv[1], console=Console(file=io.StringIO()))

    @db.model
    class User:
        name: str
        email: str
        phone: str = None
        is_active: bool = True
        created_at: datetime = None

    @db.model
    class Order:
        user_id: int
        total: float

    async def main():
        success, migrations = await db.auto_migrate(auto_confirm=True)
        print(json.dumps({"success": success, "applied": [m.version for m in migrations],
                          "said": db.console.file.getvalue().strip().splitlines()[-1]}))

    asyncio.run(main())
    """
)


async def test_five_processes_apply_the_same_change(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    script = tmp_path / "apply.py"
    script.write_text(APPLIER)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(script), dsn, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(5)
    ]
    results = []
    for p in procs:
        out, err = await p.communicate()
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert all(r["success"] for r in results)
    said = sorted(r["said"].split(":")[0] for r in results)
    assert said.count("Applied") == 1 and said.count("InSync") == 4, said
    statuses = await conn.fetch("SELECT status FROM dataflow_migrations")
    assert [r["status"] for r in statuses] == ["applied"]
    assert await conn.fetchval("SELECT count(*) FROM dataflow_migration_lock") == 0


async def ticket_gaining_a_column(dsn: str, **config: object) -> DataFlow:
    """A `ticket` table created, and its model now with one more column (a pending ADD COLUMN)."""
    db = dataflow(dsn, **config)

    @db.model
    class Ticket:
        title: str

    await db.initialize()

    @db.model
    class Ticket:  # noqa: F811
        title: str
        note: str = None

    return db


async def test_lock_timeout_is_retried_until_the_lock_is_released(dsn: str, conn: asyncpg.Connection) -> None:
    db = await ticket_gaining_a_column(dsn, lock_timeout_ms=100, max_attempts=20)
    blocker = await asyncpg.connect(dsn)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute('LOCK TABLE "ticket" IN ACCESS SHARE MODE')

    async def release_later() -> None:
        await asyncio.sleep(0.8)
        await tx.rollback()

    release = asyncio.create_task(release_later())
    success, [m] = await db.auto_migrate(auto_confirm=True)
    await release
    await blocker.close()
    assert success
    [record] = [r for r in await db.get_migration_history(5) if r.version == m.version]
    assert record.status == "applied" and record.attempts > 1


async def test_lock_timeout_gives_up_after_max_attempts(dsn: str, conn: asyncpg.Connection) -> None:
    db = await ticket_gaining_a_column(dsn, lock_timeout_ms=50, max_attempts=2)
    blocker = await asyncpg.connect(dsn)
    async with blocker.transaction():
        await blocker.execute('LOCK TABLE "ticket" IN ACCESS SHARE MODE')
        success, _ = await db.auto_migrate(auto_confirm=True)
    await blocker.close()
    assert not success
    [record] = await db.get_migration_history(1)
    assert record.status == "failed" and record.attempts == 2 and "lock timeout" in record.error


async def test_lease_is_exclusive_and_expires(conn: asyncpg.Connection) -> None:
    ledger = Ledger("public")
    await ledger.ensure(conn)
    first = MigrationLease(ledger, "schema:public", holder="a", ttl=0.5)
    second = MigrationLease(ledger, "schema:public", holder="b", ttl=0.5)
    assert await first.try_acquire(conn)
    assert not await second.try_acquire(conn)
    assert await first.current_holder(conn) == "a"
    with pytest.raises(LockTimeout, match="held by a"):
        async with second.hold(conn, timeout=0.2):
            pass
    await asyncio.sleep(0.6)  # a holder that stopped heart-beating loses the lease
    assert await second.try_acquire(conn)
    assert not await first.heartbeat(conn)
    await second.release(conn)
    assert await first.current_holder(conn) is None


async def test_a_dead_holders_lease_is_taken_over_at_once(dsn: str, conn: asyncpg.Connection) -> None:
    ledger = Ledger("public")
    await ledger.ensure(conn)
    dying = await asyncpg.connect(dsn)
    assert await MigrationLease(ledger, "schema:public", holder="dead", ttl=300).try_acquire(dying)
    survivor = MigrationLease(ledger, "schema:public", holder="alive", ttl=300)
    assert not await survivor.try_acquire(conn)  # the holder's session is alive: wait
    await dying.close()  # the process holding it dies
    for _ in range(50):  # the backend needs a moment to leave pg_stat_activity
        if await survivor.try_acquire(conn):
            break
        await asyncio.sleep(0.05)
    assert await survivor.current_holder(conn) == "alive"
