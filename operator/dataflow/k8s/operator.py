"""Kopf handlers: a thin adapter from Kubernetes events to :func:`reconcile_resource`.

Run with ``kopf run -m dataflow.k8s.operator`` (or ``dataflow operator``). Tunables from the
environment, read when the operator starts (not at import): ``DATAFLOW_DRIFT_TICK`` (seconds
between drift and promotion checks of a resource, default 30; the timer wakes every
:data:`TIMER_TICK_S`, so shorter values act as that), ``DATAFLOW_RETRY_BASE`` (first retry delay,
default 5 s, doubling with jitter up to 5 min), ``DATAFLOW_LOG_LEVEL``, ``DATAFLOW_METRICS_PORT``
(Prometheus metrics, default 8081, 0: off), ``DATAFLOW_WATCHED_NAMESPACES`` (comma-separated: where
the namespaced peering objects are, for the health probe), ``POD_ID``/``POD_NAME`` (the replica's
peering identity and priority, see :mod:`dataflow.k8s.ha`), ``DATAFLOW_POOL_MAX`` (database
sessions per database, shared by the resources there, default 5; plus one lease heartbeat).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from dataflow.errors import SchemaError
from dataflow.k8s import deletion, ha, kube, metrics, status
from dataflow.k8s.kube import GROUP, PLURAL, VERSION
from dataflow.k8s.reasons import Phase
from dataflow.k8s.reconciler import Reaction, reconcile_resource
from dataflow.manifest import duration_ms
from dataflow.pool import DEFAULT_MAX_SIZE, POOLS
from dataflow.retry import Backoff

TIMER_TICK_S = 5.0  # how often each resource's timer wakes; it acts every OperatorConfig.drift_tick_s
RETRY_MAX_S = 300.0

_locks: dict[str, asyncio.Lock] = {}


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's tunables, read once at startup and handed to every handler through Kopf's memo."""

    drift_tick_s: float = 30.0
    retry: Backoff = field(default_factory=lambda: Backoff(5.0, RETRY_MAX_S))
    log_level: str = "INFO"
    pool_max: int = DEFAULT_MAX_SIZE
    metrics_port: int = metrics.DEFAULT_PORT  # 0: no metrics endpoint

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorConfig:
        """The config from ``DATAFLOW_*`` variables; SchemaError names a variable that is not valid."""
        return cls(
            drift_tick_s=_seconds(env, "DATAFLOW_DRIFT_TICK", cls.drift_tick_s, allow_zero=True),
            retry=Backoff(_seconds(env, "DATAFLOW_RETRY_BASE", 5.0), RETRY_MAX_S),
            log_level=_log_level(env.get("DATAFLOW_LOG_LEVEL", cls.log_level)),
            pool_max=_count(env, "DATAFLOW_POOL_MAX", cls.pool_max),
            metrics_port=_count(env, "DATAFLOW_METRICS_PORT", cls.metrics_port, least=0, most=65535),
        )


def _seconds(env: Mapping[str, str], name: str, default: float, allow_zero: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SchemaError(name, f"expected a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or value > RETRY_MAX_S * 12:
        raise SchemaError(
            name,
            f"expected seconds between {'0' if allow_zero else 'above 0'} and "
            f"{RETRY_MAX_S * 12:.0f}, got {raw!r}",
        )
    return value


def _count(env: Mapping[str, str], name: str, default: int, least: int = 1, most: int = 100) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.strip().isdigit()) or not least <= int(raw) <= most:
        raise SchemaError(name, f"expected a whole number from {least} to {most}, got {raw!r}")
    return int(raw)


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SchemaError(
            "DATAFLOW_LOG_LEVEL", f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}"
        )
    return level


