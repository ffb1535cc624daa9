"""Running several replicas: one active, the others on standby, through Kopf's peering.

Kopf pauses every replica when peers share a priority, so each replica takes a distinct one
derived from its pod name. The peering lifetime is short, so a killed leader's entry expires
(and a standby takes over) within :data:`PEERING_LIFETIME_S` plus a keep-alive. :func:`health`
tells the probes the truth: a replica is healthy when it is the active one, or when a live peer
of higher priority is (a standby); a replica paused with no active peer fails.
"""

from __future__ import annotations

import datetime
import os
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from dataflow.k8s import kube

PEERING_LIFETIME_S = 15  # a dead leader's keep-alive expires after this; Kopf re-touches 5-10 s before it
PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"


def priority_for(pod_name: str) -> int:
    """A stable priority in 1..2**31-1 from the pod name (distinct per pod but for a 1 in 2**31 clash)."""
    return zlib.crc32(pod_name.encode()) % (2**31 - 1) + 1


def configure_peering(settings: kopf.OperatorSettings, env: Mapping[str, str] = os.environ) -> None:
    """Shorten the peering lifetime; give this replica its own priority unless ``--priority`` set one."""
    settings.peering.lifetime = PEERING_LIFETIME_S
    pod = env.get("POD_ID") or env.get("POD_NAME")
    if pod and not settings.peering.priority:
        settings.peering.priority = priority_for(pod)


def peering_problem(peers: Mapping[str, Any], priority: int, now: datetime.datetime) -> str | None:
    """Why nothing reconciles under one peering object's ``status``, or None when a replica is active.

    This replica is one of the live peers with ``priority`` (its own keep-alive is among them).
    Active: it is the only live peer of the top priority. Standby: a live peer has a higher priority.
    """
    live = [p for p in peers.values() if isinstance(p, Mapping) and _alive(p, now)]
    if any(int(p.get("priority", 0)) > priority for p in live):
        return None
    same = sum(1 for p in live if int(p.get("priority", 0)) == priority)
    if same == 1:
        return None
    if same == 0:
        return "this replica has no live keep-alive in the peering object yet"
    return f"{same} replicas share priority {priority}: Kopf pauses them all"


def _alive(peer: Mapping[str, Any], now: datetime.datetime) -> bool:
    try:
        seen = datetime.datetime.fromisoformat(str(peer["lastseen"]))
        lifetime = datetime.timedelta(seconds=int(peer.get("lifetime", 60)))
    except (KeyError, ValueError, TypeError):
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=datetime.UTC)
    return seen + lifetime > now


async def health(settings: kopf.OperatorSettings, namespaces: Iterable[str] = ()) -> str:
    """What the probes report; raises :class:`kopf.PermanentError` (the probe fails) when nothing reconciles.

    ``namespaces``: where the namespaced KopfPeering objects are (unused with cluster-wide peering).
    """
    if settings.peering.standalone:
        return "standalone"
    now = datetime.datetime.now(datetime.UTC)
    async with kube.api_client() as api:
        objects = client.CustomObjectsApi(api)
        try:
            if settings.peering.clusterwide:
                found = [
                    await objects.get_cluster_custom_object(
                        PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", settings.peering.name
                    )
                ]
            else:
                found = [
                    await objects.get_namespaced_custom_object(
                        PEERING_GROUP, PEERING_VERSION, ns, "kopfpeerings", settings.peering.name
                    )
                    for ns in namespaces
                ]
        except ApiException as exc:
            raise kopf.PermanentError(
                f"cannot read peering {settings.peering.name!r}: HTTP {exc.status}"
            ) from None
    for obj in found:
        problem = peering_problem(obj.get("status") or {}, settings.peering.priority, now)
        if problem:
            raise kopf.PermanentError(f"paused with no active replica: {problem}")
    return "active or standby"
