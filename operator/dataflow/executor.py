"""Run a migration: transactional steps grouped in transactions, online steps on their own.

Consecutive transactional steps (across operations) share one transaction, so a migration
without online steps is a single transaction: any error leaves the database as it was. Online
steps (``CONCURRENTLY``, ``VALIDATE``, backfill batches) run outside a transaction; when a later
step fails, the operations already completed are undone in reverse (``rollback_on_error``).
Every statement runs with ``lock_timeout`` and ``statement_timeout``; a lock timeout (SQLSTATE
55P03) is retried with exponential backoff and jitter until ``max_attempts`` or ``migration_timeout_s``.
Every statement goes through :func:`execute_one`, which runs exactly one statement, never a script.
A lost connection or a lost lease (``fence``) stops the migration and marks it ``interrupted``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import pglast
import tenacity
from pglast import ast, enums
from pglast.stream import RawStream

from dataflow.connect import connect
from dataflow.errors import DatabaseUnavailable, MigrationFailed
from dataflow.ledger import (
    PENDING_DONE,
    PENDING_RUNNING,
    PENDING_SKIPPED,
    PENDING_WAITING,
    STATUS_APPLIED,
    STATUS_FAILED,
    Ledger,
    Unfinished,
)
from dataflow.operations import Operation, Step
from dataflow.ops import kind_of
from dataflow.options import MigrationOptions
from dataflow.plan import Migration
from dataflow.retry import Backoff
from dataflow.sqltext import quote_ident

log = logging.getLogger("dataflow.executor")

# what a dead or unusable session raises (its message never holds credentials)
# What a lost session or an unreachable server raises; DatabaseUnavailable is connect()'s redacted form.
CONNECTION_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    asyncio.TimeoutError,
    DatabaseUnavailable,
)


class MigrationInterrupted(MigrationFailed):
    """A migration stopped part-way (lost connection or lease); its ledger row says ``interrupted``."""


class Fence(Protocol):
    """What the lease tells the executor: why it was lost, or None while it is held."""

    lost: str | None


# Fault injection for tests: called with the name of every step and batch boundary a migration reaches
# ("before step 2/5 of <version>", "after ...", "step 3/5 of <version> batch 4", "finish of <version>").
# tests/test_crash_resume.py SIGKILLs the process there. Never set in production.
boundary_hook: Callable[[str], None] | None = None


def _boundary(point: str) -> None:
    if boundary_hook is not None:
        boundary_hook(point)


def _check_fence(fence: Fence | None) -> None:
    if fence is not None and fence.lost:
        raise MigrationInterrupted(fence.lost)


def statement_count(sql: str) -> int | None:
    """How many statements ``sql`` holds, or None when pglast cannot tell (the server will)."""
    try:
        return len(pglast.parser.split(sql))
    except pglast.parser.ParseError:
        return None


def refuse_several(sql: str) -> int | None:
    """The statement count of ``sql`` (None: pglast cannot tell); raises unless it is one or unknown."""
    count = statement_count(sql)
    if count is not None and count != 1:
        raise MigrationFailed(
            f"refusing to run {count} statements as one ({sql[:80]!r}): one statement per execute"
        )
    return count


async def prepare_one(conn: asyncpg.Connection, sql: str) -> asyncpg.prepared_stmt.PreparedStatement:
    """Prepare ``sql`` as exactly one statement: a smuggled ``;`` can never run a second one.

    Checked twice: pglast counts the statements (for a clear error), and the extended protocol of
    a prepared statement refuses more than one on the server. ``prepare`` bypasses asyncpg's
    statement cache, so DDL is never cached across schema changes.
    """
    refuse_several(sql)
    return await _prepare(conn, sql)


async def _prepare(conn: asyncpg.Connection, sql: str) -> asyncpg.prepared_stmt.PreparedStatement:
    try:
        return await conn.prepare(sql)
    except asyncpg.PostgresSyntaxError as exc:
        if "multiple commands" in str(exc):
            raise MigrationFailed(f"refusing to run several statements as one ({sql[:80]!r})") from None
        raise


def lexes_like_pglast(conn: asyncpg.Connection) -> bool:
    """Whether the server splits statements where pglast does: with ``standard_conforming_strings``
    off, a backslash escapes a quote for the server but not for pglast, so their counts could differ."""
    return getattr(conn.get_settings(), "standard_conforming_strings", None) == "on"


async def execute_one(conn: asyncpg.Connection, sql: str) -> str:
    """Run exactly one statement (any kind: DDL, ``CONCURRENTLY``, DML); returns its status, e.g. ``UPDATE 3``.

    When pglast (PostgreSQL's own parser) counts exactly one statement and the server lexes strings
    the same way, the text goes as one simple query: one round trip instead of prepare, then execute.
    Otherwise the extended protocol lets the server itself refuse a second statement.
    """
    if refuse_several(sql) == 1 and lexes_like_pglast(conn):
        return await conn.execute(sql)
    statement = await _prepare(conn, sql)
    await statement.fetch()
    return statement.get_statusmsg()


def batch_with_progress(sql: str, where: str) -> str:
    """A batched UPDATE that also returns, per changed row, whether the row still needs work.

    The work set is the ``WHERE`` of the batch's ``IN (SELECT ... LIMIT n)`` subquery (or the
    UPDATE's own ``WHERE``), evaluated on the new row: a batch whose rows all stay in it never
    shrinks the work left, so the loop would never end.
    """
    try:
        [raw] = pglast.parser.parse_sql(sql)
    except (pglast.parser.ParseError, ValueError):
        raise MigrationFailed(f"{where}: a batched step must be exactly one UPDATE statement") from None
    update = raw.stmt
    if not isinstance(update, ast.UpdateStmt) or update.returningClause:
        raise MigrationFailed(f"{where}: a batched step must be one UPDATE without RETURNING")
    pending = ast.BooleanTest(arg=_work_predicate(update), booltesttype=enums.BoolTestType.IS_TRUE)
    update.returningClause = ast.ReturningClause(exprs=(ast.ResTarget(val=pending),))
    return RawStream()(update)


def _work_predicate(update: ast.UpdateStmt) -> ast.Node:
    """The condition a row still to process meets (TRUE without a WHERE: every row, always)."""
    where = update.whereClause
    if where is None:
        return ast.A_Const(val=ast.Boolean(boolval=True))
    if isinstance(where, ast.SubLink) and isinstance(where.subselect, ast.SelectStmt):
        inner = where.subselect
        source = inner.fromClause[0] if inner.fromClause and len(inner.fromClause) == 1 else None
        target: Any = update.relation
        if (
            isinstance(source, ast.RangeVar)
            and source.alias is None
            and inner.whereClause is not None
            and (source.schemaname, source.relname) == (target.schemaname, target.relname)
        ):
            return inner.whereClause
    return where


@dataclass
class Group:
    """Steps that run together: one transaction, or one online step alone."""

    steps: list[tuple[int, Step]]  # (operation index, step)
    transactional: bool


# Statements one transaction may hold while it only builds new tables. Every CREATE TABLE, index and
# foreign key keeps a few locks until commit, and the server's lock table is shared and bounded
# (max_locks_per_transaction x max_connections: 6,400 slots by default): a 5,000-table schema in one
# transaction fails with "out of shared memory".
MAX_NEW_TABLE_STATEMENTS = 500


def group_steps(operations: list[Operation]) -> list[Group]:
    """Consecutive transactional steps share a transaction; online steps run alone.

    A run of operations on tables this migration creates is split every ``MAX_NEW_TABLE_STATEMENTS``
    statements, between operations: should a later group fail, the completed ones are undone like any
    completed group (``rollback_on_error``), and the next run re-plans from what is there.
    """
    new_tables = {op.table for op in operations if not kind_of(op.kind).reads_table}
    groups: list[Group] = []
    for i, op in enumerate(operations):
        on_new_table = op.table in new_tables
        for n, step in enumerate(op.steps):
            last = groups[-1] if groups else None
            full = (
                n == 0
                and on_new_table
                and last is not None
                and len(last.steps) >= MAX_NEW_TABLE_STATEMENTS
                and all(operations[j].table in new_tables for j, _ in last.steps)
            )
            if step.transactional and last is not None and last.transactional and not full:
                last.steps.append((i, step))
            else:
                groups.append(Group([(i, step)], step.transactional))
    return groups


async def _quietly(action: Callable[[], Awaitable[None]]) -> None:
    """Run a best-effort ``action`` while another error propagates: its own failure must not hide that one."""
    try:
        await action()
    except (MigrationFailed, *CONNECTION_ERRORS) as exc:
        log.warning("cleanup failed too: %s: %s", type(exc).__name__, exc)


class _Retrying:
    """Retry lock timeouts (SQLSTATE 55P03) with :class:`Backoff`, bounded by attempts and a deadline.

    ``attempts`` counts across the whole migration: ``max_attempts`` and ``migration_timeout_s``
    bound all steps together, not each step.
    """

    def __init__(self, settings: MigrationOptions) -> None:
        self.settings = settings
        self.backoff = Backoff(settings.backoff_base_s, settings.backoff_max_s)
        self.deadline = asyncio.get_running_loop().time() + settings.migration_timeout_s
        self.attempts = 0

    def _exhausted(self, _: tenacity.RetryCallState) -> bool:
        return (
            self.attempts >= self.settings.max_attempts or asyncio.get_running_loop().time() >= self.deadline
        )

    async def run(
        self,
        what: str,
        action: Callable[[], Awaitable[None]],
        cleanup: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        async def between(state: tenacity.RetryCallState) -> None:
            if cleanup:
                await cleanup()
            log.warning(
                "lock timeout on %s (attempt %d); retrying in %.2fs",
                what,
                self.attempts,
                state.upcoming_sleep,
            )

        lock_timeout = tenacity.retry_if_exception_type(asyncpg.exceptions.LockNotAvailableError)
        retrying = tenacity.AsyncRetrying(
            retry=lock_timeout, stop=self._exhausted, wait=self.backoff, before_sleep=between
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._once(action, cleanup)
        except tenacity.RetryError as exc:
            raise MigrationFailed(
                f"lock timeout after {self.attempts} attempts: {exc.last_attempt.exception()}"
            ) from None

    async def _once(
        self, action: Callable[[], Awaitable[None]], cleanup: Callable[[], Awaitable[None]] | None
    ) -> None:
        """One attempt; any error but a lock timeout cleans up (best effort) and ends the retries."""
        self.attempts += 1
        try:
            await action()
        except asyncpg.exceptions.LockNotAvailableError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError):
            if cleanup:  # e.g. drop the INVALID index a failed concurrent build left behind
                await _quietly(cleanup)
            raise


async def configure_session(
    conn: asyncpg.Connection, schema: str, settings: MigrationOptions, local: bool = False
) -> None:
    """Both timeouts and ``search_path`` for the session (``local``: only the current transaction)."""
    await conn.execute(
        "SELECT set_config('lock_timeout', $1, $4), set_config('statement_timeout', $2, $4),"
        " set_config('search_path', $3, $4)",
        f"{settings.lock_timeout_ms}ms",
        f"{settings.statement_timeout_ms}ms",
        quote_ident(schema),
        local,
    )


async def reset_session(conn: asyncpg.Connection) -> None:
    if not conn.is_closed():
        for setting in ("lock_timeout", "statement_timeout", "search_path"):
            await execute_one(conn, f"RESET {setting}")


async def run_in_transaction(
    conn: asyncpg.Connection, schema: str, statements: list[str], settings: MigrationOptions
) -> None:
    """Inside a transaction: set both timeouts and ``search_path`` locally, then run ``statements``."""
    await configure_session(conn, schema, settings, local=True)
    for sql in statements:
        await execute_one(conn, sql)


# How the ledger tells pending work apart (``progress.pending[].kind``).
PENDING_BACKFILL = "backfill"
PENDING_VALIDATE = "validate"

# Records how far a pending step got: (state, batches committed so far).
Track = Callable[[str, int], Awaitable[None]]


def pending_kind(step: Step) -> str | None:
    """What a later run must finish if this step was cut short, or None when the schema shows it.

    A batched backfill (``repeat``) and a ``VALIDATE CONSTRAINT`` run after their DDL committed; the
    schema cannot show a half-filled column. Both are safe to run again: a backfill only touches rows
    still to do, and validating a valid constraint is a no-op.
    """
    if step.repeat:
        return PENDING_BACKFILL
    if not step.transactional and _validates(step.sql):
        return PENDING_VALIDATE
    return None


def _validates(sql: str) -> bool:
    try:
        [raw] = pglast.parser.parse_sql(sql)
    except (pglast.parser.ParseError, ValueError):
        return False
    stmt = raw.stmt
    return isinstance(stmt, ast.AlterTableStmt) and all(
        isinstance(cmd, ast.AlterTableCmd) and cmd.subtype == enums.AlterTableType.AT_ValidateConstraint
        for cmd in stmt.cmds or ()
    )


def pending_work(groups: list[Group]) -> dict[int, dict[str, Any]]:
    """Group index -> the ledger's record of the pending step it runs (steps the schema cannot show)."""
    work = {}
    for n, group in enumerate(groups):
        kind = None if group.transactional else pending_kind(group.steps[0][1])
        if kind is not None:
            work[n] = {
                "step": n + 1,
                "sql": group.steps[0][1].sql,
                "kind": kind,
                "batches": 0,
                "state": PENDING_WAITING,
            }
    return work


def _tracker(conn: asyncpg.Connection, ledger: Ledger, version: str, index: int) -> Track:
    async def track(state: str, batches: int) -> None:
        await ledger.pending_progress(conn, version, index, state, batches)

    return track


async def _run_online_step(
    conn: asyncpg.Connection,
    step: Step,
    fence: Fence | None,
    where: str,
    track: Track | None = None,
    batches: int = 0,
    deadline: Deadline | None = None,
) -> None:
    """One step outside a transaction; ``track`` records each committed batch and the end in the ledger.

    ``batches``: how many a run before this one committed (a resumed backfill counts on from there).
    """
    if not step.repeat:
        await execute_one(conn, step.sql)
        if track:
            await track(PENDING_DONE, 0)
        return
    batch = await prepare_one(conn, batch_with_progress(step.sql, where))
    this_run = 0
    while True:  # a backfill: each batch commits on its own
        _check_fence(fence)
        if deadline is not None:
            deadline.check(f"batch {this_run + 1} of {where}")
        rows = await batch.fetch()
        this_run += 1
        if not rows:
            log.info("backfill done in %d batch(es)", this_run)
            if track:
                await track(PENDING_DONE, batches)
            return
        if all(still_pending for (still_pending,) in rows):
            raise MigrationFailed(
                f"{where}: batch {this_run} changed {len(rows)} row(s) but none of them left the "
                "set still to process, so the batched step would never finish; stopped"
            )
        batches += 1
        if track:
            await track(PENDING_RUNNING, batches)
        _boundary(f"{where} batch {this_run}")  # this batch is committed


class Deadline:
    """``timeout`` over a whole migration, counted from ``deadline_from`` (auto_migrate's call, so the
    lease wait and planning count too): checked between steps and batches, and each statement's
    ``statement_timeout`` is cut to the time left, so no step outlives it."""

    def __init__(self, seconds: float, settings: MigrationOptions) -> None:
        self.seconds = seconds
        self.settings = settings
        self.at = (time.monotonic() if settings.deadline_from is None else settings.deadline_from) + seconds

    def check(self, where: str) -> None:
        if time.monotonic() >= self.at:
            raise MigrationFailed(f"timed out: timeout={self.seconds:g}s reached before {where}")

    async def limit_statements(self, conn: asyncpg.Connection, where: str) -> None:
        self.check(where)
        left_ms = max(1, int((self.at - time.monotonic()) * 1000))
        limit = min(self.settings.statement_timeout_ms or left_ms, left_ms)
        await conn.execute("SELECT set_config('statement_timeout', $1, false)", f"{limit}ms")

    def explain(self, exc: BaseException) -> BaseException:
        """A statement the deadline cancelled becomes a timeout in the ledger, not a bare cancel."""
        if isinstance(exc, asyncpg.exceptions.QueryCanceledError) and time.monotonic() >= self.at - 0.05:
            return MigrationFailed(f"timed out: timeout={self.seconds:g}s reached during a step ({exc})")
        return exc


# Per-step durations, in the ledger (``progress.timings``) for ``DataFlow.analyze_migration_performance``.
Timings = list[dict[str, Any]]


def _timing(operation: Operation, step: Step, started: float, batches: int | None = None) -> dict[str, Any]:
    entry = {
        "operation": operation.kind,
        "table": operation.table,
        "sql": step.sql,
        "batched": step.repeat,
        "ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return entry if batches is None else entry | {"batches": batches}


async def execute_migration(
    conn: asyncpg.Connection,
    ledger: Ledger,
    migration: Migration,
    owner: str,
    applied_by: str,
    settings: MigrationOptions,
    *,
    claim: list[str],
    release: list[str],
    fence: Fence | None = None,
    dsn: str | None = None,
) -> None:
    """Apply ``migration`` and record it; on error the database is left as it was before it.

    ``claim``/``release`` are the tables this owner takes on or gives up with this migration.
    ``fence`` (the lease) is checked between statements; ``dsn`` lets a lost connection be
    recorded as ``interrupted`` on a fresh one.
    """
    groups = group_steps(migration.operations)
    pending = pending_work(groups)
    version = await ledger.start(
        conn,
        migration,
        owner,
        applied_by,
        {"stepsDone": 0, "stepsTotal": len(groups), "pending": list(pending.values())},
    )
    retry = _Retrying(settings)
    deadline = None if settings.deadline_s is None else Deadline(settings.deadline_s, settings)
    timings: Timings = []
    done_groups = 0
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"dataflow-apply:{ledger.schema}")
    try:
        await configure_session(conn, ledger.schema, settings)
        for n, group in enumerate(groups):
            last = n == len(groups) - 1
            where = f"step {n + 1}/{len(groups)} of {version}"
            _check_fence(fence)
            if deadline is not None:
                await deadline.limit_statements(conn, where)
            _boundary(f"before {where}")
            await retry.run(
                where,
                _group_action(
                    conn,
                    ledger,
                    group,
                    version,
                    owner,
                    claim,
                    release,
                    last,
                    retry,
                    fence,
                    where,
                    _tracker(conn, ledger, version, list(pending).index(n)) if n in pending else None,
                    (n + 1, len(groups)),
                    (migration.operations, timings, deadline),
                ),
                _cleanup_action(conn, group),
            )
            done_groups += 1
            _boundary(f"after {where}")
            if not group.transactional:  # a transactional group records its progress as it commits
                await ledger.progress(conn, version, done_groups, len(groups))
        _check_fence(fence)
        _boundary(f"finish of {version}")
        if not groups or not groups[-1].transactional:
            async with conn.transaction():
                await ledger.claim(conn, owner, claim, release)
                await ledger.finish(conn, version, STATUS_APPLIED, retry.attempts)
        if settings.performance_tracking:
            await ledger.record_timings(conn, version, timings)
        log.info("applied %s (%s) in %d attempt(s)", version, migration.description, retry.attempts)
    except asyncio.CancelledError:
        if fence is None or not fence.lost:
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]  # the lease cancelled us: a fencing stop
        await _interrupted(
            conn, dsn, ledger, version, f"{fence.lost} during step {done_groups + 1}/{len(groups)}"
        )
    except MigrationInterrupted as exc:
        await _interrupted(conn, dsn, ledger, version, f"{exc} during step {done_groups + 1}/{len(groups)}")
    except (MigrationFailed, *CONNECTION_ERRORS) as exc:
        if conn.is_closed():
            await _interrupted(
                conn,
                dsn,
                ledger,
                version,
                f"lost the database connection ({type(exc).__name__}: "
                f"{exc}) during step {done_groups + 1}/{len(groups)}",
            )
        else:
            if deadline is not None:
                exc = deadline.explain(exc)
            await _failed(
                conn, dsn, ledger, migration, version, groups[:done_groups], settings, retry.attempts, exc
            )
    finally:
        await _leave_session(conn, ledger.schema)


