"""Whether a generated DataFlowSchema fits a real Kubernetes API server, and how to split one that does not.

The API server stores a custom resource as compact JSON, and etcd refuses a write over 1.5 MiB
(1,572,864 bytes). The operator adds status and Kopf adds metadata after the user applied it, so a
spec may use that limit less a headroom. Client-side ``kubectl apply`` also copies the whole object
into the ``last-applied-configuration`` annotation, and all annotations together may hold 256 KiB:
above that only ``kubectl apply --server-side`` (or Flux/Argo CD server-side apply) works.

Splitting spreads the tables over several resources that share one database. A foreign key must
reference a table of the same resource (the engine checks references within one schema), so tables
linked by foreign keys, directly or not, always stay together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dataflow.errors import DataFlowError

MAX_OBJECT_BYTES = 1_572_864  # etcd's default --max-request-bytes
HEADROOM_BYTES = 64 * 1024  # for status (a summary) and metadata (finalizer, approval, managedFields)
DEFAULT_MAX_BYTES = MAX_OBJECT_BYTES - HEADROOM_BYTES
MAX_ANNOTATIONS_BYTES = 262_144  # all annotations of an object, keys and values
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def stored_bytes(doc: Mapping[str, Any]) -> int:
    """The size of the object as the API server stores it: compact JSON, in UTF-8."""
    return len(_compact(doc))


def client_side_apply_bytes(doc: Mapping[str, Any]) -> int:
    """The annotations ``kubectl apply`` (client-side) writes: its own annotations plus its JSON copy."""
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    own = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    return own + len(LAST_APPLIED) + stored_bytes(doc) + 1  # kubectl ends the copy with a newline


def check_fits(doc: Mapping[str, Any], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Raise a one-line DataFlowError if the object is larger than ``max_bytes`` as stored."""
    size = stored_bytes(doc)
    if size > max_bytes:
        raise DataFlowError(
            f"DataFlowSchema {_name(doc)} is {size:,} bytes as stored, over the limit of {max_bytes:,} "
            f"({_limit_text(max_bytes)}); use --split to spread its tables over several resources"
        )


def client_side_apply_warning(doc: Mapping[str, Any]) -> str | None:
    """A one-line warning when client-side ``kubectl apply`` cannot store this object, else None."""
    size = client_side_apply_bytes(doc)
    if size <= MAX_ANNOTATIONS_BYTES:
        return None
    return (
        f"DataFlowSchema {_name(doc)} needs {size:,} bytes of annotations with client-side `kubectl apply` "
        f"(its last-applied copy), over the API server's limit of {MAX_ANNOTATIONS_BYTES:,}: "
        "apply it with `kubectl apply --server-side` (Flux and Argo CD: server-side apply)"
    )


def split_tables(
    tables: Sequence[Mapping[str, Any]],
    part_bytes: Callable[[list[Mapping[str, Any]]], int],
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[list[Mapping[str, Any]]]:
    """
    The tables in as few parts as first-fit finds, each part within ``max_bytes`` as measured by
    ``part_bytes`` (the stored size of a resource holding those tables), tables linked by foreign
    keys in the same part, and the declaration order kept within and across parts (stable diffs).
    """
    groups = _linked_groups(tables)
    overhead = part_bytes([])
    sizes = [sum(len(_compact(table)) + 1 for table in group) for group in groups]
    parts: list[list[int]] = []
    used: list[int] = []
    for index, (group, size) in enumerate(zip(groups, sizes, strict=True)):
        if overhead + size > max_bytes:
            names = ", ".join(str(t.get("name")) for t in group[:3]) + (", ..." if len(group) > 3 else "")
            raise DataFlowError(
                f"cannot split: {len(group)} tables linked by foreign keys ({names}) take {overhead + size:,} "
                f"bytes in one resource, over the limit of {max_bytes:,} ({_limit_text(max_bytes)}); "
                "a foreign key must reference a table of the same resource"
            )
        slot = next((i for i, total in enumerate(used) if total + size <= max_bytes), None)
        if slot is None:
            parts.append([])
            used.append(overhead)
            slot = len(parts) - 1
        parts[slot].append(index)
        used[slot] += size
    order = {id(table): position for position, table in enumerate(tables)}
    result = [sorted((t for i in part for t in groups[i]), key=lambda t: order[id(t)]) for part in parts]
    for part in result:  # the estimate above adds separators; measure the real thing
        if part_bytes(part) > max_bytes:
            raise DataFlowError(f"cannot split within {max_bytes:,} bytes: lower --max-bytes")
    return result


def _linked_groups(tables: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Tables connected by foreign keys (in either direction), in order of their first table."""
    index = {str(table.get("name")): i for i, table in enumerate(tables)}
    parent = list(range(len(tables)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, table in enumerate(tables):
        for fk in table.get("foreignKeys") or ():
            j = index.get(str(fk.get("refTable")))
            if j is not None:
                parent[root(i)] = root(j)
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for i, table in enumerate(tables):
        groups.setdefault(root(i), []).append(table)
    return list(groups.values())


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name')}"


def _limit_text(max_bytes: int) -> str:
    if max_bytes == DEFAULT_MAX_BYTES:
        return f"the API server's {MAX_OBJECT_BYTES:,} less {HEADROOM_BYTES:,} for status and metadata"
    return "--max-bytes"
