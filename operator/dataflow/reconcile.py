"""Plan and apply a desired schema against one database: the path shared by library, CLI and operator."""

from __future__ import annotations

import getpass
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

import asyncpg

from dataflow import fingerprint
from dataflow.errors import LockTimeout, MigrationFailed
from dataflow.executor import CONNECTION_ERRORS, execute_migration, resume_pending, skip_pending
from dataflow.introspect import introspect
from dataflow.ledger import STATUS_APPLIED, Ledger, Seal, claimed_extension, extension_claim
from dataflow.lock import Heartbeat, MigrationLease
from dataflow.ops import kind_of
from dataflow.ops.create_extension import CREATE_EXTENSION
from dataflow.options import MigrationOptions
from dataflow.plan import Migration, build_migration, concerned_tables, empty_migration, position
from dataflow.schema import Schema

log = logging.getLogger("dataflow.reconcile")


class Outcome(StrEnum):
    IN_SYNC = "InSync"
    APPLIED = "Applied"
    DRY_RUN = "DryRun"
    REFUSED = "Refused"  # above max risk and not approved
    DECLINED = "Declined"  # a person said no (or nobody could be asked)
    CONFLICT = "Conflict"  # tables owned by another owner
    FAILED = "Failed"


class Refusal(StrEnum):
    """Why a REFUSED result applied nothing: callers decide on this, never on the reason text."""

    RISK_ABOVE_POLICY = "RiskAbovePolicy"  # a change is riskier than max_risk_level allows
    DATA_LOSS_PROTECTION = "DataLossProtection"  # a change loses data and data-loss protection is on
    APPROVAL_MISMATCH = "ApprovalMismatch"  # needs approval; the one given is for another plan
    PLAN_CHANGED = "PlanChanged"  # the database changed since the plan a person confirmed


@dataclass(frozen=True)
class Gate:
    """Policy's refusal of a plan: its kind and the one-line reason shown to people."""

    kind: Refusal
    reason: str


@dataclass
class Result:
    """What reconcile did: ``outcome`` and the typed details to act on; ``reason`` is only for people."""

    outcome: Outcome
    migration: Migration | None
    reason: str = ""
    conflicts: dict[str, str] = field(default_factory=dict)
    refusal: Refusal | None = None  # set exactly when outcome is REFUSED
    approved_plan: str | None = None  # the plan hash approved (policy) or confirmed (a person), if any
    resumed: tuple[str, ...] = ()  # versions of interrupted migrations whose pending work this run finished

    @property
    def plan_hash(self) -> str | None:
        """The hash of the plan this result is about (the one applied, refused or previewed)."""
        return self.migration.plan_hash if self.migration is not None else None

    @property
    def needs_approval(self) -> bool:
        """Refused by policy: approving this exact plan (``plan_hash``) would let it apply."""
        return self.refusal in (
            Refusal.RISK_ABOVE_POLICY,
            Refusal.DATA_LOSS_PROTECTION,
            Refusal.APPROVAL_MISMATCH,
        )

    @property
    def success(self) -> bool:
        return self.outcome in (Outcome.IN_SYNC, Outcome.APPLIED, Outcome.DRY_RUN)


Confirm = Callable[[Migration], Awaitable[bool]]
BeforeApply = Callable[[Migration], Awaitable[None]]  # told of the plan right before it is applied


def applied_by() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


IN_SYNC_REASON = "database matches the schema"
UNFINISHED_DRY_RUN = (
    "dry run: the schema matches, but a migration was left unfinished (running or interrupted with "
    "pending steps); a run would resume it"
)