async def _failed(
    conn: asyncpg.Connection,
    dsn: str | None,
    ledger: Ledger,
    migration: Migration,
    version: str,
    done: list[Group],
    settings: MigrationOptions,
    attempts: int,
    exc: BaseException,
) -> None:
    """Undo what completed, record the failure, raise one clear error."""
    message = str(exc) if isinstance(exc, MigrationFailed) else f"{type(exc).__name__}: {exc}"
    undone = ""
    if done and settings.rollback_on_error:
        undone = await _undo(conn, ledger.schema, migration, done, settings)
        if conn.is_closed():
            await _interrupted(
                conn,
                dsn,
                ledger,
                version,
                f"{message}; then lost the database connection while undoing {len(done)} completed step(s)",
            )
    await reset_session(conn)
    await ledger.finish(conn, version, STATUS_FAILED, attempts, message + undone)
    raise MigrationFailed(f"{version} failed: {message}{undone}") from None


async def _interrupted(
    conn: asyncpg.Connection, dsn: str | None, ledger: Ledger, version: str, what: str
) -> None:
    """Record ``version`` as interrupted (on a fresh session if ``conn`` is dead) and raise one clear error.

    Nothing is undone: the session or the lease is gone, and the next run re-plans from what is there.
    """
    marked = await _mark_interrupted(conn, dsn, ledger, version, what)
    then = (
        "the migration was marked interrupted"
        if marked
        else "the next run will mark the migration interrupted"
    )
    raise MigrationInterrupted(f"{what} of {version}; {then}; run again to resume") from None


