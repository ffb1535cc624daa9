"""Durations as manifests write them (``500ms``, ``2s``, ``5m``, ``1h``)."""

from __future__ import annotations

import re

from dataflow.errors import SchemaError

DURATION_PATTERN = "^[0-9]+(ms|s|m|h)$"  # the CRD's pattern for every duration field (dataflow.resource)
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def duration_ms(value: str, field: str) -> int:
    """``value`` in milliseconds; a SchemaError naming ``field`` when it is not a duration."""
    m = _DURATION.match(value or "")
    if not m:
        raise SchemaError(field, f"must be a duration like 500ms, 2s or 5m, not {value!r}")
    return int(value[: m.start(1)]) * _UNIT_MS[m.group(1)]
