"""Reconcile one DataFlowSchema resource: read its Secret, plan, apply what policy allows.

Plain async code over the engine, no Kopf: it returns the status to write, the event to post
and whether to retry. Nothing read from the Secret ever reaches the status, events or logs.

Drift is a plan that is not empty although the spec is the one this resource applied
(``status.appliedSchemaHash`` equals the schema hash): someone changed the database. Under
``spec.policy.drift: report`` it is only reported (unless a person approves that exact plan);
under ``revert`` it is applied like any plan, within maxRiskLevel.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from dataflow import fingerprint
from dataflow.baseline import BaselineResult, baseline, to_adopt
from dataflow.errors import (
    DatabaseUnavailable,
    DataFlowError,
    InvalidDatabaseURL,
    MigrationConflictError,
    SchemaError,
)
from dataflow.k8s import kube, status
from dataflow.k8s.manifest_cache import MANIFESTS
from dataflow.k8s.reasons import EventType, Phase, Reason, classify
from dataflow.k8s.status import Extra
from dataflow.ledger import Ledger
from dataflow.manifest import Manifest
from dataflow.plan import Migration
from dataflow.pool import POOLS
from dataflow.preview import render_markdown
from dataflow.reconcile import Outcome, Refusal, Result, reconcile
from dataflow.redact import Redactor
from dataflow.resource import DriftPolicy

CONNECT_TIMEOUT_S = 10.0
PLAN_PART_LIMIT = 300_000  # bytes per ConfigMap key: three keys stay well under the 1 MiB object limit
DRIFT_LISTED = 10  # differences named in the Drifted condition; the ConfigMap has them all
log = logging.getLogger("dataflow.k8s")

SecretReader = Callable[[str, str, str], Awaitable[str]]
PeerReader = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
PlanWriter = Callable[[str, str, Mapping[str, str], Mapping[str, Any] | None], Awaitable[None]]
StatusPatcher = Callable[[str, str, Mapping[str, Any]], Awaitable[None]]
BeforeApply = Callable[[Migration], Awaitable[None]]


@dataclass(frozen=True)
class Reaction:
    """What the operator does after one reconcile.

    ``written``: the status this reconcile already wrote itself (``Applying``), which the final
    status is compared with instead of the one the handler was called with.
    """

    status: dict[str, Any]
    event: tuple[EventType, Reason, str] | None = None  # (type, reason, message)
    retry: bool = False
    written: Mapping[str, Any] | None = None


class _Context:
    def __init__(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        self.body = body
        self.name: str = meta.get("name", "")
        self.namespace: str = meta.get("namespace", "default")
        self.generation: int = int(meta.get("generation") or 0)
        self.previous: Mapping[str, Any] = body.get("status") or {}
        self.approved_plan: str | None = None
        self.plan_config_map = ""
        self.extra: tuple[Extra, ...] = ()
        self.written: Mapping[str, Any] | None = None
        self.resumed_version: str | None = None  # a stopped migration this reconcile finished

    def build(
        self,
        phase: Phase,
        reason: Reason,
        verdict: str,
        *,
        schema_hash: str = "",
        migration: Migration | None = None,
        applied: Migration | None = None,
        synced: str | None = None,
        approvable: bool = False,
        kept: int | None = None,
    ) -> dict[str, Any]:
        return status.build(
            phase,
            reason=reason,
            verdict=verdict,
            generation=self.generation,
            schema_hash=schema_hash,
            migration=migration,
            previous=self.previous,
            name=self.name,
            namespace=self.namespace,
            applied_version=applied.version if applied else self.resumed_version,
            applied_plan=applied.plan_hash if applied else None,
            approved_plan=self.approved_plan,
            plan_config_map=self.plan_config_map,
            extra=self.extra,
            synced=synced,
            approvable=approvable,
            kept=kept,
        )

    def reaction(
        self,
        phase: Phase,
        reason: Reason,
        verdict: str,
        *,
        schema_hash: str = "",
        result: Result | None = None,
        event: tuple[EventType, Reason, str] | None = None,
        retry: bool = False,
        applied: Migration | None = None,
        synced: str | None = None,
        approvable: bool = False,
        kept: int | None = None,
        migration: Migration | None = None,
    ) -> Reaction:
        st = self.build(
            phase,
            reason,
            verdict,
            schema_hash=schema_hash,
            migration=result.migration if result else migration,
            applied=applied,
            synced=synced,
            approvable=approvable,
            kept=kept,
        )
        return Reaction(st, event, retry, self.written)

    def failed(
        self,
        reason: Reason,
        message: str,
        *,
        schema_hash: str = "",
        event_message: str | None = None,
        retry: bool = True,
    ) -> Reaction:
        """A fault before or around the engine: phase Failed, a Warning event, and (mostly) a retry."""
        return self.reaction(
            Phase.FAILED,
            reason,
            message,
            schema_hash=schema_hash,
            retry=retry,
            event=(EventType.WARNING, reason, event_message or message),
        )


@dataclass(frozen=True)
class _Gate:
    """The promotion gate's answer: why this resource waits, and what its peer has applied."""

    waiting: str
    peer_applied: str