async def plan(
    conn: asyncpg.Connection,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
    *,
    dsn: str | None = None,
    fast: bool = True,
    reading: fingerprint.Reading | None = None,
) -> tuple[Migration, dict[str, str]]:
    """The migration that brings the database to ``desired``, and tables claimed by other owners.

    Read-only: a missing schema means no tables yet, missing ledger tables mean no owners yet.
    With ``fast``, one fingerprint query comes first: when it shows a state known to be in sync
    (cached in this process for ``dsn``, or recorded by this owner's last apply), the plan is empty
    without reading the tables. A full plan that finds nothing caches the fingerprint read before it.
    ``reading``: that query's answer, taken just before on this connection by a caller that found the
    database not known to be in sync (it is not read again).
    """
    if not fast:
        return await full_plan(conn, desired, owner, options)
    if reading is None:
        known, reading = await _known_in_sync(conn, dsn, desired, owner, options)
        if known:
            return empty_migration(fingerprint.schema_hash(desired)), {}
    migration, conflicts = await full_plan(conn, desired, owner, options, reading)
    if not migration.operations and not conflicts and not reading.running:
        key = fingerprint.plan_key(desired, options, fingerprint.schema_hash(desired))
        fingerprint.IN_SYNC.put(dsn, desired.name, owner, key, reading.fingerprint)
    return migration, conflicts


async def _known_in_sync(
    conn: asyncpg.Connection, dsn: str | None, desired: Schema, owner: str, options: MigrationOptions
) -> tuple[bool, fingerprint.Reading]:
    """One fingerprint query: whether the database is in a state known to match ``desired``."""
    key = fingerprint.plan_key(desired, options, fingerprint.schema_hash(desired))
    reading = await fingerprint.read(conn, desired.name, concerned_tables(desired, ()), owner)
    return fingerprint.matches(reading, key, fingerprint.IN_SYNC.get(dsn, desired.name, owner, key)), reading


async def full_plan(
    conn: asyncpg.Connection,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
    reading: fingerprint.Reading | None = None,
) -> tuple[Migration, dict[str, str]]:
    """Introspect, diff, probe and render: the plan made without any fingerprint shortcut.

    ``reading`` (taken just before, else read here) gives the database's position, which the plan
    hash and the backup names derive from.
    """
    if reading is None:
        reading = await fingerprint.read(conn, desired.name, concerned_tables(desired, ()), owner)
    ledger = Ledger(desired.name)
    owners = await ledger.owners_of(conn)
    claims = [key for key, o in owners.items() if o == owner]
    mine = [key for key in claims if claimed_extension(key) is None]
    extensions = [name for key in claims if (name := claimed_extension(key)) is not None]
    state = await introspect(conn, desired.name, tables=concerned_tables(desired, mine))
    adopting = [t for t in desired.table_names if t not in owners and state.schema.table(t) is not None]
    migration = await build_migration(
        conn,
        state,
        desired,
        mine,
        options=options,
        at=position(reading),
        adopting=adopting,
        recorded_kept=await ledger.kept_of(conn, owner) if mine else (),
        owner=owner,
        owned_extensions=extensions,
    )
    declared = [*desired.table_names, *(v.name for v in desired.views)]
    conflicts = {t: owners[t] for t in declared if owners.get(t, owner) != owner}
    return migration, conflicts


def gate(migration: Migration, options: MigrationOptions) -> Gate | None:
    """Why policy refuses ``migration`` without a person, or None when it may apply."""
    if options.approved_plan and options.approved_plan == migration.plan_hash:
        return None
    refusal = _policy_refusal(migration, options)
    if refusal is not None and options.approved_plan:
        return Gate(
            Refusal.APPROVAL_MISMATCH,
            f"the approval for plan {options.approved_plan} does not match plan "
            f"{migration.plan_hash}; {refusal.reason}",
        )
    return refusal


def _policy_refusal(migration: Migration, options: MigrationOptions) -> Gate | None:
    if options.data_loss_protection:
        lossy = [op for op in migration.operations if op.assessment.data_loss or op.irreversible]
        if lossy:
            return Gate(
                Refusal.DATA_LOSS_PROTECTION,
                "data-loss protection: "
                + "; ".join(f"{op.kind} {op.details}: {op.assessment.reason}" for op in lossy),
            )
    if migration.risk > options.max_risk_level:
        worst = [op for op in migration.operations if op.risk > options.max_risk_level]
        reasons = "; ".join(f"{op.kind} {op.table}.{op.details}: {op.assessment.reason}" for op in worst)
        return Gate(
            Refusal.RISK_ABOVE_POLICY,
            f"risk {migration.safety_level} exceeds max_risk_level {options.max_risk_level.name}: {reasons}",
        )
    return None


