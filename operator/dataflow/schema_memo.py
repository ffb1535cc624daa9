"""Results computed from a whole Schema, remembered by its hash: the same model set is planned again and
again (a library's ``auto_migrate``, an operator's drift checks), and scanning 1,000 tables costs tens of ms."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from dataflow.schema import Schema

T = TypeVar("T")

SCHEMAS_KEPT = 16  # schemas remembered per function (the oldest goes first)


def per_schema(fn: Callable[[Schema], T]) -> Callable[[Schema], T]:
    """``fn`` remembered by the schema's hash, for the last SCHEMAS_KEPT schemas (a Schema is immutable)."""
    results: dict[str, T] = {}

    @functools.wraps(fn)
    def remembered(schema: Schema) -> T:
        key = schema.hash()
        if key not in results:
            if len(results) >= SCHEMAS_KEPT:
                results.pop(next(iter(results)))
            results[key] = fn(schema)
        return results[key]

    return remembered
