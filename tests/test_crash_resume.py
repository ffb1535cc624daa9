"""SIGKILL an applying process at every step and batch boundary; the next run must complete the migration.

The kill points are the executor's injection points (``dataflow.executor.boundary_hook``): a recording
run lists every point the migration reaches, then one run per point kills itself exactly there.
"""

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
ROWS = 1_000
BATCH = 250  # four batches per backfill, each one a kill point
PARALLEL = 3  # kill runs at a time, each on its own copy of the database

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
            # nullable: once added, the schema cannot show that its backfill is unfinished; the ledger does
            ref: str = Field(sql_default="md5(random()::text)", nullable=True)
        return db
    """
)

APPLY = MODELS + textwrap.dedent(
    """
    import asyncio, io, os, re, signal, sys
    from rich.console import Console
    from dataflow import executor

    def point_name(raw):
        return re.sub(r" of migration_\\w+", "", raw)  # the version differs from run to run

    def record(path):
        def hook(raw):
            with open(path, "a") as f:
                f.write(point_name(raw) + "\\n")
        return hook

    def kill_at(point, path):
        def hook(raw):
            if point_name(raw) == point:
                with open(path, "w") as f:
                    f.write(point)
                os.kill(os.getpid(), signal.SIGKILL)
        return hook

    async def main(dsn, mode, point, path):
        executor.boundary_hook = record(path) if mode == "record" else kill_at(point, path)
        db = target(DataFlow(dsn, migration_config={"batch_size": BATCH}, console=Console(file=io.StringIO())))
        success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
        print("DONE", success, flush=True)

    asyncio.run(main(*sys.argv[1:]))
    """
).replace("BATCH", str(BATCH))


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
    await conn.execute(
        "INSERT INTO account (email, owner_id, balance) SELECT 'a' || g || '@x.io', 1 + g % 50, "
        "CASE WHEN g % 2 = 0 THEN NULL ELSE g END FROM generate_series(1, $1) g",
        ROWS,
    )
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


async def run_apply(dsn: str, script: Path, mode: str, point: str, path: Path) -> tuple[int, str]:
    """Run the applier (``record`` every point into ``path``, or ``kill`` itself at ``point``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        dsn,
        mode,
        point,
        str(path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


async def data_of(conn: asyncpg.Connection) -> list[tuple]:
    return [
        tuple(r) for r in await conn.fetch("SELECT id, email, owner_id, balance FROM account ORDER BY id")
    ]


async def record_points(
    server_dsn: str, template: str, script: Path, tmp_path: Path
) -> tuple[list[str], list[tuple]]:
    """Every injection point of an uninterrupted run, in order, and the rows that run ends with."""
    name = await clone(server_dsn, template)
    try:
        code, output = await run_apply(
            with_database(server_dsn, name), script, "record", "", tmp_path / "points"
        )
        assert code == 0 and "DONE True" in output, output
        conn = await asyncpg.connect(with_database(server_dsn, name))
        rows = await data_of(conn)
        await conn.close()
    finally:
        await drop(server_dsn, name)
    return (tmp_path / "points").read_text().splitlines(), rows


async def assert_nothing_half_done(
    conn: asyncpg.Connection, concurrent: set[str], not_valid: set[str]
) -> None:
    """Only what the migration builds outside a transaction may be left half-built: a killed concurrent
    build its own INVALID index, a killed VALIDATE its own NOT VALID constraint."""
    invalid = {
        r[0]
        for r in await conn.fetch(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
        )
    }
    assert invalid <= concurrent, invalid
    unvalidated = {r[0] for r in await conn.fetch("SELECT conname FROM pg_constraint WHERE NOT convalidated")}
    assert unvalidated <= not_valid, unvalidated


async def ledger_statuses(conn: asyncpg.Connection) -> list[str]:
    return [r[0] for r in await conn.fetch("SELECT status FROM dataflow_migrations ORDER BY id")]


async def kill_then_resume(
    server_dsn: str,
    template: str,
    script: Path,
    point: str,
    marker: Path,
    expected_rows: list[tuple],
    concurrent: set[str],
    not_valid: set[str],
    all_steps_done: set[str],
    only_pending_left: set[str],
) -> str:
    """Kill an applier at ``point``, check what it left, let the next run finish; returns the point it died at."""
    name = await clone(server_dsn, template)
    dsn = with_database(server_dsn, name)
    try:
        code, output = await run_apply(dsn, script, "kill", point, marker)
        assert code == -signal.SIGKILL, f"{point}: the applier was not killed there (exit {code}): {output}"
        hit = marker.read_text()
        conn = await asyncpg.connect(dsn)
        try:
            await assert_nothing_half_done(conn, concurrent, not_valid)
            killed = await ledger_statuses(conn)
            assert killed[:-1] == ["applied"] and killed[-1] in ("running", "applied"), (
                f"{point}: ledger {killed}"
            )
            db = namespace_target()(dataflow(dsn, batch_size=BATCH))
            success, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH")
            assert success, f"killed at {point}: the next run did not complete"
            assert (await db.auto_migrate(auto_confirm=True)) == (True, []), f"killed at {point}: not in sync"
            assert await data_of(conn) == expected_rows, f"killed at {point}: data changed"
            assert await conn.fetchval("SELECT count(*) FROM account WHERE token IS NULL") == 0
            assert await conn.fetchval("SELECT count(*) FROM account WHERE ref IS NULL") == 0, point
            assert await conn.fetchval("SELECT count(*) FROM dataflow_migration_lock") == 0, point
            if killed[-1] == "applied" or point in only_pending_left:
                # only pending work was left (the last VALIDATE): resuming it completes the migration
                resumed = ["applied", "applied"]
            elif point in all_steps_done:
                # every step ran, but not the ledger update: the next run finds the schema in sync, closes the
                # attempt under the lease and claims the tables the dead attempt never claimed
                resumed = ["applied", "interrupted"]
                owned = {r[0] for r in await conn.fetch("SELECT table_name FROM dataflow_owned_tables")}
                assert owned == set(db.schema().table_names), f"killed at {point}: owned {owned}"
            else:
                resumed = ["applied", "interrupted", "applied"]
            assert await ledger_statuses(conn) == resumed, (
                f"killed at {point}: ledger {await ledger_statuses(conn)}"
            )
        finally:
            await conn.close()
    finally:
        await drop(server_dsn, name)
    return hit


def namespace_target():  # type: ignore[no-untyped-def]
    """The ``target`` models function of MODELS, for runs in this process."""
    namespace: dict = {}
    exec(MODELS, namespace)
    return namespace["target"]


async def test_sigkill_at_every_step_and_batch_boundary_then_the_next_run_completes(
    server_dsn: str, tmp_path: Path
) -> None:
    script = tmp_path / "apply.py"
    script.write_text(APPLY)
    template = await seed_template(server_dsn)
    try:
        [planned] = await namespace_target()(
            dataflow(with_database(server_dsn, template), batch_size=BATCH)
        ).get_pending_migrations()
        sql = "\n".join(planned.sql_up)
        concurrent = {m.group(1) for m in re.finditer(r'INDEX CONCURRENTLY "([^"]+)"', sql)}
        not_valid = {m.group(1) for m in re.finditer(r'ADD CONSTRAINT "([^"]+)" .* NOT VALID;', sql)}
        assert concurrent and not_valid

        points, applied_rows = await record_points(server_dsn, template, script, tmp_path)
        steps = sum(1 for p in points if p.startswith("before step"))
        batches = [p for p in points if " batch " in p]
        assert steps > 3 and len(points) == 2 * steps + 1 + len(batches), points
        assert len({p.split(" batch ")[0] for p in batches}) == 3, (
            points
        )  # the token, ref and balance backfills
        assert len(batches) == 2 * ROWS // BATCH + ROWS // 2 // BATCH, points
        assert len(set(points)) == len(points), points
        all_steps_done = {f"after step {steps}/{steps}", "finish"}
        assert "VALIDATE CONSTRAINT" in planned.sql_up[-1]  # the last step is pending work
        only_pending_left = {f"after step {steps - 1}/{steps}", f"before step {steps}/{steps}"}
        expected_rows = [r[:3] + (r[3] if r[3] is not None else 0,) for r in applied_rows]

        gate = asyncio.Semaphore(PARALLEL)

        async def one(i: int, point: str) -> str:
            async with gate:
                return await kill_then_resume(
                    server_dsn,
                    template,
                    script,
                    point,
                    tmp_path / f"hit-{i}",
                    expected_rows,
                    concurrent,
                    not_valid,
                    all_steps_done,
                    only_pending_left,
                )

        hits = await asyncio.gather(*(one(i, p) for i, p in enumerate(points)))
        assert hits == points, "every injection point must be hit, each by its own run"
    finally:
        await drop(server_dsn, template)
