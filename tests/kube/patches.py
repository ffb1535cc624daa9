"""Patch formats of the Kubernetes API: JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""
import copy
from typing import Any

MERGE_PATCH = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json'


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


def _pointer(path: str) -> list[str]:
    if path == '':
        return []
    if not path.startswith('/'):
        raise PatchError(f"Invalid JSON pointer: {path!r}")
    return [part.replace('~1', '/').replace('~0', '~') for part in path[1:].split('/')]


def _parent(doc: Any, tokens: list[str]) -> Any:
    for token in tokens[:-1]:
        try:
            doc = doc[int(token)] if isinstance(doc, list) else doc[token]
        except (KeyError, IndexError, ValueError) as e:
            raise PatchError(f"Path not found: {'/'.join(tokens)}") from e
    return doc


def _get(doc: Any, tokens: list[str]) -> Any:
    return _parent(doc, tokens + [''])


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, key = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, list):
        parent.insert(len(parent) if key == '-' else int(key), value)
    elif isinstance(parent, dict):
        parent[key] = value
    else:
        raise PatchError(f"Cannot add to a scalar at /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    parent, key = _parent(doc, tokens), tokens[-1]
    try:
        del parent[int(key) if isinstance(parent, list) else key]
    except (KeyError, IndexError, ValueError) as e:
        raise PatchError(f"Path not found: /{'/'.join(tokens)}") from e
    return doc


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    tokens = _pointer(op.get('path', ''))
    match op.get('op'):
        case 'add':
            return _add(doc, tokens, copy.deepcopy(op['value']))
        case 'remove':
            return _remove(doc, tokens)
        case 'replace':
            return _add(_remove(doc, tokens), tokens, copy.deepcopy(op['value']))
        case 'move':
            source = _pointer(op['from'])
            value = _get(doc, source)
            return _add(_remove(doc, source), tokens, value)
        case 'copy':
            return _add(doc, tokens, copy.deepcopy(_get(doc, _pointer(op['from']))))
        case 'test':
            if _get(doc, tokens) != op.get('value'):
                raise PatchError(f"Test failed at {op.get('path')!r}")
            return doc
        case other:
            raise PatchError(f"Unsupported JSON patch operation: {other!r}")


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise PatchError("A JSON patch must be a list of operations.")
    doc = copy.deepcopy(target)
    for op in operations:
        doc = _apply_op(doc, op)
    return doc


def apply_patch(target: Any, patch: Any, content_type: str) -> Any:
    """Apply a patch of any supported content type; strategic merge is treated as a merge patch."""
    if content_type.startswith(JSON_PATCH):
        return json_patch(target, patch)
    if content_type.startswith((MERGE_PATCH, STRATEGIC_MERGE_PATCH, 'application/json')):
        return merge_patch(target, patch)
    raise PatchError(f"Unsupported patch content type: {content_type!r}")
