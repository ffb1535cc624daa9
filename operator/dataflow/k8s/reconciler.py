"""Reconcile one DataFlowSchema resource: read its Secret, plan, apply what policy allows.

Plain async code over the engine, no Kopf: it returns the status to write, the event to post
and whether to retry. Nothing read from the Secret ever reaches the status, events or logs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import asyncpg

from dataflow.connect import connect
from dataflow.errors import DatabaseUnavailable, DataFlowError, InvalidDatabaseURL, SchemaError
from dataflow.k8s import kube, status
from dataflow.manifest import Manifest, from_resource
from dataflow.reconcile import Outcome, Result, reconcile
from dataflow.redact import Redactor

CONNECT_TIMEOUT_S = 10.0
log = logging.getLogger("dataflow.k8s")

SecretReader = Callable[[str, str, str], Awaitable[str]]
PeerReader = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class Reaction:
    """What the operator does after one reconcile."""

    status: dict[str, Any]
    event: tuple[str, str, str] | None = None  # (type, reason, message)
    retry: bool = False


class _Context:
    def __init__(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        self.name: str = meta.get("name", "")
        self.namespace: str = meta.get("namespace", "default")
        self.generation: int = int(meta.get("generation") or 0)
        self.previous: Mapping[str, Any] = body.get("status") or {}

    def reaction(self, phase: str, reason: str, verdict: str, *, schema_hash: str = "", result: Result | None = None,
                 event: tuple[str, str, str] | None = None, retry: bool = False,
                 applied_version: str | None = None) -> Reaction:
        st = status.build(phase, reason=reason, verdict=verdict, generation=self.generation, schema_hash=schema_hash,
                          migration=result.migration if result else None, previous=self.previous, name=self.name,
                          namespace=self.namespace, applied_version=applied_version)
        return Reaction(st, event, retry)


async def reconcile_resource(body: Mapping[str, Any], *, read_secret: SecretReader = kube.read_secret_value,
                             read_peer: PeerReader = kube.read_schema_resource) -> Reaction:
    """One full reconcile of ``body`` (a DataFlowSchema object as the API returns it)."""
    ctx = _Context(body)
    try:
        manifest = from_resource(body)
    except SchemaError as exc:
        return ctx.reaction("Failed", "InvalidSpec", f"Invalid spec: {exc}", event=("Warning", "InvalidSpec", str(exc)))
    schema_hash = manifest.schema.hash()

    waiting = await _promotion_gate(manifest, schema_hash, read_peer)
    if waiting:
        return ctx.reaction("WaitingForPromotion", "WaitingForPromotion", waiting, schema_hash=schema_hash)

    try:
        dsn = await read_secret(manifest.namespace, manifest.secret_name, manifest.secret_key)
    except (kube.KubeError, OSError, asyncio.TimeoutError) as exc:
        message = f"Cannot read the database Secret: {exc}"
        return ctx.reaction("Failed", "SecretUnavailable", message, schema_hash=schema_hash,
                            event=("Warning", "SecretUnavailable", message), retry=True)
    redact = Redactor(dsn)
    try:
        result = await _reconcile_database(dsn, manifest)
    except InvalidDatabaseURL as exc:
        message = f"Invalid database URL in Secret {manifest.secret_name} key {manifest.secret_key!r}: {exc.problem}"
        return ctx.reaction("Failed", "InvalidDatabaseURL", message, schema_hash=schema_hash,
                            event=("Warning", "InvalidDatabaseURL", message), retry=True)
    except (DatabaseUnavailable, OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = redact(f"Database unreachable: {type(exc).__name__}: {exc}"
                         if not isinstance(exc, DatabaseUnavailable) else f"Database unreachable: {exc}")
        return ctx.reaction("Failed", "DatabaseUnavailable", message, schema_hash=schema_hash,
                            event=("Warning", "DatabaseUnavailable", message), retry=True)
    except Exception as exc:  # noqa: BLE001 - every fault ends in a Failed phase with a redacted message
        message = redact(" ".join(f"Failed: {type(exc).__name__}: {exc}".split()))
        if not isinstance(exc, DataFlowError):
            log.error("unexpected error reconciling %s/%s: %s", ctx.namespace, ctx.name, message)
        return ctx.reaction("Failed", "ApplyFailed", message, schema_hash=schema_hash,
                            event=("Warning", "ApplyFailed", message), retry=True)
    return _react(ctx, manifest, schema_hash, result, redact)


async def _promotion_gate(manifest: Manifest, schema_hash: str, read_peer: PeerReader) -> str | None:
    """Why this resource must wait for its staging peer, or None."""
    after = manifest.promotion_after
    if not after:
        return None
    try:
        peer = await read_peer(manifest.namespace, after)
    except (kube.KubeError, OSError, asyncio.TimeoutError) as exc:
        return f"Waiting for {after}: cannot read it ({exc})."
    if peer is None:
        return f"Waiting for {after}: no such DataFlowSchema in {manifest.namespace}."
    applied = (peer.get("status") or {}).get("appliedSchemaHash", "")
    if applied != schema_hash:
        return (f"Waiting for {after} to apply schema {schema_hash[:12]} first "
                f"(it has applied {applied[:12] or 'nothing yet'}).")
    return None


async def _reconcile_database(dsn: str, manifest: Manifest) -> Result:
    conn = await connect(dsn, manifest.schema.name, timeout=CONNECT_TIMEOUT_S)
    try:
        return await reconcile(conn, dsn, manifest.schema, manifest.owner, manifest.policy)
    finally:
        await conn.close()


def _react(ctx: _Context, manifest: Manifest, schema_hash: str, result: Result, redact: Redactor) -> Reaction:
    m = result.migration
    reason_text = redact(result.reason)
    if result.outcome is Outcome.IN_SYNC:
        return ctx.reaction("InSync", "InSync", "Database matches the schema.", schema_hash=schema_hash, result=result)
    if result.outcome is Outcome.APPLIED:
        verdict = f"Applied {m.version}: {len(m.operations)} change(s), risk {m.safety_level}."
        return ctx.reaction("Applied", "Applied", verdict, schema_hash=schema_hash, result=result,
                            event=("Normal", "Applied", verdict), applied_version=m.version)
    if result.outcome is Outcome.DRY_RUN:
        verdict = f"Dry run: {len(m.operations)} change(s) planned, risk {m.safety_level}; nothing applied."
        return ctx.reaction("Planning", "DryRun", verdict, schema_hash=schema_hash, result=result)
    if result.outcome is Outcome.CONFLICT:
        verdict = f"Blocked: {reason_text}."
        return ctx.reaction("Blocked", "Conflict", verdict, schema_hash=schema_hash, result=result,
                            event=("Warning", "Conflict", verdict))
    if result.outcome is Outcome.REFUSED and m is not None and "changed since this plan" not in result.reason:
        stale = manifest.policy.approved_plan
        note = f" The approval for plan {stale} does not match this plan." if stale and stale != m.plan_hash else ""
        verdict = (f"{len(m.operations)} change(s) at risk {m.safety_level} exceed maxRiskLevel "
                   f"{manifest.policy.max_risk_level.name}: approve plan {m.plan_hash} to apply.{note}")
        command = status.approve_command(ctx.name, ctx.namespace, m.plan_hash)
        return ctx.reaction("AwaitingApproval", "ApprovalRequired", verdict, schema_hash=schema_hash, result=result,
                            event=("Warning", "ApprovalRequired", f"{verdict} Run: {command}"))
    verdict = f"Failed: {reason_text}"
    return ctx.reaction("Failed", "ApplyFailed", verdict, schema_hash=schema_hash, result=result,
                        event=("Warning", "ApplyFailed", verdict), retry=True)
