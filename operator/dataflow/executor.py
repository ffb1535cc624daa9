"""Run a migration: transactional steps grouped in transactions, online steps on their own.

Consecutive transactional steps (across operations) share one transaction, so a migration
without online steps is a single transaction: any error leaves the database as it was. Online
steps (``CONCURRENTLY``, ``VALIDATE``, backfill batches) run outside a transaction; when a later
step fails, the operations already completed are undone in reverse (``rollback_on_error``).
Every statement runs with ``lock_timeout`` and ``statement_timeout``; a lock timeout (SQLSTATE
55P03) is retried with exponential backoff and jitter until ``max_attempts`` or ``migration_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

import asyncpg

from dataflow.errors import MigrationFailed
from dataflow.ledger import STATUS_APPLIED, STATUS_FAILED, Ledger
from dataflow.operations import Operation, Step
from dataflow.plan import Migration
from dataflow.sqltext import quote_ident

log = logging.getLogger("dataflow.executor")


@dataclass(frozen=True)
class ExecutionSettings:
    """Timeouts and retries for one migration."""

    lock_timeout_ms: int = 500
    statement_timeout_ms: int = 300_000
    max_attempts: int = 50
    migration_timeout_s: float = 300.0
    backoff_base_s: float = 0.1
    backoff_max_s: float = 10.0
    rollback_on_error: bool = True


@dataclass
class Group:
    """Steps that run together: one transaction, or one online step alone."""

    steps: list[tuple[int, Step]]  # (operation index, step)
    transactional: bool


def group_steps(operations: list[Operation]) -> list[Group]:
    groups: list[Group] = []
    for i, op in enumerate(operations):
        for step in op.steps:
            if step.transactional and groups and groups[-1].transactional:
                groups[-1].steps.append((i, step))
            else:
                groups.append(Group([(i, step)], step.transactional))
    return groups


class _Retrying:
    """Exponential backoff with jitter on lock timeouts, bounded by attempts and a deadline."""

    def __init__(self, settings: ExecutionSettings) -> None:
        self.settings = settings
        self.deadline = asyncio.get_running_loop().time() + settings.migration_timeout_s
        self.attempts = 0

    async def run(self, what: str, action: Callable[[], Awaitable[None]],
                  cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        while True:
            self.attempts += 1
            try:
                await action()
                return
            except asyncpg.exceptions.LockNotAvailableError as exc:
                error: Exception = exc
            except (asyncpg.PostgresError, asyncpg.InterfaceError):
                if cleanup:  # e.g. drop the INVALID index a failed concurrent build left behind
                    await cleanup()
                raise
            if self.attempts >= self.settings.max_attempts or asyncio.get_running_loop().time() >= self.deadline:
                raise MigrationFailed(f"lock timeout after {self.attempts} attempts: {error}") from None
            if cleanup:
                await cleanup()
            delay = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** min(self.attempts - 1, 20))
            delay *= 0.5 + random.random()
            log.warning("lock timeout on %s (attempt %d); retrying in %.2fs", what, self.attempts, delay)
            await asyncio.sleep(delay)


async def configure_session(conn: asyncpg.Connection, schema: str, settings: ExecutionSettings,
                            local: bool = False) -> None:
    """Both timeouts and ``search_path`` for the session (``local``: only the current transaction)."""
    await conn.execute(
        "SELECT set_config('lock_timeout', $1, $4), set_config('statement_timeout', $2, $4),"
        " set_config('search_path', $3, $4)",
        f"{settings.lock_timeout_ms}ms", f"{settings.statement_timeout_ms}ms", quote_ident(schema), local,
    )


async def reset_session(conn: asyncpg.Connection) -> None:
    if not conn.is_closed():
        await conn.execute("RESET lock_timeout; RESET statement_timeout; RESET search_path")


async def run_in_transaction(conn: asyncpg.Connection, schema: str, statements: list[str],
                             settings: ExecutionSettings) -> None:
    """Inside a transaction: set both timeouts and ``search_path`` locally, then run ``statements``."""
    await configure_session(conn, schema, settings, local=True)
    for sql in statements:
        await conn.execute(sql)


async def _run_online_step(conn: asyncpg.Connection, step: Step) -> None:
    if not step.repeat:
        await conn.execute(step.sql)
        return
    batches = 0
    while True:  # a backfill: each batch commits on its own
        status = await conn.execute(step.sql)
        batches += 1
        if status.endswith(" 0"):
            log.info("backfill done in %d batch(es)", batches)
            return


async def execute_migration(conn: asyncpg.Connection, ledger: Ledger, migration: Migration, owner: str,
                            applied_by: str, settings: ExecutionSettings, *, claim: list[str],
                            release: list[str]) -> None:
    """Apply ``migration`` and record it; on error the database is left as it was before it.

    ``claim``/``release`` are the tables this owner takes on or gives up with this migration.
    """
    version = await ledger.start(conn, migration, owner, applied_by)
    groups = group_steps(migration.operations)
    retry = _Retrying(settings)
    done_groups = 0
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"dataflow-apply:{ledger.schema}")
    try:
        await configure_session(conn, ledger.schema, settings)
        for n, group in enumerate(groups):
            last = n == len(groups) - 1
            await retry.run(f"{version} step {n + 1}/{len(groups)}", _group_action(conn, ledger, group, version,
                            owner, claim, release, last, retry), _cleanup_action(conn, group))
            done_groups += 1
            if not last or not group.transactional:
                await ledger.progress(conn, version, done_groups, len(groups))
        if not groups or not groups[-1].transactional:
            async with conn.transaction():
                await ledger.claim(conn, owner, claim, release)
                await ledger.finish(conn, version, STATUS_APPLIED, retry.attempts)
        log.info("applied %s (%s) in %d attempt(s)", version, migration.description, retry.attempts)
    except (MigrationFailed, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = str(exc) if isinstance(exc, MigrationFailed) else f"{type(exc).__name__}: {exc}"
        undone = ""
        if done_groups and settings.rollback_on_error:
            undone = await _undo(conn, ledger.schema, migration, groups[:done_groups], settings)
        await reset_session(conn)
        await ledger.finish(conn, version, STATUS_FAILED, retry.attempts, message + undone)
        raise MigrationFailed(f"{version} failed: {message}{undone}") from None
    finally:
        if not conn.is_closed():
            await reset_session(conn)
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"dataflow-apply:{ledger.schema}")


def _group_action(conn: asyncpg.Connection, ledger: Ledger, group: Group, version: str, owner: str,
                  claim: list[str], release: list[str], last: bool, retry: _Retrying) -> Callable[[], Awaitable[None]]:
    async def action() -> None:
        if not group.transactional:
            await _run_online_step(conn, group.steps[0][1])
            return
        async with conn.transaction():
            for _, step in group.steps:
                await conn.execute(step.sql)
            if last:  # the ledger row closes atomically with the last DDL
                await ledger.claim(conn, owner, claim, release)
                await ledger.finish(conn, version, STATUS_APPLIED, retry.attempts)

    return action


def _cleanup_action(conn: asyncpg.Connection, group: Group) -> Callable[[], Awaitable[None]] | None:
    cleanup = group.steps[0][1].cleanup if not group.transactional else None
    if cleanup is None:
        return None

    async def action() -> None:
        await conn.execute(cleanup)

    return action


async def _undo(conn: asyncpg.Connection, schema: str, migration: Migration, done: list[Group],
                settings: ExecutionSettings) -> str:
    """Roll back the operations of ``done`` groups (newest first); says what happened."""
    touched = sorted({i for g in done for i, _ in g.steps}, reverse=True)
    statements = [sql for i in touched for sql in migration.operations[i].sql_down]
    try:
        async with conn.transaction():
            await run_in_transaction(conn, schema, statements, settings)
    except asyncpg.PostgresError as exc:
        return f"; undoing the completed steps failed too ({type(exc).__name__}: {exc})"
    return f"; the {len(touched)} completed operation(s) were undone"
