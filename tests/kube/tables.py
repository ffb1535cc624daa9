"""Server-side printing: the ``meta.k8s.io/v1`` Table for ``kubectl get``."""

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tests.kube.resources import ResourceSpec

NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "priority": 0,
    "description": "CreationTimestamp of the object.",
}

_JSONPATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\['([^']+)'\]")


def wants_table(accept: str) -> bool:
    """Whether the client (e.g. ``kubectl get``) asks for server-side printing."""
    return any("as=Table" in part for part in accept.split(","))


def evaluate_jsonpath(obj: Any, path: str) -> Any:
    """Evaluate a simple JSONPath (``.a.b``, ``.a[0]``, ``.a['x.y']``); ``None`` if absent."""
    value = obj
    for key, index, quoted in _JSONPATH_TOKEN.findall(path.strip().lstrip("{").rstrip("}")):
        if isinstance(value, Mapping) and (key or quoted):
            value = value.get(key or quoted)
        elif isinstance(value, list) and index and int(index) < len(value):
            value = value[int(index)]
        else:
            return None
    return value


def human_age(timestamp: str, now: datetime.datetime | None = None) -> str:
    """Render the age of a timestamp the way ``kubectl`` does: 42s, 5m, 3h, 2d, 1y."""
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds()))
    for unit, size, limit in (
        ("s", 1, 120),
        ("m", 60, 120 * 60),
        ("h", 3600, 48 * 3600),
        ("d", 86400, 365 * 86400),
    ):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // (365 * 86400)}y"


def _cell(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "date":
        return human_age(str(value))
    if column_type == "integer":
        return int(value)
    if column_type == "number":
        return float(value)
    if column_type == "boolean":
        return bool(value)
    return value if isinstance(value, str) else str(value)


def table_columns(spec: ResourceSpec) -> list[Mapping[str, Any]]:
    """The column definitions: Name + the CRD's printer columns (or Age if none declared)."""
    return [NAME_COLUMN, *(spec.printer_columns or [AGE_COLUMN])]


def _row(obj: Mapping[str, Any], columns: Sequence[Mapping[str, Any]], include: str) -> dict[str, Any]:
    cells = [obj["metadata"]["name"]] + [
        _cell(evaluate_jsonpath(obj, column["jsonPath"]), column["type"]) for column in columns[1:]
    ]
    row: dict[str, Any] = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }
    return row


def render_table(
    spec: ResourceSpec, objs: Sequence[Mapping[str, Any]], resource_version: str, include: str = "Metadata"
) -> dict[str, Any]:
    """Render objects as a Table; ``include`` is the ``includeObject`` query (None/Metadata/Object)."""
    columns = table_columns(spec)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {key: column.get(key, "") for key in ("name", "type", "format", "description")}
            | {"priority": column.get("priority", 0)}
            for column in columns
        ],
        "rows": [_row(obj, columns, include) for obj in objs],
    }
