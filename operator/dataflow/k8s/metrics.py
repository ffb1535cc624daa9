"""Prometheus metrics of the operator, served with prometheus-client on ``DATAFLOW_METRICS_PORT``.

The operator calls :func:`observe_reconcile` after each reconcile and :func:`forget` when a
resource is gone; the connection pool calls :func:`set_pool_connections`. Labels hold phases,
reasons and database labels only: never a DSN, a password or a Secret's content.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dataflow.k8s.reasons import Phase

DEFAULT_PORT = 8081
log = logging.getLogger("dataflow.k8s")

RECONCILES = Counter(
    "dataflow_reconciles",
    "Reconciles of DataFlowSchema resources, by the phase and reason they ended in.",
    ["phase", "reason"],
)
MIGRATION_SECONDS = Histogram(
    "dataflow_migration_duration_seconds",
    "Wall time of reconciles that applied a migration (plan, lease, apply).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
DRIFT = Counter(
    "dataflow_drift_detected",
    "Times a database was found to differ from a schema it had already applied.",
)
POOL_IN_USE = Gauge(
    "dataflow_pool_connections_in_use",
    "Connections of the operator's pool to one database that are checked out now.",
    ["database"],
)


class _PhaseCollector(Collector):
    """Resources by phase and approvals pending, computed at scrape time from the last status seen."""

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()

    def record(self, uid: str, phase: str | None) -> None:
        with self._lock:
            if phase is None:
                self._phases.pop(uid, None)
            else:
                self._phases[uid] = phase

    def clear(self) -> None:
        with self._lock:
            self._phases.clear()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            tally = Tally(self._phases.values())
        by_phase = GaugeMetricFamily(
            "dataflow_resources", "DataFlowSchema resources by their current phase.", labels=["phase"]
        )
        for phase in Phase:
            by_phase.add_metric([phase.value], tally.get(phase.value, 0))
        yield by_phase
        yield GaugeMetricFamily(
            "dataflow_approvals_pending",
            "Resources waiting for a person to approve their plan (phase AwaitingApproval).",
            value=tally.get(Phase.AWAITING_APPROVAL.value, 0),
        )


_PHASES = _PhaseCollector()
REGISTRY.register(_PHASES)


def observe_reconcile(
    uid: str,
    status: Mapping[str, Any],
    previous: Mapping[str, Any],
    seconds: float,
    *,
    drift_check: bool = False,
) -> None:
    """Count one reconcile of resource ``uid`` that produced ``status`` (``previous``: the status before)."""
    phase = str(status.get("phase") or "")
    RECONCILES.labels(phase=phase, reason=str(status.get("reason") or _ready_reason(status))).inc()
    _PHASES.record(uid, phase or None)
    if phase == Phase.APPLIED:
        MIGRATION_SECONDS.observe(seconds)
    if (drift_check and phase == Phase.APPLIED) or (_drifted(status) and not _drifted(previous)):
        DRIFT.inc()  # a drift check that had to apply, or a Drifted condition that just turned True


def forget(uid: str) -> None:
    """The resource is gone: it no longer counts in any phase."""
    _PHASES.record(uid, None)


def forget_all() -> None:
    """The operator stopped: it knows no resource's phase any more (a new run in this process starts afresh)."""
    _PHASES.clear()


def set_pool_connections(database: str, in_use: int) -> None:
    """For the connection pool: ``database`` is a label such as ``host:port/dbname``, never a DSN."""
    POOL_IN_USE.labels(database=database).set(in_use)


def _ready_reason(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("reason") or "")
    return ""


def _drifted(status: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Drifted" and c.get("status") == "True" for c in status.get("conditions") or []
    )


class Server:
    """The running metrics endpoint; :meth:`stop` frees its port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server, self._thread = start_http_server(port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int) -> Server | None:
    """Serve /metrics on ``port`` (0: not at all). A port in use is logged, not fatal: reconciling matters more."""
    if port == 0:
        return None
    try:
        return Server(port)
    except OSError as exc:
        log.error("metrics not served: cannot listen on port %d: %s", port, exc)
        return None
