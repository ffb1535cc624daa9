"""Baseline: adopt existing tables as they are, without DDL.

``dataflow baseline``, ``await db.baseline()`` and an adopting DataFlowSchema's first reconcile
(``spec.adopt``) record the database's state in the ledger as an applied migration with no
operations, claim the existing tables the models name for the owner, and record what the models
do not declare as kept (:mod:`dataflow.adoption`). The database schema is not changed.

When the models and the database differ beyond the kept objects, the baseline still records and
claims, and lists the remaining differences: the next plan makes them (policy-gated as any plan).
Then the ledger row carries no fingerprint, so the fast path does not take the database for in sync.
A baseline with nothing to adopt (every existing table already held by this owner) records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import asyncpg

from dataflow import fingerprint
from dataflow.adoption import KeptObject, kept_by_table
from dataflow.adoption import kept_line as kept_objects_line
from dataflow.conflicts import conflict_error, ownership_conflicts
from dataflow.introspect import existing_relations
from dataflow.ledger import STATUS_APPLIED, Ledger, Seal
from dataflow.lock import Heartbeat, MigrationLease
from dataflow.options import MigrationOptions
from dataflow.plan import Migration, concerned_tables, new_version, plan_checksum
from dataflow.reconcile import applied_by, full_plan
from dataflow.schema import Schema

DESCRIPTION = "baseline"  # the ledger row's description starts with it


@dataclass(frozen=True)
class BaselineResult:
    """What a baseline did. ``version`` is None when there was nothing to adopt (nothing recorded)."""

    version: str | None
    adopted: list[str]  # the tables claimed by this baseline
    kept: list[KeptObject]  # recorded as kept (not in the models)
    remaining: Migration  # what the next plan makes (its operations; empty: in sync)
    already_owned: list[str] = field(default_factory=list)

    @property
    def recorded(self) -> bool:
        return self.version is not None

    def lines(self) -> list[str]:
        """For people: one line each."""
        if not self.recorded:
            owned = f" ({', '.join(self.already_owned)})" if self.already_owned else ""
            out = [
                f"Nothing to adopt: every existing table of the models is already held by this owner{owned}."
            ]
        else:
            out = [f"Baseline {self.version}: adopted {', '.join(self.adopted)} (no DDL)."]
        if self.kept:
            out.append(kept_objects_line(self.kept))
        if self.remaining.operations:
            out.append(
                f"Remaining differences ({len(self.remaining.operations)}), made by the next plan: "
                + "; ".join(f"{op.kind} {op.table}.{op.details}" for op in self.remaining.operations)
            )
        elif self.recorded:
            out.append("The database matches the models: the next plan is empty.")
        return out


async def to_adopt(
    conn: asyncpg.Connection, desired: Schema, owner: str, options: MigrationOptions
) -> list[str]:
    """The existing tables of ``desired`` that nobody holds yet: what a baseline would adopt (read-only,
    two catalog queries; a table another owner holds is the plan's conflict, not an adoption)."""
    include = options.include_tables
    tables = [t for t in desired.table_names if include is None or t in include]
    owners = await Ledger(desired.name).owners_of(conn)
    return [t for t in await existing_relations(conn, desired.name, tables) if t not in owners]


async def baseline(
    conn: asyncpg.Connection,
    dsn: str | None,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
    heartbeat: Heartbeat | None = None,
) -> BaselineResult:
    """Record the existing tables of ``desired`` as ``owner``'s, as they are; no DDL.

    Raises :class:`MigrationConflictError` when another owner holds one of the tables (nothing is
    recorded). Runs under the schema's apply lease, so no migration runs meanwhile.
    """
    ledger = Ledger(desired.name)
    await ledger.ensure(conn)
    lease = MigrationLease(ledger, f"schema:{desired.name}", ttl=options.lease_ttl_s)
    async with lease.hold(conn, timeout=options.lease_timeout_s, heartbeat_dsn=dsn, heartbeat=heartbeat):
        # what a plan right now makes, adopting: its drops of undeclared objects are the kept ones
        planned, conflicts = await full_plan(conn, desired, owner, replace(options, dry_run=True))
        if conflicts:
            raise conflict_error(ownership_conflicts(conflicts, owner))
        owners = await ledger.owners_of(conn)
        include = options.include_tables
        declared = [*desired.table_names, *(v.name for v in desired.views)]
        tables = [t for t in declared if include is None or t in include]
        existing = await existing_relations(conn, desired.name, tables)
        adopted = [t for t in existing if owners.get(t) != owner]
        if not adopted:
            return BaselineResult(None, [], [], planned, already_owned=existing)
        kept = [k for k in planned.kept_objects if k.table in adopted]
        schema_hash = fingerprint.schema_hash(desired)
        record = Migration(
            new_version(),
            f"{DESCRIPTION}: adopted {len(adopted)} table(s) as they are: {', '.join(adopted)}",
            [],
            schema_hash,
            plan_checksum(schema_hash, []),
            kept_objects=kept,
        )
        in_sync = not planned.operations
        async with conn.transaction():
            version = await ledger.start(conn, record, owner, applied_by())
            await ledger.claim(conn, owner, adopted, [])
            await ledger.record_kept(conn, owner, kept_by_table(kept, adopted))
            if in_sync:  # sealed: the next check is the one-query fast path
                ledger.seal = _sealer(desired, owner, options)
            await ledger.finish(conn, version, STATUS_APPLIED, 1)
    return BaselineResult(version, adopted, kept, planned)


def _sealer(desired: Schema, owner: str, options: MigrationOptions) -> Seal:
    """The plan key and fingerprint of the adopted state, taken in the transaction that records it."""

    async def seal(conn: asyncpg.Connection) -> tuple[str, str]:
        key = fingerprint.plan_key(desired, options, fingerprint.schema_hash(desired))
        value = await fingerprint.fingerprint(conn, desired.name, concerned_tables(desired, ()), owner)
        return key, value

    return seal
