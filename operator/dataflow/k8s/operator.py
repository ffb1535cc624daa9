"""Kopf handlers: a thin adapter from Kubernetes events to :func:`reconcile_resource`.

Run with ``kopf run -m dataflow.k8s.operator`` (or ``dataflow operator``). Tunables from the
environment: ``DATAFLOW_DRIFT_TICK`` (seconds between timer ticks, default 30),
``DATAFLOW_RETRY_BASE`` (first retry delay, default 5 s, doubling up to 5 min).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timezone
from typing import Any

import kopf

from dataflow.k8s import kube
from dataflow.k8s.kube import GROUP, PLURAL, VERSION
from dataflow.k8s.reconciler import Reaction, reconcile_resource
from dataflow.errors import SchemaError
from dataflow.manifest import duration_ms

DRIFT_TICK_S = float(os.environ.get("DATAFLOW_DRIFT_TICK", "30"))
RETRY_BASE_S = float(os.environ.get("DATAFLOW_RETRY_BASE", "5"))
RETRY_MAX_S = 300.0

_locks: dict[str, asyncio.Lock] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.posting.level = logging.WARNING  # our own events say what happened
    logging.getLogger("dataflow").setLevel(os.environ.get("DATAFLOW_LOG_LEVEL", "INFO"))


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: the kubeconfig. Kept for the operator's own reads."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    return kube.remember(info)


def _lock(uid: str) -> asyncio.Lock:
    return _locks.setdefault(uid, asyncio.Lock())


async def _react(body: kopf.Body, patch: kopf.Patch, retry: int) -> None:
    async with _lock(body.metadata.uid or body.metadata.name):
        reaction: Reaction = await reconcile_resource(body)
    patch["status"] = reaction.status
    if reaction.event:
        kind, reason, message = reaction.event
        kopf.event(body, type=kind, reason=reason, message=message)
    if reaction.retry:
        delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** retry)
        raise kopf.TemporaryError(reaction.status["message"], delay=delay)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_handler(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    """Spec or annotation changed (or the operator restarted): plan, and apply what is allowed."""
    await _react(body, patch, retry)


def drift_check_due(body: kopf.Body) -> bool:
    """Waiting resources are re-checked every tick; the others every spec.policy.driftCheckInterval."""
    st = body.get("status") or {}
    if not st.get("phase"):
        return False
    if st["phase"] == "WaitingForPromotion":
        return True
    try:
        interval = duration_ms((body.spec.get("policy") or {}).get("driftCheckInterval", "5m"), "driftCheckInterval")
    except (SchemaError, AttributeError, TypeError):  # an invalid spec is reported by the reconcile handler
        interval = duration_ms("5m", "driftCheckInterval")
    last = st.get("lastReconcileTime")
    if not last:
        return True
    elapsed = datetime.now(timezone.utc) - datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return elapsed.total_seconds() * 1000 >= interval


@kopf.timer(GROUP, VERSION, PLURAL, interval=DRIFT_TICK_S, initial_delay=DRIFT_TICK_S)
async def drift_check(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    """Detect drift (someone changed the database) and promotion becoming possible."""
    if drift_check_due(body):
        await _react(body, patch, retry)
