"""Work the schema cannot show is finished after a crash (issue 9, item 3).

A real subprocess adds a nullable column with a volatile default (``gen_random_uuid()``) to a populated
table; the planner adds it nullable and fills it in batches. The process is SIGKILLed part-way through
the backfill, once the ledger shows batches committed. The schema then already matches the desired
one, so only the ledger knows that rows are still NULL: the next reconcile must resume the backfill
under the lease (taking over the dead holder's lease), close the ledger row as applied, and only then
report InSync.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import asyncpg

from dataflow import fingerprint as fp
from dataflow.ledger import STATUS_APPLIED, STATUS_RUNNING
from dataflow.options import MigrationOptions
from dataflow.reconcile import Outcome, reconcile
from dataflow.schema import Column, Schema, Table

ROOT = Path(__file__).resolve().parent.parent
OWNER = "shop"
ROWS = 100_000
BATCH = 100  # a thousand batches: seconds of work to kill part-way
BASE = (Column("id", "BIGINT", nullable=False), Column("name", "TEXT"))
BEFORE = Schema((Table("item", BASE, primary_key=("id",)),), "public").normalised()
TOKEN = Column("token", "UUID", nullable=True, default="gen_random_uuid()")
AFTER = Schema((Table("item", (*BASE, TOKEN), primary_key=("id",)),), "public").normalised()

APPLY = textwrap.dedent(
    f"""
    import asyncio, sys
    from dataflow.connect import connect
    from dataflow.options import MigrationOptions
    from dataflow.reconcile import reconcile
    from dataflow.schema import Column, Schema, Table

    BASE = (Column("id", "BIGINT", nullable=False), Column("name", "TEXT"))
    TOKEN = Column("token", "UUID", nullable=True, default="gen_random_uuid()")
    AFTER = Schema((Table("item", (*BASE, TOKEN), primary_key=("id",)),), "public").normalised()

    async def main(dsn):
        conn = await connect(dsn, "public")
        result = await reconcile(conn, dsn, AFTER, {OWNER!r}, MigrationOptions(batch_size={BATCH}))
        print("DONE", result.outcome, result.reason, flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


async def batches_done(conn: asyncpg.Connection) -> int:
    """Batches the running migration's backfill has committed, per the ledger (0 before it starts)."""
    progress = await conn.fetchval(
        "SELECT progress FROM dataflow_migrations WHERE status = $1 ORDER BY id DESC LIMIT 1", STATUS_RUNNING
    )
    pending = json.loads(progress)["pending"] if progress else []
    return pending[0]["batches"] if pending else 0


async def killed_mid_backfill(dsn: str, conn: asyncpg.Connection, script: Path) -> None:
    """Run the applier, SIGKILL it once the ledger shows a few batches committed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        dsn,
        env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(60):
            while await batches_done(conn) < 5:
                assert proc.returncode is None, (await proc.stdout.read()).decode()  # type: ignore[union-attr]
                await asyncio.sleep(0.02)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        output = (await proc.communicate())[0].decode()
    assert proc.returncode == -signal.SIGKILL, f"the applier finished before it was killed: {output}"


async def test_a_backfill_killed_mid_way_is_resumed_before_anything_is_in_sync(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    fp.IN_SYNC.clear()
    assert (await reconcile(conn, dsn, BEFORE, OWNER, MigrationOptions())).outcome is Outcome.APPLIED
    await conn.execute("INSERT INTO item (id, name) SELECT g, 'n' || g FROM generate_series(1, $1) g", ROWS)
    await conn.execute("ANALYZE item")
    script = tmp_path / "apply.py"
    script.write_text(APPLY)

    await killed_mid_backfill(dsn, conn, script)

    # what the dead process left: a running ledger row, its lease, and rows still NULL
    nulls = await conn.fetchval("SELECT count(*) FROM item WHERE token IS NULL")
    assert 0 < nulls < ROWS
    [dead] = await conn.fetch(
        "SELECT version, progress FROM dataflow_migrations WHERE status = $1", STATUS_RUNNING
    )
    assert await conn.fetchval("SELECT count(*) FROM dataflow_migration_lock") == 1
    done_before = json.loads(dead["progress"])["pending"][0]["batches"]
    assert done_before >= 5

    # a dry run does not call it in sync
    dry = await reconcile(conn, dsn, AFTER, OWNER, MigrationOptions(batch_size=BATCH, dry_run=True))
    assert dry.outcome is Outcome.DRY_RUN and "unfinished" in dry.reason, dry.reason

    # the next reconcile (this process: no cache of the dead one's) resumes under the lease
    result = await reconcile(conn, dsn, AFTER, OWNER, MigrationOptions(batch_size=BATCH))
    assert result.outcome is Outcome.APPLIED and result.resumed == (dead["version"],), result.reason
    assert "resumed" in result.reason
    assert await conn.fetchval("SELECT count(*) FROM item WHERE token IS NULL") == 0
    assert await conn.fetchval("SELECT count(DISTINCT token) FROM item") == ROWS  # each row its own value
    row = await conn.fetchrow(
        "SELECT status, progress FROM dataflow_migrations WHERE version = $1", dead["version"]
    )
    [backfill] = json.loads(row["progress"])["pending"]
    assert row["status"] == STATUS_APPLIED and backfill["state"] == "done"
    assert backfill["batches"] >= done_before  # counted on from where the dead process stopped
    assert await conn.fetchval("SELECT count(*) FROM dataflow_migration_lock") == 0
    assert (
        await conn.fetchval("SELECT count(*) FROM dataflow_migrations WHERE status = $1", STATUS_RUNNING) == 0
    )

    # and only now in sync, through the one-query fast path (the resumed row is sealed)
    fp.IN_SYNC.clear()
    statements: list[object] = []
    conn.add_query_logger(statements.append)
    again = await reconcile(conn, dsn, AFTER, OWNER, MigrationOptions(batch_size=BATCH))
    await asyncio.sleep(0.01)  # query loggers are called soon after, not during
    conn.remove_query_logger(statements.append)
    assert again.outcome is Outcome.IN_SYNC and len(statements) == 1, (again.reason, len(statements))
