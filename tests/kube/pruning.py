"""
Pruning of unknown fields, as the API server does when it decodes a custom resource.

Follows ``k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning/algorithm.go``: a field not
declared in ``properties`` (nor covered by ``additionalProperties``) is dropped, unless the schema
node says ``x-kubernetes-preserve-unknown-fields: true``; the root (and any
``x-kubernetes-embedded-resource``) keeps ``apiVersion``, ``kind`` and ``metadata``, and
``metadata`` is cut down to the fields of ObjectMeta for every kind. Returns the dropped paths so
that the server can warn (``fieldValidation=Warn``, the default) or refuse (``Strict``).
"""

from collections.abc import Mapping
from typing import Any

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_TYPE_FIELDS = ("apiVersion", "kind")


def prune_metadata(obj: dict[str, Any], prefix: str = "") -> list[str]:
    """Drop the fields of ``metadata`` that ObjectMeta does not have (for every kind)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return []
    unknown = sorted(key for key in meta if key not in OBJECT_META_FIELDS)
    for key in unknown:
        del meta[key]
    return [f"{prefix}metadata.{key}" for key in unknown]


def prune(obj: dict[str, Any], schema: Mapping[str, Any] | None) -> list[str]:
    """Prune a whole custom resource in place by its openAPIV3Schema; return the dropped paths."""
    dropped = prune_metadata(obj)
    if schema is not None:
        _prune_object(obj, schema, "", dropped, resource_root=True)
    return dropped


def _prune(value: Any, schema: Mapping[str, Any], path: str, dropped: list[str]) -> None:
    if isinstance(value, dict):
        _prune_object(
            value, schema, path, dropped, resource_root=bool(schema.get("x-kubernetes-embedded-resource"))
        )
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{index}]", dropped)


def _prune_object(
    obj: dict[str, Any], schema: Mapping[str, Any], path: str, dropped: list[str], resource_root: bool
) -> None:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or additional is True
    prefix = f"{path}." if path else ""
    if resource_root and path:
        dropped += prune_metadata(obj, prefix)
    for key in list(obj):
        if resource_root and key in (*_TYPE_FIELDS, "metadata"):
            continue
        if key in properties:
            _prune(obj[key], properties[key], f"{prefix}{key}", dropped)
        elif isinstance(additional, Mapping):
            _prune(obj[key], additional, f"{prefix}{key}", dropped)
        elif not preserve:
            del obj[key]
            dropped.append(f"{prefix}{key}")
