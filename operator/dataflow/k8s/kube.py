"""The few Kubernetes reads the operator needs (a Secret, a peer resource), with Kopf's credentials.

Kopf logs in through its login handlers; :func:`remember` keeps the resulting connection info so
these reads use the same server and credentials without a second client library configuration.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

GROUP, VERSION, PLURAL = "dataflow.dev", "v1alpha1", "dataflowschemas"

_connection: kopf.ConnectionInfo | None = None


class KubeError(Exception):
    """A read failed; the message never carries Secret data."""


def remember(info: kopf.ConnectionInfo | None) -> kopf.ConnectionInfo | None:
    global _connection
    if info is not None:
        _connection = info
    return info


def _ssl(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    ctx = ssl.create_default_context(
        cafile=info.ca_path, cadata=info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
    )
    if info.certificate_path and info.private_key_path:
        ctx.load_cert_chain(info.certificate_path, info.private_key_path)
    return ctx


async def _get(path: str) -> Mapping[str, Any] | None:
    info = _connection
    if info is None:
        raise KubeError("not logged in to the Kubernetes API")
    headers = {"Accept": "application/json"}
    if info.token:
        headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
    auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout, auth=auth) as session:
        async with session.get(info.server.rstrip("/") + path, headers=headers, ssl=_ssl(info)) as resp:
            if resp.status == 404:
                return None
            if resp.status >= 400:
                raise KubeError(f"GET {path}: HTTP {resp.status}")
            return await resp.json()


async def read_secret_value(namespace: str, name: str, key: str) -> str:
    """The decoded value of one Secret key; errors name the Secret and key, never the value."""
    secret = await _get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if secret is None:
        raise KubeError(f"Secret {namespace}/{name} not found")
    data = secret.get("data") or {}
    if key not in data:
        raise KubeError(f"Secret {namespace}/{name} has no key {key!r}")
    try:
        return base64.b64decode(data[key], validate=True).decode()
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise KubeError(f"Secret {namespace}/{name} key {key!r} is not base64-encoded UTF-8 text") from None


async def read_schema_resource(namespace: str, name: str) -> Mapping[str, Any] | None:
    return await _get(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}")