async def reconcile_resource(
    body: Mapping[str, Any],
    *,
    read_secret: SecretReader = kube.read_secret_value,
    read_peer: PeerReader = kube.read_schema_resource,
    write_plan: PlanWriter = kube.write_config_map,
    patch_status: StatusPatcher = kube.patch_status,
) -> Reaction:
    """One full reconcile of ``body`` (a DataFlowSchema object as the API returns it)."""
    ctx = _Context(body)
    try:
        manifest = MANIFESTS.parsed(body)
    except SchemaError as exc:
        return ctx.failed(Reason.INVALID_SPEC, f"Invalid spec: {exc}", event_message=str(exc), retry=False)
    ctx.approved_plan = manifest.options.approved_plan
    schema_hash = manifest.schema.hash()
    applied_hash = ctx.previous.get("appliedSchemaHash", "")

    gate = await _promotion_gate(manifest, schema_hash, read_peer)
    if gate is not None and applied_hash == schema_hash:
        # in sync with its own spec while the peer moved ahead: stay Ready, keep checking drift
        ctx.extra = (
            Extra(
                "PromotionPending",
                "True",
                Reason.PROMOTION_PENDING,
                f"{manifest.promotion_after} has applied schema {gate.peer_applied[:12] or 'nothing'}; "
                f"this resource stays at {schema_hash[:12]} until its spec is promoted.",
            ),
        )

    try:
        dsn = await read_secret(manifest.namespace, manifest.secret_name, manifest.secret_key)
    except (TimeoutError, kube.KubeError, OSError) as exc:
        message = f"Cannot read the database Secret: {exc}"
        if gate is not None and applied_hash != schema_hash:
            return ctx.reaction(
                Phase.WAITING_FOR_PROMOTION,
                Reason.WAITING_FOR_PROMOTION,
                gate.waiting,
                schema_hash=schema_hash,
            )
        return ctx.failed(Reason.SECRET_UNAVAILABLE, message, schema_hash=schema_hash)
    redact = Redactor(dsn)

    if gate is not None and applied_hash != schema_hash:
        return await _waiting(ctx, manifest, dsn, gate, schema_hash, applied_hash, redact)

    drift_check = applied_hash == schema_hash and not manifest.options.dry_run
    report = drift_check and manifest.drift_policy is DriftPolicy.REPORT
    applying = _applying_hook(ctx, schema_hash, patch_status)
    try:
        if manifest.adopt and not manifest.options.dry_run:
            adopted = await _adopt_database(dsn, manifest)
            if adopted is not None:
                return await _adopted(ctx, schema_hash, adopted, redact, write_plan)
        if report:
            preview = dataclasses.replace(
                manifest, options=dataclasses.replace(manifest.options, dry_run=True)
            )
            result = await _reconcile_database(dsn, preview)
            if result.outcome is Outcome.DRY_RUN and result.plan_hash != manifest.options.approved_plan:
                await _publish_plan(ctx, result.migration, write_plan)
                return _drift_reported(ctx, schema_hash, result, redact)
            if result.outcome is Outcome.DRY_RUN:  # a person approved reverting this exact drift
                result = await _reconcile_database(dsn, manifest, before_apply=applying)
        else:
            result = await _reconcile_database(dsn, manifest, before_apply=applying)
    except InvalidDatabaseURL as exc:
        message = f"Invalid database URL in Secret {manifest.secret_name} key {manifest.secret_key!r}: {exc.problem}"
        return ctx.failed(Reason.INVALID_DATABASE_URL, message, schema_hash=schema_hash)
    except (TimeoutError, DatabaseUnavailable, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = redact(
            f"Database unreachable: {type(exc).__name__}: {exc}"
            if not isinstance(exc, DatabaseUnavailable)
            else f"Database unreachable: {exc}"
        )
        return ctx.failed(Reason.DATABASE_UNAVAILABLE, message, schema_hash=schema_hash)
    except Exception as exc:  # noqa: BLE001 - every fault ends in a Failed phase with a redacted message
        message = redact(" ".join(f"Failed: {type(exc).__name__}: {exc}".split()))
        if not isinstance(exc, DataFlowError):
            log.error("unexpected error reconciling %s/%s: %s", ctx.namespace, ctx.name, message)
        return ctx.failed(Reason.APPLY_FAILED, message, schema_hash=schema_hash)
    await _publish_plan(ctx, result.migration, write_plan)
    return _react(ctx, manifest, schema_hash, result, redact, drift_check)


def _applying_hook(ctx: _Context, schema_hash: str, patch_status: StatusPatcher) -> BeforeApply:
    """Write phase Applying right before a migration starts (under the lease), so GitOps tools see it."""

    async def before_apply(migration: Migration) -> None:
        st = ctx.build(
            Phase.APPLYING,
            Reason.APPLYING,
            f"Applying {migration.version}: {len(migration.operations)} change(s), "
            f"risk {migration.safety_level}.",
            schema_hash=schema_hash,
            migration=migration,
        )
        try:
            await patch_status(ctx.namespace, ctx.name, status.changes(ctx.previous, st))
        except (TimeoutError, kube.KubeError, OSError) as exc:  # the apply goes on; the final status follows
            log.warning("could not write phase Applying for %s/%s: %s", ctx.namespace, ctx.name, exc)
            return
        ctx.written = st

    return before_apply


async def _promotion_gate(manifest: Manifest, schema_hash: str, read_peer: PeerReader) -> _Gate | None:
    """Why this resource must wait for its staging peer, or None."""
    after = manifest.promotion_after
    if not after:
        return None
    try:
        peer = await read_peer(manifest.namespace, after)
    except (TimeoutError, kube.KubeError, OSError) as exc:
        return _Gate(f"Waiting for {after}: cannot read it ({exc}).", "")
    if peer is None:
        return _Gate(f"Waiting for {after}: no such DataFlowSchema in {manifest.namespace}.", "")
    applied = (peer.get("status") or {}).get("appliedSchemaHash", "")
    if applied != schema_hash:
        return _Gate(
            f"Waiting for {after} to apply schema {schema_hash[:12]} first "
            f"(it has applied {applied[:12] or 'nothing yet'}).",
            applied,
        )
    return None


async def _waiting(
    ctx: _Context,
    manifest: Manifest,
    dsn: str,
    gate: _Gate,
    schema_hash: str,
    applied_hash: str,
    redact: Redactor,
) -> Reaction:
    """A new schema waits for its peer; the state this resource applied before is still checked for drift."""
    event = None
    if applied_hash:
        try:
            drifted = await _applied_state_drifted(dsn, manifest)
        except (TimeoutError, DataFlowError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("drift check of %s/%s failed: %s", ctx.namespace, ctx.name, redact(str(exc)))
            drifted = None
        if drifted:
            message = (
                f"The database changed since schema {applied_hash[:12]} was applied "
                "(its catalog fingerprint differs from the one recorded by the last apply)."
            )
            ctx.extra = (Extra("Drifted", "True", Reason.DRIFTED, message),)
            if ctx.previous.get("drifted") != "True":
                event = (EventType.WARNING, Reason.DRIFTED, message)
        elif drifted is False:
            ctx.extra = (Extra("Drifted", "False", Reason.NO_DRIFT, "No drift from the applied schema."),)
    return ctx.reaction(
        Phase.WAITING_FOR_PROMOTION,
        Reason.WAITING_FOR_PROMOTION,
        gate.waiting,
        schema_hash=schema_hash,
        event=event,
    )


async def _applied_state_drifted(dsn: str, manifest: Manifest) -> bool | None:
    """Whether the tables this owner holds differ from the state its last apply recorded (None: nothing recorded).

    The ledger records a fingerprint of the state each apply leaves; the fingerprint query reads it
    together with the current one.
    """
    async with POOLS.session(dsn, manifest.schema.name) as session:
        owners = await Ledger(manifest.schema.name).owners_of(session.conn)
        mine = sorted(t for t, o in owners.items() if o == manifest.owner)
        reading = await fingerprint.read(session.conn, manifest.schema.name, mine, manifest.owner)
    if reading.recorded_fingerprint is None or reading.running:
        return None
    return reading.fingerprint != reading.recorded_fingerprint


async def _adopt_database(dsn: str, manifest: Manifest) -> BaselineResult | None:
    """``spec.adopt``: a baseline when existing tables of the spec are held by nobody yet (no DDL).

    None when there is nothing to adopt (two catalog reads: the usual reconcile follows), or when
    another owner holds one of the tables (the usual reconcile reports that conflict).
    """
    async with POOLS.session(dsn, manifest.schema.name) as session:
        if not await to_adopt(session.conn, manifest.schema, manifest.owner, manifest.options):
            return None
        session.mark_dirty()
        try:
            result = await baseline(
                session.conn,
                dsn,
                manifest.schema,
                manifest.owner,
                manifest.options,
                heartbeat=session.heartbeat,
            )
        except MigrationConflictError:
            return None
    return result if result.recorded else None


async def _adopted(
    ctx: _Context, schema_hash: str, adopted: BaselineResult, redact: Redactor, write_plan: PlanWriter
) -> Reaction:
    """Status and event of an adoption: InSync (reason Adopted) when the spec matches the tables, else
    Planning with a retry, so the next reconcile makes the remaining changes as any plan."""
    remaining = adopted.remaining
    kept = f"; {len(adopted.kept)} object(s) not in the spec kept" if adopted.kept else ""
    verdict = redact(
        f"Adopted {', '.join(adopted.adopted)} as they are (baseline {adopted.version}, no DDL){kept}."
    )
    if remaining.operations:
        verdict += f" {len(remaining.operations)} remaining change(s) are planned next."
    await _publish_plan(ctx, remaining, write_plan, kept=True)
    ctx.resumed_version = adopted.version  # the ledger row the status names as last applied
    return ctx.reaction(
        Phase.PLANNING if remaining.operations else Phase.IN_SYNC,
        Reason.ADOPTED,
        verdict,
        schema_hash=schema_hash,
        migration=remaining,
        event=(EventType.NORMAL, Reason.ADOPTED, verdict),
        retry=bool(remaining.operations),
        kept=len(adopted.kept),
    )


async def _reconcile_database(
    dsn: str, manifest: Manifest, before_apply: BeforeApply | None = None
) -> Result:
    """On a session of the database's shared pool, after the resources ahead of it on the same schema.

    A result other than in-sync may have left session state behind: the session is fully reset.
    """
    async with POOLS.session(dsn, manifest.schema.name) as session:
        result = await reconcile(
            session.conn,
            dsn,
            manifest.schema,
            manifest.owner,
            manifest.options,
            before_apply=before_apply,
            heartbeat=session.heartbeat,
        )
        if result.outcome is not Outcome.IN_SYNC:
            session.mark_dirty()
        return result


def _react(
    ctx: _Context, manifest: Manifest, schema_hash: str, result: Result, redact: Redactor, drift_check: bool
) -> Reaction:
    """Status, event and retry for an engine result, decided by its outcome and refusal kind alone.

    ``drift_check``: the spec is the one applied before, so any plan is drift (reverted under
    ``drift: revert``, which its event says).
    """
    verdict = _verdict(result, manifest, redact)
    kind = classify(result.outcome, result.refusal)
    event = None
    if kind.event is not None:
        message = verdict
        if kind.phase is Phase.AWAITING_APPROVAL and result.plan_hash:
            message += f" Run: {status.approve_command(ctx.name, ctx.namespace, result.plan_hash)}"
        event = (kind.event, kind.reason, message)
    applied = result.migration if result.outcome is Outcome.APPLIED else None
    if applied is not None and not applied.operations:  # only finished what a stopped process left
        applied, ctx.resumed_version = None, result.resumed[-1] if result.resumed else None
    drift: Extra | None = None
    if result.outcome in (Outcome.IN_SYNC, Outcome.APPLIED):
        drift = Extra("Drifted", "False", Reason.NO_DRIFT, "No drift from the applied schema.")
    if drift_check and applied is not None:
        message = f"Drift reverted (spec.policy.drift: revert): {verdict}"
        drift = Extra("Drifted", "False", Reason.DRIFT_REVERTED, message)
        event = (EventType.NORMAL, Reason.DRIFT_REVERTED, message)
    elif drift_check and result.needs_approval:
        drift = Extra("Drifted", "True", Reason.DRIFTED, f"Reverting the drift needs approval: {verdict}")
    if drift is not None:
        ctx.extra = (*ctx.extra, drift)
    kept = result.migration.kept_objects if result.migration is not None else []
    return ctx.reaction(
        kind.phase,
        kind.reason,
        verdict,
        schema_hash=schema_hash,
        result=result,
        event=event,
        retry=kind.retry,
        applied=applied,
        kept=len(kept) if kept else None,  # a full plan counts them; the fast path's empty plan does not
    )


def _drift_reported(ctx: _Context, schema_hash: str, result: Result, redact: Redactor) -> Reaction:
    """Drift under ``drift: report``: nothing applied; a Drifted condition, and a Warning event when it is new."""
    m = result.migration
    assert m is not None and m.operations
    listed = "; ".join(redact(f"{op.kind} {op.table}: {op.details}") for op in m.operations[:DRIFT_LISTED])
    more = f"; and {len(m.operations) - DRIFT_LISTED} more" if len(m.operations) > DRIFT_LISTED else ""
    verdict = (
        f"Drifted: the database differs from the applied schema in {len(m.operations)} change(s), "
        f"risk {m.safety_level}: {listed}{more}. Not reverted (spec.policy.drift: report); "
        f"approve plan {m.plan_hash} or set drift: revert to revert it."
    )
    ctx.extra = (*ctx.extra, Extra("Drifted", "True", Reason.DRIFTED, verdict))
    before = ctx.previous
    known = before.get("drifted") == "True" and before.get("planHash") == m.plan_hash
    previous_phase = before.get("phase")
    phase = Phase(previous_phase) if previous_phase in status.APPLIED_PHASES else Phase.IN_SYNC
    return ctx.reaction(
        phase,
        Reason.DRIFTED,
        verdict,
        schema_hash=schema_hash,
        result=result,
        event=None if known else (EventType.WARNING, Reason.DRIFTED, verdict),
        synced="False",
        approvable=True,
    )


async def _publish_plan(
    ctx: _Context, migration: Migration | None, write_plan: PlanWriter, kept: bool = False
) -> None:
    """Write the full plan to ConfigMap ``<name>-plan`` (once per plan hash); status names it.

    ``kept``: also a plan with no operations that keeps objects (an adoption's: it lists them).
    """
    if migration is None or not (migration.operations or (kept and migration.kept_objects)):
        return
    name = f"{ctx.name}-plan"
    if ctx.previous.get("planHash") == migration.plan_hash and ctx.previous.get("planConfigMap") == name:
        ctx.plan_config_map = name
        return
    data = {
        "planHash": migration.plan_hash,
        "plan.md": _truncated(
            render_markdown(migration, title=f"DataFlow plan for {ctx.namespace}/{ctx.name}")
        ),
        "up.sql": _truncated(_sql(migration.sql_up), sql=True),
        "down.sql": _truncated(_sql(migration.sql_down), sql=True),
    }
    try:
        await write_plan(ctx.namespace, name, data, kube.owner_reference(ctx.body))
    except (TimeoutError, kube.KubeError, OSError) as exc:
        log.warning("could not write the plan ConfigMap of %s/%s: %s", ctx.namespace, ctx.name, exc)
        return
    ctx.plan_config_map = name


def _sql(statements: list[str]) -> str:
    return "".join(s.rstrip() + ("\n\n" if s.rstrip().endswith(";") else ";\n\n") for s in statements)


def _truncated(text: str, sql: bool = False) -> str:
    """``text`` cut to :data:`PLAN_PART_LIMIT` bytes, with a note saying where the whole plan is."""
    raw = text.encode()
    if len(raw) <= PLAN_PART_LIMIT:
        return text
    note = (
        f"truncated at {PLAN_PART_LIMIT} of {len(raw)} bytes (a ConfigMap holds at most 1 MiB): "
        "run `dataflow plan -f <manifest>` for the whole plan"
    )
    cut = raw[:PLAN_PART_LIMIT].decode(errors="ignore")
    cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else cut
    return cut + (f"-- {note}\n" if sql else f"\n> {note}\n")


def _verdict(result: Result, manifest: Manifest, redact: Redactor) -> str:
    """The one-line verdict people read in status and events."""
    m = result.migration
    changes = f"{len(m.operations)} change(s)" if m is not None else "no plan"
    risk = m.safety_level if m is not None else ""
    if result.outcome is Outcome.IN_SYNC:
        return "Database matches the schema."
    resumed = (
        f" (after finishing {', '.join(result.resumed)}, which a stopped process left)"
        if result.resumed
        else ""
    )
    if result.outcome is Outcome.APPLIED and m is not None and not m.operations and result.resumed:
        return f"Resumed and finished {', '.join(result.resumed)}: the work a stopped process left is done."
    if result.outcome is Outcome.APPLIED and m is not None:
        return f"Applied {m.version}: {changes}, risk {risk}{resumed}."
    if result.outcome is Outcome.DRY_RUN:
        return f"Dry run: {changes} planned, risk {risk}; nothing applied (spec.policy.dryRun)."
    if result.outcome is Outcome.CONFLICT:
        return f"Blocked: {redact(result.reason)}."
    if result.needs_approval and m is not None:
        why = (
            f"exceed maxRiskLevel {manifest.options.max_risk_level.name}"
            if result.refusal is not Refusal.DATA_LOSS_PROTECTION and m.risk > manifest.options.max_risk_level
            else "would lose data (dataLossProtection)"
        )
        note = (
            f" The approval for plan {result.approved_plan} does not match this plan."
            if result.refusal is Refusal.APPROVAL_MISMATCH
            else ""
        )
        return f"{changes} at risk {risk} {why}: approve plan {m.plan_hash} to apply.{note}"
    return f"Failed: {redact(result.reason)}"