async def reconcile(
    conn: asyncpg.Connection,
    dsn: str | None,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
    confirm: Confirm | None = None,
    *,
    before_apply: BeforeApply | None = None,
    heartbeat: Heartbeat | None = None,
) -> Result:
    """Preview a plan, ask ``confirm`` (if given), then plan again, check policy and apply, under the lease.

    Only the plan made under the lease counts: a concurrent applier may have done the work (then
    the result is IN_SYNC) or be half-way through it, so policy (``gate``) and the approval are
    checked against that plan. When a person confirmed a preview that differs from it, nothing is
    applied and the result says so. Unattended, nobody sees a preview: after the fingerprint check,
    the only plan made is the one under the lease. ``before_apply`` is awaited under the lease right
    before a migration starts (the operator writes phase Applying). ``heartbeat`` (the operator's,
    shared per database) keeps the lease alive instead of a connection of its own.
    """
    reading = None
    if confirm is None:
        known, reading = await _known_in_sync(conn, dsn, desired, owner, options)
        if known:  # one statement: the steady state of a drift check, dry run (drift: report) or not
            return Result(Outcome.IN_SYNC, empty_migration(fingerprint.schema_hash(desired)), IN_SYNC_REASON)
    if confirm is None and not options.dry_run:
        return await _apply(conn, dsn, desired, owner, options, None, None, before_apply, heartbeat=heartbeat)
    resumed: tuple[str, ...] = ()
    if confirm is not None and not options.dry_run and await Ledger(desired.name).has_unfinished(conn, owner):
        # what a stopped process left goes first (it was confirmed when it started): the preview a
        # person confirms is then made of the database as that work left it
        first = await _apply(
            conn, dsn, desired, owner, replace(options, dry_run=True), None, None, heartbeat=heartbeat
        )
        if first.outcome is not Outcome.DRY_RUN:
            return first
        resumed = first.resumed
    result = await _preview_and_apply(
        conn, dsn, desired, owner, options, confirm, before_apply, heartbeat=heartbeat, reading=reading
    )
    if not resumed:
        return result
    return replace(
        result,
        resumed=resumed + result.resumed,
        reason=f"{result.reason} (after resuming {', '.join(resumed)})",
    )


async def _preview_and_apply(
    conn: asyncpg.Connection,
    dsn: str | None,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
    confirm: Confirm | None,
    before_apply: BeforeApply | None = None,
    heartbeat: Heartbeat | None = None,
    reading: fingerprint.Reading | None = None,
) -> Result:
    """The preview, the person's answer (``confirm``), then the apply under the lease (``reading``: the
    fingerprint the caller just read, without a write since, so the preview does not read it again)."""
    try:
        preview, conflicts = await plan(conn, desired, owner, options, dsn=dsn, reading=reading)
    except asyncpg.PostgresError as exc:
        if conn.is_closed():
            raise
        # another applier changed the schema while we read it; without a preview to show, only the
        # unattended path can go on, and it re-plans under the lease anyway
        reason = (
            f"planning failed, the schema changed while it was read ({type(exc).__name__}: {exc}); plan again"
        )
        if options.dry_run or confirm is not None:
            return Result(Outcome.FAILED, None, reason)
        log.info("%s; planning again under the lease", reason)
        return await _apply(conn, dsn, desired, owner, options, None, None, before_apply, heartbeat=heartbeat)
    if conflicts:
        return _conflict(preview, conflicts)
    if not preview.operations:
        if await Ledger(desired.name).has_unfinished(conn, owner):
            # a process died part-way: the schema may show nothing left (a backfill, the ledger update),
            # so close that attempt, and resume its pending work, under the lease
            if options.dry_run:
                return Result(Outcome.DRY_RUN, preview, UNFINISHED_DRY_RUN)
            return await _apply(
                conn, dsn, desired, owner, options, preview, None, before_apply, heartbeat=heartbeat
            )
        return Result(Outcome.IN_SYNC, preview, IN_SYNC_REASON)
    if options.dry_run:
        return Result(Outcome.DRY_RUN, preview, "dry run: nothing applied")
    shown = None  # the plan a person saw, which the applied one must equal
    if confirm is not None:
        shown = preview
        # a preview policy refuses is not shown: the plan under the lease decides (and records) the refusal
        if gate(preview, options) is None and not await confirm(preview):
            return Result(Outcome.DECLINED, preview, "not confirmed: nothing applied")
    return await _apply(conn, dsn, desired, owner, options, preview, shown, before_apply, heartbeat=heartbeat)


