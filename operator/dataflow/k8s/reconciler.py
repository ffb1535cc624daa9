"""Reconcile one DataFlowSchema resource: read its Secret, plan, apply what policy allows.

Plain async code over the engine, no Kopf: it returns the status to write, the event to post
and whether to retry. Nothing read from the Secret ever reaches the status, events or logs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from dataflow.errors import DatabaseUnavailable, DataFlowError, InvalidDatabaseURL, SchemaError
from dataflow.k8s import kube, status
from dataflow.k8s.manifest_cache import MANIFESTS
from dataflow.k8s.reasons import EventType, Phase, Reason, classify
from dataflow.manifest import Manifest
from dataflow.pool import POOLS
from dataflow.reconcile import Outcome, Refusal, Result, reconcile
from dataflow.redact import Redactor

CONNECT_TIMEOUT_S = 10.0
log = logging.getLogger("dataflow.k8s")

SecretReader = Callable[[str, str, str], Awaitable[str]]
PeerReader = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class Reaction:
    """What the operator does after one reconcile."""

    status: dict[str, Any]
    event: tuple[EventType, Reason, str] | None = None  # (type, reason, message)
    retry: bool = False


class _Context:
    def __init__(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        self.name: str = meta.get("name", "")
        self.namespace: str = meta.get("namespace", "default")
        self.generation: int = int(meta.get("generation") or 0)
        self.previous: Mapping[str, Any] = body.get("status") or {}

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
        applied_version: str | None = None,
    ) -> Reaction:
        st = status.build(
            phase,
            reason=reason,
            verdict=verdict,
            generation=self.generation,
            schema_hash=schema_hash,
            migration=result.migration if result else None,
            previous=self.previous,
            name=self.name,
            namespace=self.namespace,
            applied_version=applied_version,
        )
        return Reaction(st, event, retry)

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


async def reconcile_resource(
    body: Mapping[str, Any],
    *,
    read_secret: SecretReader = kube.read_secret_value,
    read_peer: PeerReader = kube.read_schema_resource,
) -> Reaction:
    """One full reconcile of ``body`` (a DataFlowSchema object as the API returns it)."""
    ctx = _Context(body)
    try:
        manifest = MANIFESTS.parsed(body)
    except SchemaError as exc:
        return ctx.failed(Reason.INVALID_SPEC, f"Invalid spec: {exc}", event_message=str(exc), retry=False)
    schema_hash = manifest.schema.hash()

    waiting = await _promotion_gate(manifest, schema_hash, read_peer)
    if waiting:
        return ctx.reaction(
            Phase.WAITING_FOR_PROMOTION, Reason.WAITING_FOR_PROMOTION, waiting, schema_hash=schema_hash
        )

    try:
        dsn = await read_secret(manifest.namespace, manifest.secret_name, manifest.secret_key)
    except (TimeoutError, kube.KubeError, OSError) as exc:
        message = f"Cannot read the database Secret: {exc}"
        return ctx.failed(Reason.SECRET_UNAVAILABLE, message, schema_hash=schema_hash)
    redact = Redactor(dsn)
    try:
        result = await _reconcile_database(dsn, manifest)
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
    return _react(ctx, manifest, schema_hash, result, redact)


async def _promotion_gate(manifest: Manifest, schema_hash: str, read_peer: PeerReader) -> str | None:
    """Why this resource must wait for its staging peer, or None."""
    after = manifest.promotion_after
    if not after:
        return None
    try:
        peer = await read_peer(manifest.namespace, after)
    except (TimeoutError, kube.KubeError, OSError) as exc:
        return f"Waiting for {after}: cannot read it ({exc})."
    if peer is None:
        return f"Waiting for {after}: no such DataFlowSchema in {manifest.namespace}."
    applied = (peer.get("status") or {}).get("appliedSchemaHash", "")
    if applied != schema_hash:
        return (
            f"Waiting for {after} to apply schema {schema_hash[:12]} first "
            f"(it has applied {applied[:12] or 'nothing yet'})."
        )
    return None


async def _reconcile_database(dsn: str, manifest: Manifest) -> Result:
    """On a session of the database's shared pool, after the resources ahead of it on the same schema.

    A result other than in-sync may have left session state behind: the session is fully reset.
    """
    async with POOLS.session(dsn, manifest.schema.name) as session:
        result = await reconcile(
            session.conn, dsn, manifest.schema, manifest.owner, manifest.options, heartbeat=session.heartbeat
        )
        if result.outcome is not Outcome.IN_SYNC:
            session.mark_dirty()
        return result


def _react(ctx: _Context, manifest: Manifest, schema_hash: str, result: Result, redact: Redactor) -> Reaction:
    """Status, event and retry for an engine result, decided by its outcome and refusal kind alone."""
    verdict = _verdict(result, manifest, redact)
    kind = classify(result.outcome, result.refusal)
    event = None
    if kind.event is not None:
        message = verdict
        if kind.phase is Phase.AWAITING_APPROVAL and result.plan_hash:
            message += f" Run: {status.approve_command(ctx.name, ctx.namespace, result.plan_hash)}"
        event = (kind.event, kind.reason, message)
    applied = result.migration.version if result.outcome is Outcome.APPLIED and result.migration else None
    return ctx.reaction(
        kind.phase,
        kind.reason,
        verdict,
        schema_hash=schema_hash,
        result=result,
        event=event,
        retry=kind.retry,
        applied_version=applied,
    )


def _verdict(result: Result, manifest: Manifest, redact: Redactor) -> str:
    """The one-line verdict people read in status and events."""
    m = result.migration
    changes = f"{len(m.operations)} change(s)" if m is not None else "no plan"
    risk = m.safety_level if m is not None else ""
    if result.outcome is Outcome.IN_SYNC:
        return "Database matches the schema."
    if result.outcome is Outcome.APPLIED and m is not None:
        return f"Applied {m.version}: {changes}, risk {risk}."
    if result.outcome is Outcome.DRY_RUN:
        return f"Dry run: {changes} planned, risk {risk}; nothing applied."
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
