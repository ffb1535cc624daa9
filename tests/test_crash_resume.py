"""SIGKILL an applying process at many points; the next run must complete the migration."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import textwrap
import uuid
from pathlib import Path

import asyncpg

from tests.helpers import dataflow, with_database

ROOT = Path(__file__).resolve().parent.parent
ROWS = 20_000
KILL_POINTS = 20

MODELS = textwrap.dedent(
    """
    from dataflow import DataFlow, Field

    def target(db):
        @db.model
        class Owner:
            name: str

        @db.model
        class Account:
            email: str = Field(max_length=200, unique=True)
            owner_id: int = Field(references="owner.id")
            balance: int = Field(default=0, index=True)
            token: str = Field(sql_default="md5(random()::text)")
        return db
    """
)

APPLY = MODELS + textwrap.dedent(
    """
    import asyncio, io, sys, time
    from rich.console import Console

    async def main():
        db = target(DataFlow(sys.argv[1], migration_config={"batch_size": 200}, console=Console(file=io.StringIO())))
        print("START", flush=True)
        started = time.monotonic()
        success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
        print("DONE", success, time.monotonic() - started, flush=True)

    asyncio.run(main())
    """
)


async def seed_template(server_dsn: str) -> str:
    """A database in the 'before' state, used as a template for each kill point."""
    name = f"dataflow_crash_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = with_database(server_dsn, name)
    db = dataflow(dsn)

    @db.model
    class Owner:
        name: str

    @db.model
    class Account:
        email: str = None
        owner_id: int
        balance: int = None

    await db.initialize()
    conn = await asyncpg.connect(dsn)
    await conn.execute("INSERT INTO owner (name) SELECT 'o' || g FROM generate_series(1, 50) g")
    await conn.execute("INSERT INTO account (email, owner_id, balance) SELECT 'a' || g || '@x.io', 1 + g % 50, "
                       "CASE WHEN g % 4 = 0 THEN NULL ELSE g END FROM generate_series(1, $1) g", ROWS)
    await conn.close()
    return name


async def clone(server_dsn: str, template: str) -> str:
    name = f"{template}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    await admin.close()
    return name


async def drop(server_dsn: str, *names: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    for name in names:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def run_apply(dsn: str, script: Path, kill_after: float | None) -> float | None:
    """Run the applier; kill it ``kill_after`` seconds after it starts migrating. Returns its own timing."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), dsn, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).startswith(b"START")
    if kill_after is not None:
        await asyncio.sleep(kill_after)
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
    out, err = await proc.communicate()
    if kill_after is None:
        assert proc.returncode == 0, err.decode()
        _, success, seconds = out.decode().split()
        assert success == "True"
        return float(seconds)
    return None


async def data_of(conn: asyncpg.Connection) -> list[tuple]:
    return [tuple(r) for r in await conn.fetch("SELECT id, email, owner_id, balance FROM account ORDER BY id")]


async def test_sigkill_at_many_points_then_the_next_run_completes(server_dsn: str, tmp_path: Path) -> None:
    script = tmp_path / "apply.py"
    script.write_text(APPLY)
    namespace: dict = {}
    exec(MODELS, namespace)
    template = await seed_template(server_dsn)
    try:
        reference = await clone(server_dsn, template)
        [planned] = await namespace["target"](dataflow(with_database(server_dsn, reference), batch_size=200)
                                              ).get_pending_migrations()
        # what the migration itself builds outside a transaction, so a kill may leave it half-built
        concurrent = {m.group(1) for m in re.finditer(r'INDEX CONCURRENTLY "([^"]+)"', "\n".join(planned.sql_up))}
        not_valid = {m.group(1) for m in re.finditer(r'ADD CONSTRAINT "([^"]+)" .* NOT VALID;', "\n".join(planned.sql_up))}
        assert concurrent and not_valid
        duration = await run_apply(with_database(server_dsn, reference), script, None)
        conn = await asyncpg.connect(with_database(server_dsn, reference))
        expected_rows = [r[:3] + (r[3] if r[3] is not None else 0,) for r in await data_of(conn)]
        await conn.close()
        await drop(server_dsn, reference)
        assert duration is not None and duration > 0.2, f"the migration is too quick to interrupt ({duration:.2f}s)"

        for point in range(KILL_POINTS):
            name = await clone(server_dsn, template)
            dsn = with_database(server_dsn, name)
            try:
                await run_apply(dsn, script, duration * (point + 0.5) / KILL_POINTS)
                conn = await asyncpg.connect(dsn)
                # nothing half-done except what the migration itself builds: a killed concurrent build may
                # leave its own index INVALID, a killed VALIDATE its own constraint NOT VALID
                invalid = {r[0] for r in await conn.fetch(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid")}
                assert invalid <= concurrent, invalid
                unvalidated = {r[0] for r in await conn.fetch("SELECT conname FROM pg_constraint WHERE NOT convalidated")}
                assert unvalidated <= not_valid, unvalidated

                db = namespace["target"](dataflow(dsn, batch_size=200))
                success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
                assert success, f"kill point {point}: the next run did not complete"
                assert (await db.auto_migrate(auto_confirm=True)) == (True, []), f"kill point {point}: not in sync"
                assert await data_of(conn) == expected_rows, f"kill point {point}: data changed"
                assert await conn.fetchval("SELECT count(*) FROM account WHERE token IS NULL") == 0
                await conn.close()
            finally:
                await drop(server_dsn, name)
    finally:
        await drop(server_dsn, template)
