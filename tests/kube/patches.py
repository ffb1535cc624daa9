"""Patch formats of the Kubernetes API: JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""

import copy
from typing import Any

import jsonpatch
import jsonpointer

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # server-side apply: tests/kube/fieldmanager.py


class PatchError(ValueError):
    """A patch cannot be applied (bad format, missing path, failed test)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: dicts merge recursively, ``None`` removes, others replace."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch with the ``jsonpatch`` library; every failure is a :class:`PatchError`."""
    if not isinstance(operations, list):
        raise PatchError("A JSON patch must be a list of operations.")
    try:
        return jsonpatch.apply_patch(target, operations)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise PatchError(f"Invalid JSON patch: {e}") from e


def apply_patch(target: Any, patch: Any, content_type: str) -> Any:
    """Apply a patch of any supported content type; strategic merge is treated as a merge patch."""
    if content_type.startswith(JSON_PATCH):
        return json_patch(target, patch)
    if content_type.startswith((MERGE_PATCH, STRATEGIC_MERGE_PATCH, "application/json")):
        return merge_patch(target, patch)
    raise PatchError(f"Unsupported patch content type: {content_type!r}")
