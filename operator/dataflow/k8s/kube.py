"""The Kubernetes API calls Kopf does not make for us, through the official ``kubernetes-asyncio`` client.

Reads (a Secret, a peer resource), status patches outside a handler's own patch (``Applying`` while
a migration runs) and the plan ConfigMap. Kopf logs in through its login handlers; :func:`remember`
keeps the resulting connection info so the client talks to the same server with the same
credentials (in a pod: the service account; in the tests: the emulator over plain http).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import Any

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "dataflow.dev", "v1alpha1", "dataflowschemas"
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT_S = 15

# the generated client logs whole response bodies at DEBUG: a Secret's data must never reach a log
logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)

_connection: kopf.ConnectionInfo | None = None
_ca_files: dict[bytes, str] = {}  # CA data from a kubeconfig, written once to a file the client can read


class KubeError(Exception):
    """An API call failed; the message never carries Secret data (only the object and the HTTP status)."""


def remember(info: kopf.ConnectionInfo | None) -> kopf.ConnectionInfo | None:
    global _connection
    if info is not None:
        _connection = info
    return info


def _ca_file(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    if raw not in _ca_files:
        with tempfile.NamedTemporaryFile("wb", prefix="dataflow-ca-", suffix=".pem", delete=False) as f:
            f.write(raw)
        _ca_files[raw] = f.name
    return _ca_files[raw]


def configuration(info: kopf.ConnectionInfo) -> client.Configuration:
    """A client configuration for the server and credentials Kopf logged in with."""
    config = client.Configuration(host=info.server.rstrip("/"))
    config.verify_ssl = not info.insecure
    if info.ca_path:
        config.ssl_ca_cert = os.fsdecode(info.ca_path)
    elif info.ca_data:
        config.ssl_ca_cert = _ca_file(info.ca_data)
    config.cert_file = os.fsdecode(info.certificate_path) if info.certificate_path else None
    config.key_file = os.fsdecode(info.private_key_path) if info.private_key_path else None
    if info.token:
        config.api_key = {"BearerToken": info.token}
        config.api_key_prefix = {"BearerToken": info.scheme or "Bearer"}
    config.username, config.password = info.username, info.password
    return config


# one client per event loop and login: building one costs ~20 ms of CPU (its configuration and session)
_shared: tuple[asyncio.AbstractEventLoop, kopf.ConnectionInfo, client.ApiClient] | None = None


@contextlib.asynccontextmanager
async def api_client() -> AsyncIterator[client.ApiClient]:
    """The client for the server and credentials Kopf logged in with (login handler: :func:`remember`).

    Shared by every call on this event loop until Kopf logs in again (a rotated token gives a new one).
    """
    global _shared
    info = _connection
    if info is None:
        raise KubeError("not logged in to the Kubernetes API")
    loop = asyncio.get_running_loop()
    if _shared is None or _shared[0] is not loop or _shared[1] is not info:
        stale, api = _shared, client.ApiClient(configuration(info))
        if info.username and not info.token:  # the generated client sends basic auth only when asked
            api.set_default_header("Authorization", configuration(info).get_basic_auth_token())
        _shared = (loop, info, api)
        if stale is not None and stale[0] is loop:
            await stale[2].close()
    yield _shared[2]


async def close() -> None:
    """Close the shared client (the operator's cleanup); a later call builds a new one."""
    global _shared
    shared, _shared = _shared, None
    if shared is not None and shared[0] is asyncio.get_running_loop():
        await shared[2].close()


def _failed(what: str, exc: ApiException) -> KubeError:
    """The error for a failed call: what and the HTTP status, never the response body."""
    return KubeError(f"{what}: HTTP {exc.status}")


async def read_secret_value(namespace: str, name: str, key: str) -> str:
    """The decoded value of one Secret key; errors name the Secret and key, never the value."""
    async with api_client() as api:
        try:
            secret = await client.CoreV1Api(api).read_namespaced_secret(
                name, namespace, _request_timeout=TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status == 404:
                raise KubeError(f"Secret {namespace}/{name} not found") from None
            raise _failed(f"reading Secret {namespace}/{name}", exc) from None
    data = secret.data or {}
    if key not in data:
        raise KubeError(f"Secret {namespace}/{name} has no key {key!r}")
    try:
        return base64.b64decode(data[key], validate=True).decode()
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise KubeError(f"Secret {namespace}/{name} key {key!r} is not base64-encoded UTF-8 text") from None


async def read_schema_resource(namespace: str, name: str) -> Mapping[str, Any] | None:
    """A DataFlowSchema as the API returns it, or None when there is none of that name."""
    async with api_client() as api:
        try:
            obj: Mapping[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _failed(f"reading DataFlowSchema {namespace}/{name}", exc) from None
    return obj


async def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge ``status`` into a DataFlowSchema's status (for writes outside a Kopf handler's patch)."""
    merge: dict[str, Any] = {"_content_type": MERGE_PATCH}  # not strategic merge: custom resources lack it
    async with api_client() as api:
        try:
            await client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                _request_timeout=TIMEOUT_S,
                **merge,
            )
        except ApiException as exc:
            raise _failed(f"patching the status of DataFlowSchema {namespace}/{name}", exc) from None


async def write_config_map(
    namespace: str, name: str, data: Mapping[str, str], owner: Mapping[str, Any] | None = None
) -> None:
    """Create or overwrite (merge-patch) ConfigMap ``name``; ``owner`` (an ownerReference) ties it to its resource."""
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels={"app.kubernetes.io/managed-by": "dataflow-operator"},
            owner_references=[client.V1OwnerReference(**owner)] if owner else None,
        ),
        data=dict(data),
    )
    async with api_client() as api:
        core = client.CoreV1Api(api)
        try:
            await core.patch_namespaced_config_map(  # type: ignore[call-arg]  # merge patch: RBAC grants patch
                name,
                namespace,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=TIMEOUT_S,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _failed(f"writing ConfigMap {namespace}/{name}", exc) from None
            try:
                await core.create_namespaced_config_map(namespace, body, _request_timeout=TIMEOUT_S)
            except ApiException as exc2:
                raise _failed(f"creating ConfigMap {namespace}/{name}", exc2) from None


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """An ownerReference to the DataFlowSchema ``body`` (keyword names of V1OwnerReference), if it has a uid."""
    meta = body.get("metadata") or {}
    if not meta.get("uid"):
        return None
    return {
        "api_version": f"{GROUP}/{VERSION}",
        "kind": "DataFlowSchema",
        "name": meta.get("name", ""),
        "uid": meta["uid"],
        "controller": True,
        "block_owner_deletion": False,
    }