async def _apply(
    conn: asyncpg.Connection,
    dsn: str | None,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
    preview: Migration | None,
    shown: Migration | None,
    before_apply: BeforeApply | None = None,
    heartbeat: Heartbeat | None = None,
) -> Result:
    """Bootstrap the ledger, take the lease, then plan, check and apply.

    A failed migration, a lost lease or a lost connection becomes a FAILED result with one clear reason.
    """
    sealed: list[str] = []
    planned: list[Migration] = []  # the plan made under the lease, for a failure's report
    ledger = Ledger(desired.name, seal=_sealer(desired, owner, options, sealed))
    try:
        await ledger.ensure(conn)  # before the lease: the lease table lives in the ledger schema
        lease = MigrationLease(ledger, f"schema:{desired.name}", ttl=options.lease_ttl_s)
        async with lease.hold(conn, timeout=options.lease_timeout_s, heartbeat_dsn=dsn, heartbeat=heartbeat):
            result = await _apply_under_lease(
                conn, dsn, ledger, lease, desired, owner, options, shown, planned, before_apply
            )
        if result.outcome is Outcome.APPLIED and sealed:
            key = fingerprint.plan_key(desired, options, fingerprint.schema_hash(desired))
            fingerprint.IN_SYNC.put(dsn, desired.name, owner, key, sealed[-1])
        return result
    except (MigrationFailed, LockTimeout) as exc:
        return Result(Outcome.FAILED, planned[-1] if planned else preview, str(exc))
    except CONNECTION_ERRORS as exc:
        if not conn.is_closed():
            raise
        return Result(
            Outcome.FAILED,
            preview,
            f"lost the database connection ({type(exc).__name__}: {exc}) "
            "before the migration started; nothing was applied; run again",
        )


async def _apply_under_lease(
    conn: asyncpg.Connection,
    dsn: str | None,
    ledger: Ledger,
    lease: MigrationLease,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
    shown: Migration | None,
    planned: list[Migration],
    before_apply: BeforeApply | None = None,
) -> Result:
    """The authoritative plan, policy check and apply; the caller holds the lease.

    First what a stopped process left: its attempts are marked interrupted, and this owner's pending
    work (backfills, validations the schema cannot show) is resumed before the plan is made. With
    ``dry_run`` (only ``reconcile`` passes it here, before a preview), nothing new is applied.
    """
    interrupted = await ledger.mark_interrupted(conn)
    resumed = await _resume(conn, ledger, lease, desired, owner, options)
    fresh, conflicts = await plan(conn, desired, owner, options, dsn=dsn)
    planned.append(fresh)
    after = f" (after resuming {', '.join(resumed)})" if resumed else ""
    if conflicts:
        return _conflict(fresh, conflicts)
    if not fresh.operations:
        if resumed:
            return await _close_resumed(conn, ledger, desired, owner, options, fresh, resumed)
    elif options.dry_run:  # only resuming (see ``reconcile``): the new plan is for a person to see first
        return Result(Outcome.DRY_RUN, fresh, "resumed" + after, resumed=tuple(resumed))
    if not fresh.operations:
        if not interrupted:
            return Result(Outcome.IN_SYNC, fresh, IN_SYNC_REASON)
        await ledger.settle_ownership(conn, owner, _claimed(desired, options))
        return Result(
            Outcome.IN_SYNC,
            fresh,
            f"database matches the schema; closed {interrupted} attempt(s) "
            "that a stopped process left running",
        )
    refusal = gate(fresh, options)
    if refusal:
        await ledger.record_refusal(conn, fresh, owner, applied_by(), refusal.reason)
        return Result(
            Outcome.REFUSED,
            fresh,
            refusal.reason + after,
            refusal=refusal.kind,
            approved_plan=options.approved_plan,
            resumed=tuple(resumed),
        )
    if shown is not None and fresh.checksum != shown.checksum:
        return Result(
            Outcome.REFUSED,
            fresh,
            "the database changed since this plan was made; plan again" + after,
            refusal=Refusal.PLAN_CHANGED,
            approved_plan=shown.plan_hash,
            resumed=tuple(resumed),
        )
    released = [t for op in fresh.operations for t in kind_of(op.kind).released_tables(op.change)]
    # the extensions it creates are this owner's too: dropped again when it no longer declares them
    claim = _claimed(desired, options) + [
        extension_claim(op.change.subject or op.table)
        for op in fresh.operations
        if op.kind == CREATE_EXTENSION
    ]
    ledger.kept = fresh.kept_objects  # recorded with the ownership rows of the tables it claims
    if before_apply is not None:
        await before_apply(fresh)
    await execute_migration(
        conn, ledger, fresh, owner, applied_by(), options, claim=claim, release=released, fence=lease, dsn=dsn
    )
    return Result(Outcome.APPLIED, fresh, f"applied {fresh.version}{after}", resumed=tuple(resumed))