def _config(memo: kopf.Memo) -> OperatorConfig:
    """The config the startup handler put in the memo (defaults if a handler runs without it)."""
    config = memo.get("config")
    return config if isinstance(config, OperatorConfig) else OperatorConfig()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Read the tunables now (each resource's memo is a copy of this one) and set Kopf's persistence."""
    try:
        config = OperatorConfig.from_env()
    except SchemaError as exc:
        raise kopf.PermanentError(f"invalid operator setting: {exc}") from None
    memo["config"] = config
    POOLS.configure(config.pool_max)
    ha.configure_peering(settings)  # a distinct peering priority and a short peering lifetime
    memo["metrics_server"] = metrics.serve(config.metrics_port)
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = DigestDiffBaseStorage()
    settings.posting.level = logging.WARNING  # our own events say what happened
    logging.getLogger("dataflow").setLevel(config.log_level)


@kopf.on.cleanup()
async def close_pools(**_: Any) -> None:
    """Close the database sessions (and the lease heartbeats) and the API client the operator keeps."""
    await POOLS.close()
    await kube.close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: the kubeconfig. Kept for the operator's own reads."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    return kube.remember(info)


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's diff base as a digest of the handled spec and annotations, not a copy of them.

    Kopf only needs to know whether anything changed since it last handled the object (the handlers
    read the body, never Kopf's field diff); a full copy of a 1,000-table spec would not fit the API
    server's 256 KiB limit on annotations beside kubectl's last-applied copy.
    """

    def __init__(self) -> None:
        super().__init__(
            prefix="kopf.dataflow.dev", key="handled-digest"
        )  # not dataflow.dev: Kopf ignores its own prefix

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        canonical = json.dumps(essence, sort_keys=True, separators=(",", ":"))
        return cast(kopf.BodyEssence, {"sha256": hashlib.sha256(canonical.encode()).hexdigest()})


def _lock(uid: str) -> asyncio.Lock:
    return _locks.setdefault(uid, asyncio.Lock())


async def _react(
    body: kopf.Body,
    patch: kopf.Patch,
    retry: int,
    memo: kopf.Memo,
    config: OperatorConfig,
    drift_check: bool = False,
) -> None:
    """Reconcile, then PATCH status only with what changed (nothing in a steady state)."""
    async with _lock(body.metadata.uid or body.metadata.name):
        # Kopf may hand a timer a body cached before our last status PATCH landed: what this process
        # last wrote is newer, and fields carried over (lastAppliedVersion...) must come from it
        seen = memo.get("status")
        view = {**body, "status": seen} if isinstance(seen, Mapping) else body
        started = time.monotonic()
        reaction: Reaction = await reconcile_resource(view)
    metrics.observe_reconcile(
        body.metadata.uid or body.metadata.name,
        reaction.status,
        view.get("status") or {},
        time.monotonic() - started,
        drift_check=drift_check,
    )
    memo["last_check"] = asyncio.get_running_loop().time()
    current = reaction.written if reaction.written is not None else (view.get("status") or {})
    changed = status.changes(current, reaction.status)
    memo["status"] = reaction.status
    if changed:
        patch["status"] = changed
    if reaction.event:
        kind, reason, message = reaction.event
        kopf.event(body, type=kind.value, reason=reason.value, message=message)
    if reaction.retry:
        raise kopf.TemporaryError(reaction.status["message"], delay=config.retry.delay(retry + 1))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_handler(
    body: kopf.Body, patch: kopf.Patch, retry: int, memo: kopf.Memo, **_: Any
) -> None:
    """Spec or annotation changed (or the operator restarted): plan, and apply what is allowed."""
    await _react(body, patch, retry, memo, _config(memo))


def drift_check_due(body: kopf.Body, memo: kopf.Memo, now: float) -> bool:
    """Waiting resources are re-checked every tick; the others every spec.policy.driftCheckInterval.

    The time of the last check is this process's (Kopf's per-resource memo), not a status field:
    a status that changes on every check would be PATCHed on every check.
    """
    st = body.get("status") or {}
    if not st.get("phase"):
        return False
    if st["phase"] == Phase.WAITING_FOR_PROMOTION:
        return True
    try:
        interval = duration_ms(
            (body.spec.get("policy") or {}).get("driftCheckInterval", "5m"), "driftCheckInterval"
        )
    except (SchemaError, AttributeError, TypeError):  # an invalid spec is reported by the reconcile handler
        interval = duration_ms("5m", "driftCheckInterval")
    last = memo.get("last_check")
    return last is None or (now - last) * 1000 >= interval


def drift_tick_due(memo: kopf.Memo, drift_tick_s: float, now: float) -> bool:
    """Whether ``drift_tick_s`` has passed since this resource's last drift tick (then it is recorded as now)."""
    if now - memo.get("last_drift_tick", -math.inf) < drift_tick_s:
        return False
    memo["last_drift_tick"] = now
    return True


@kopf.timer(GROUP, VERSION, PLURAL, interval=TIMER_TICK_S, initial_delay=TIMER_TICK_S)
async def drift_check(body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int = 0, **_: Any) -> None:
    """Detect drift (someone changed the database) and promotion becoming possible."""
    config = _config(memo)
    now = asyncio.get_running_loop().time()
    if drift_tick_due(memo, config.drift_tick_s, now) and drift_check_due(body, memo, now):
        await _react(body, patch, retry, memo, config, drift_check=True)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def release_handler(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    """Apply spec.deletionPolicy (Retain: release the tables' claim); Kopf's finalizer waits for it."""
    uid = body.metadata.uid or body.metadata.name
    async with _lock(uid):
        try:
            reason, message = await deletion.release(body)
        except deletion.ReleasePending as exc:
            kopf.event(body, type="Warning", reason=deletion.DeletionReason.RELEASE_PENDING, message=str(exc))
            raise kopf.TemporaryError(str(exc), delay=_config(memo).retry.delay(retry + 1)) from None
    kopf.event(body, type="Normal", reason=reason.value, message=message)
    metrics.forget(uid)
    _locks.pop(uid, None)


# metrics and probes ---------------------------------------------------------------------------
@kopf.on.cleanup()
def stop_metrics(memo: kopf.Memo, **_: Any) -> None:
    metrics.forget_all()
    server = memo.get("metrics_server")
    if isinstance(server, metrics.Server):
        server.stop()


@kopf.on.probe(id="replica")
async def replica_probe(settings: kopf.OperatorSettings, **_: Any) -> str:
    """Fails (HTTP 500 on --liveness) when this replica is paused and no replica is active."""
    namespaces = [ns for ns in os.environ.get("DATAFLOW_WATCHED_NAMESPACES", "").split(",") if ns]
    return await ha.health(settings, namespaces)
