"""What deleting a DataFlowSchema does to its database: the tables stay, its claim on them goes.

``spec.deletionPolicy: Retain`` (the default) releases the resource's table ownership, so a
successor resource may claim the tables; the operator's finalizer holds the deletion until that
is done, retrying while the Secret or the database cannot be reached. ``Orphan`` leaves the
database untouched; it is also the way out for a resource whose database is gone for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import asyncpg

from dataflow.errors import DatabaseUnavailable, InvalidDatabaseURL, SchemaError
from dataflow.k8s import kube
from dataflow.k8s.reconciler import SecretReader
from dataflow.ledger import Ledger
from dataflow.manifest import from_resource
from dataflow.pool import POOLS
from dataflow.redact import Redactor
from dataflow.resource import ORPHAN, RETAIN

ESCAPE_HATCH = (
    "To delete it without releasing the tables, set spec.deletionPolicy to Orphan: "
    "kubectl patch dataflowschema {name} -n {namespace} --type=merge -p "
    '\'{{"spec":{{"deletionPolicy":"Orphan"}}}}\''
)


class DeletionReason(StrEnum):
    """Event reasons of a deletion."""

    RELEASED = "Released"
    ORPHANED = "Orphaned"
    RELEASE_PENDING = "ReleasePending"


class ReleasePending(Exception):
    """The claim could not be released yet (Secret or database unreachable): retry; the message is redacted."""


async def release(
    body: Mapping[str, Any], *, read_secret: SecretReader = kube.read_secret_value
) -> tuple[DeletionReason, str]:
    """Apply the deletion policy of ``body``; returns the event (reason, message) to post.

    Raises :class:`ReleasePending` while the database cannot be reached under ``Retain``.
    """
    spec = body.get("spec") or {}
    meta = body.get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "default")
    if (spec.get("deletionPolicy") or RETAIN) == ORPHAN:
        return (
            DeletionReason.ORPHANED,
            "deletionPolicy Orphan: the tables and their claim are left as they are.",
        )
    try:
        manifest = from_resource(body)
    except SchemaError as exc:  # never applied as it is now; nothing we can name to release
        return DeletionReason.ORPHANED, f"Invalid spec ({exc}): no claim released."
    hatch = ESCAPE_HATCH.format(name=name, namespace=namespace)
    try:
        dsn = await read_secret(manifest.namespace, manifest.secret_name, manifest.secret_key)
    except (TimeoutError, kube.KubeError, OSError) as exc:
        raise ReleasePending(
            f"Cannot read the database Secret to release the tables: {exc}. {hatch}"
        ) from None
    redact = Redactor(dsn)
    try:
        async with POOLS.session(dsn, manifest.schema.name) as session:  # the database's shared pool
            tables = await Ledger(manifest.schema.name).release_owner(session.conn, manifest.owner)
    except InvalidDatabaseURL as exc:
        raise ReleasePending(f"Invalid database URL: {exc.problem}. {hatch}") from None
    except (TimeoutError, DatabaseUnavailable, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ReleasePending(redact(f"Database unreachable: {type(exc).__name__}: {exc}. {hatch}")) from None
    listed = ", ".join(tables[:10]) + (f" and {len(tables) - 10} more" if len(tables) > 10 else "")
    kept = f": {listed}" if tables else ""
    return (
        DeletionReason.RELEASED,
        f"Released the claim on {len(tables)} table(s), kept with their data{kept}.",
    )