async def _resume(
    conn: asyncpg.Connection,
    ledger: Ledger,
    lease: MigrationLease,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
) -> list[str]:
    """Finish the pending work of ``owner``'s interrupted migrations; the versions resumed.

    Only work planned for this very desired schema is resumed: it was approved for it. Work of a
    schema that has moved on is recorded as skipped, and the new plan decides what is needed.
    """
    resumed = []
    for work in await ledger.unfinished(conn, owner):
        if work.schema_hash != fingerprint.schema_hash(desired):
            log.warning("not resuming %s: the desired schema changed since it was planned", work.version)
            await skip_pending(conn, ledger, work)
            continue
        log.info("resuming %d pending step(s) of %s", len(work.left), work.version)
        await resume_pending(conn, ledger, work, options, fence=lease)
        resumed.append(work.version)
    return resumed


async def _close_resumed(
    conn: asyncpg.Connection,
    ledger: Ledger,
    desired: Schema,
    owner: str,
    options: MigrationOptions,
    fresh: Migration,
    resumed: list[str],
) -> Result:
    """Nothing left to plan after resuming: the resumed migrations are complete, so they are applied.

    Ownership first (the stopped attempt may have died before claiming its tables), then each row is
    closed and sealed, so the next check is the one-query fast path.
    """
    await ledger.settle_ownership(conn, owner, _claimed(desired, options))
    async with conn.transaction():
        for version in resumed:
            record = await ledger.get(conn, version)
            await ledger.finish(conn, version, STATUS_APPLIED, record.attempts if record else 0)
    return Result(
        Outcome.APPLIED,
        fresh,
        f"resumed {', '.join(resumed)}: finished the pending steps a stopped process left",
        resumed=tuple(resumed),
    )


def _sealer(desired: Schema, owner: str, options: MigrationOptions, sealed: list[str]) -> Seal:
    """The ledger's ``seal``: the plan key and the fingerprint of the state the migration leaves.

    Taken inside the closing transaction, after the ownership rows: exactly the state it commits.
    ``sealed`` receives the fingerprint, for the in-process cache once the apply has returned.
    """

    async def seal(conn: asyncpg.Connection) -> tuple[str, str]:
        key = fingerprint.plan_key(desired, options, fingerprint.schema_hash(desired))
        value = await fingerprint.fingerprint(conn, desired.name, concerned_tables(desired, ()), owner)
        sealed.append(value)
        return key, value

    return seal


def _claimed(desired: Schema, options: MigrationOptions) -> list[str]:
    """The tables (and views) an apply of ``desired`` under ``options`` makes this owner's."""
    names = [*desired.table_names, *(v.name for v in desired.views)]
    if options.include_tables is None:
        return names
    return [t for t in names if t in options.include_tables]


def _conflict(migration: Migration, conflicts: dict[str, str]) -> Result:
    listed = ", ".join(f"{t} (owned by {o})" for t, o in sorted(conflicts.items()))
    return Result(Outcome.CONFLICT, migration, f"tables claimed by another owner: {listed}", conflicts)
