"""Run a migration in one transaction, with lock and statement timeouts and retries."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import asyncpg

from dataflow.errors import MigrationFailed
from dataflow.ledger import STATUS_APPLIED, STATUS_FAILED, Ledger
from dataflow.plan import Migration
from dataflow.sqltext import quote_ident

log = logging.getLogger("dataflow.executor")


@dataclass(frozen=True)
class ExecutionSettings:
    """Timeouts for one migration; lock timeouts (SQLSTATE 55P03) are retried with backoff."""

    lock_timeout_ms: int = 2_000
    statement_timeout_ms: int = 300_000
    max_attempts: int = 5
    backoff_base_s: float = 0.2
    backoff_max_s: float = 10.0


async def run_in_transaction(conn: asyncpg.Connection, schema: str, statements: list[str],
                             settings: ExecutionSettings) -> None:
    """Execute ``statements`` with ``search_path`` = ``schema`` and both timeouts set locally."""
    await conn.execute(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true),"
        " set_config('search_path', $3, true), pg_advisory_xact_lock(hashtext($4))",
        f"{settings.lock_timeout_ms}ms", f"{settings.statement_timeout_ms}ms", quote_ident(schema),
        f"dataflow-apply:{schema}",
    )
    for sql in statements:
        await conn.execute(sql)


async def execute_migration(conn: asyncpg.Connection, ledger: Ledger, migration: Migration, owner: str,
                            applied_by: str, settings: ExecutionSettings, *, claim: list[str],
                            release: list[str]) -> None:
    """Apply ``migration`` atomically and record it; on error the database is left as it was.

    ``claim``/``release`` are the tables this owner takes on or gives up with this migration.
    """
    version = await ledger.start(conn, migration, owner, applied_by)
    attempt = 0
    while True:
        attempt += 1
        try:
            async with conn.transaction():
                await run_in_transaction(conn, ledger.schema, migration.sql_up, settings)
                await ledger.claim(conn, owner, claim, release)
                await ledger.finish(conn, version, STATUS_APPLIED, attempt)
            log.info("applied %s (%s) in %d attempt(s)", version, migration.description, attempt)
            return
        except asyncpg.exceptions.LockNotAvailableError as exc:
            if attempt >= settings.max_attempts:
                await ledger.finish(conn, version, STATUS_FAILED, attempt, f"lock timeout after {attempt} attempts: {exc}")
                raise MigrationFailed(f"{version}: could not take a lock in {attempt} attempts ({exc})") from None
            delay = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempt - 1))
            delay *= 0.5 + random.random()
            log.warning("lock timeout applying %s (attempt %d); retrying in %.2fs", version, attempt, delay)
            await asyncio.sleep(delay)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            await ledger.finish(conn, version, STATUS_FAILED, attempt, message)
            raise MigrationFailed(f"{version} failed and was rolled back: {message}") from None
