"""Plan and apply a desired schema against one database: the path shared by library, CLI and operator."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, field
from enum import Enum
from typing import Awaitable, Callable

import asyncpg

from dataflow.errors import LockTimeout, MigrationFailed
from dataflow.executor import ExecutionSettings, execute_migration
from dataflow.introspect import introspect
from dataflow.ledger import Ledger
from dataflow.lock import MigrationLease
from dataflow.operations import Risk
from dataflow.ops import kind_of
from dataflow.plan import Migration, PlanOptions, build_migration, concerned_tables
from dataflow.schema import Schema


class Outcome(str, Enum):
    IN_SYNC = "InSync"
    APPLIED = "Applied"
    DRY_RUN = "DryRun"
    REFUSED = "Refused"            # above max risk and not approved
    DECLINED = "Declined"          # a person said no (or nobody could be asked)
    CONFLICT = "Conflict"          # tables owned by another owner
    FAILED = "Failed"


@dataclass(frozen=True)
class Policy:
    """What may be applied without a person: the library's keyword arguments, the CRD's spec.policy."""

    max_risk_level: Risk = Risk.MEDIUM
    include_tables: tuple[str, ...] | None = None
    exclude_operations: tuple[str, ...] = ()
    dry_run: bool = False
    approved_plan: str | None = None
    data_loss_protection: bool = False
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    planning: PlanOptions = field(default_factory=PlanOptions)
    lease_timeout_s: float = 300.0


@dataclass
class Result:
    outcome: Outcome
    migration: Migration | None
    reason: str = ""
    conflicts: dict[str, str] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.outcome in (Outcome.IN_SYNC, Outcome.APPLIED, Outcome.DRY_RUN)


Confirm = Callable[[Migration], Awaitable[bool]]


def applied_by() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def plan(conn: asyncpg.Connection, desired: Schema, owner: str, policy: Policy) -> tuple[Migration, dict[str, str]]:
    """The migration that brings the database to ``desired``, and tables claimed by other owners."""
    ledger = Ledger(desired.name)
    await ledger.ensure(conn)
    owners = await ledger.owners_of(conn)
    mine = [t for t, o in owners.items() if o == owner]
    state = await introspect(conn, desired.name, tables=concerned_tables(desired, mine))
    migration = await build_migration(conn, state, desired, mine, include_tables=policy.include_tables,
                                      exclude_operations=policy.exclude_operations, options=policy.planning)
    conflicts = {t: owners[t] for t in desired.table_names if owners.get(t, owner) != owner}
    return migration, conflicts


def gate(migration: Migration, policy: Policy) -> str | None:
    """Why policy refuses ``migration`` without a person, or None when it may apply."""
    if policy.approved_plan and policy.approved_plan == migration.plan_hash:
        return None
    if policy.data_loss_protection:
        lossy = [op for op in migration.operations if op.assessment.data_loss or op.irreversible]
        if lossy:
            return "data-loss protection: " + "; ".join(f"{op.kind} {op.details}: {op.assessment.reason}" for op in lossy)
    if migration.risk > policy.max_risk_level:
        worst = [op for op in migration.operations if op.risk > policy.max_risk_level]
        reasons = "; ".join(f"{op.kind} {op.table}.{op.details}: {op.assessment.reason}" for op in worst)
        return f"risk {migration.safety_level} exceeds max_risk_level {policy.max_risk_level.name}: {reasons}"
    return None


async def reconcile(conn: asyncpg.Connection, dsn: str | None, desired: Schema, owner: str, policy: Policy,
                    confirm: Confirm | None = None) -> Result:
    """Plan, check policy, ask ``confirm`` (if given), then apply under the lease.

    Under the lease the plan is made again: a concurrent applier may have done the work
    (then the result is IN_SYNC), or the database changed since the preview (then nothing is
    applied and the result says so).
    """
    migration, conflicts = await plan(conn, desired, owner, policy)
    if conflicts:
        return _conflict(migration, conflicts)
    if not migration.operations:
        return Result(Outcome.IN_SYNC, migration, "database matches the schema")
    if policy.dry_run:
        return Result(Outcome.DRY_RUN, migration, "dry run: nothing applied")
    refusal = gate(migration, policy)
    ledger = Ledger(desired.name)
    if refusal:
        await ledger.record_refusal(conn, migration, owner, applied_by(), refusal)
        return Result(Outcome.REFUSED, migration, refusal)
    if confirm is not None and not await confirm(migration):
        return Result(Outcome.DECLINED, migration, "not confirmed: nothing applied")
    lease = MigrationLease(ledger, f"schema:{desired.name}")
    try:
        async with lease.hold(conn, timeout=policy.lease_timeout_s, heartbeat_dsn=dsn):
            await ledger.mark_interrupted(conn)
            fresh, conflicts = await plan(conn, desired, owner, policy)
            if conflicts:
                return _conflict(fresh, conflicts)
            if not fresh.operations:
                return Result(Outcome.IN_SYNC, fresh, "another process applied this schema first")
            if fresh.checksum != migration.checksum:
                return Result(Outcome.REFUSED, fresh, "the database changed since this plan was made; plan again")
            released = [t for op in fresh.operations for t in kind_of(op.kind).released_tables(op.change)]
            claim = list(desired.table_names) if policy.include_tables is None else \
                [t for t in desired.table_names if t in policy.include_tables]
            await execute_migration(conn, ledger, fresh, owner, applied_by(), policy.execution,
                                    claim=claim, release=released)
            return Result(Outcome.APPLIED, fresh, f"applied {fresh.version}")
    except (MigrationFailed, LockTimeout) as exc:
        return Result(Outcome.FAILED, migration, str(exc))


def _conflict(migration: Migration, conflicts: dict[str, str]) -> Result:
    listed = ", ".join(f"{t} (owned by {o})" for t, o in sorted(conflicts.items()))
    return Result(Outcome.CONFLICT, migration, f"tables claimed by another owner: {listed}", conflicts)