async def _mark_interrupted(
    conn: asyncpg.Connection, dsn: str | None, ledger: Ledger, version: str, what: str
) -> bool:
    try:
        if not conn.is_closed():
            await ledger.interrupt(conn, version, what)
            return True
        if dsn is None:
            return False
        fresh = await connect(dsn, ledger.schema, timeout=5.0)
        try:
            await ledger.interrupt(fresh, version, what)
        finally:
            await fresh.close()
        return True
    except CONNECTION_ERRORS as exc:  # the server itself may be gone
        log.warning("could not mark %s interrupted: %s", version, type(exc).__name__)
        return False


async def _leave_session(conn: asyncpg.Connection, schema: str) -> None:
    """Reset the session and drop the advisory lock; never raises, so it cannot hide the real error."""
    if conn.is_closed():
        return  # the session, and its advisory lock, are gone already
    try:
        await reset_session(conn)
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"dataflow-apply:{schema}")
    except CONNECTION_ERRORS as exc:
        log.warning("could not reset the session after the migration: %s", type(exc).__name__)


def _group_action(
    conn: asyncpg.Connection,
    ledger: Ledger,
    group: Group,
    version: str,
    owner: str,
    claim: list[str],
    release: list[str],
    last: bool,
    retry: _Retrying,
    fence: Fence | None,
    where: str,
    track: Track | None,
    progress: tuple[int, int],
    timed: tuple[list[Operation], Timings, Deadline | None],
) -> Callable[[], Awaitable[None]]:
    """The group's run. A transactional group records ``progress`` (steps done, total) in its own
    transaction, so the ledger knows exactly which DDL committed: pending work after it may resume.
    ``timed``: the migration's operations, where each step's duration goes, the deadline."""
    operations, timings, deadline = timed

    async def action() -> None:
        if not group.transactional:
            i, step = group.steps[0]
            started = time.perf_counter()
            await _run_online_step(conn, step, fence, where, track, deadline=deadline)
            timings.append(_timing(operations[i], step, started))
            return
        measured: Timings = []  # kept only once the transaction commits (a retried attempt counts once)
        async with conn.transaction():
            for i, step in group.steps:
                started = time.perf_counter()
                await execute_one(conn, step.sql)
                measured.append(_timing(operations[i], step, started))
            if last:  # the ledger row closes atomically with the last DDL
                await ledger.claim(conn, owner, claim, release)
                await ledger.finish(conn, version, STATUS_APPLIED, retry.attempts)
            else:
                await ledger.progress(conn, version, *progress)
        timings.extend(measured)

    return action


def _cleanup_action(conn: asyncpg.Connection, group: Group) -> Callable[[], Awaitable[None]] | None:
    cleanup = group.steps[0][1].cleanup if not group.transactional else None
    if cleanup is None:
        return None

    async def action() -> None:
        if not conn.is_closed():  # a dead session cannot clean up; the next run's plan does
            await execute_one(conn, cleanup)

    return action


async def _undo(
    conn: asyncpg.Connection, schema: str, migration: Migration, done: list[Group], settings: MigrationOptions
) -> str:
    """Roll back the operations of ``done`` groups (newest first); says what happened.

    One transaction, unless the undo is as long as a split group: then one per ``MAX_NEW_TABLE_STATEMENTS``
    statements, for the same reason (the server's lock table).
    """
    touched = sorted({i for g in done for i, _ in g.steps}, reverse=True)
    statements = [sql for i in touched for sql in migration.operations[i].sql_down]
    try:
        for start in range(0, len(statements), MAX_NEW_TABLE_STATEMENTS):
            async with conn.transaction():
                chunk = statements[start : start + MAX_NEW_TABLE_STATEMENTS]
                await run_in_transaction(conn, schema, chunk, settings)
    except (MigrationFailed, *CONNECTION_ERRORS) as exc:
        return f"; undoing the completed steps failed too ({type(exc).__name__}: {exc})"
    return f"; the {len(touched)} completed operation(s) were undone"


# What a resumed step raises when what it works on is gone (the DDL before it never ran, or was undone).
_GONE = (
    asyncpg.exceptions.UndefinedColumnError,
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.UndefinedObjectError,
)


async def resume_pending(
    conn: asyncpg.Connection,
    ledger: Ledger,
    work: Unfinished,
    settings: MigrationOptions,
    *,
    fence: Fence | None = None,
) -> None:
    """Run the pending steps an interrupted migration left, in order, recording progress on its row.

    Call under the lease. Only steps the migration reached are run: every group before them committed
    (``stepsDone``), so their DDL is there; the others are recorded as skipped, as is a step whose
    column, table or constraint is gone (undone by hand): the next plan renders what is still needed.
    Lock timeouts are retried as in a migration; any other failure leaves the work pending for the next
    run and raises one clear error.
    """
    retry = _Retrying(settings)
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"dataflow-apply:{ledger.schema}")
    try:
        await configure_session(conn, ledger.schema, settings)
        for index, item in work.left:
            where = f"pending step {item['step']} of {work.version} (resumed)"
            step = Step(item["sql"], transactional=False, repeat=item["kind"] == PENDING_BACKFILL)
            track = _tracker(conn, ledger, work.version, index)
            _check_fence(fence)
            try:
                run = functools.partial(
                    _run_online_step, conn, step, fence, where, track, item.get("batches", 0)
                )
                await retry.run(where, run)
            except _GONE as exc:
                log.info("%s: skipped, %s", where, exc)
                await ledger.pending_progress(
                    conn, work.version, index, PENDING_SKIPPED, item.get("batches", 0)
                )
        for index, _ in work.unreached:  # the DDL they follow never committed: a new plan renders it
            await ledger.pending_progress(conn, work.version, index, PENDING_SKIPPED, 0)
    except (MigrationFailed, *CONNECTION_ERRORS) as exc:
        if isinstance(exc, MigrationInterrupted):
            raise
        message = str(exc) if isinstance(exc, MigrationFailed) else f"{type(exc).__name__}: {exc}"
        raise MigrationFailed(
            f"resuming {work.version} failed: {message}; its pending steps are kept for the next run"
        ) from None
    finally:
        await _leave_session(conn, ledger.schema)


async def skip_pending(conn: asyncpg.Connection, ledger: Ledger, work: Unfinished) -> None:
    """Record ``work``'s pending steps as skipped: it will not be resumed."""
    for index, item in [*work.left, *work.unreached]:
        await ledger.pending_progress(conn, work.version, index, PENDING_SKIPPED, item.get("batches", 0))
