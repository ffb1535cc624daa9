"""Dataclass fields that carry their JSON form: one declaration per field of the manifest format.

A field made with :func:`json_field` knows its camelCase JSON name, its description and its
JSON-schema constraints. :mod:`dataflow.crdgen` turns such dataclasses into the CRD's OpenAPI
schema and the docs' field tables; :func:`to_json` and :func:`from_json` read and write them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING: Any = dataclasses.MISSING


def json_field(
    name: str | None,
    description: str | None = None,
    *,
    default: Any = _MISSING,
    schema: Mapping[str, Any] | None = None,
    items: Mapping[str, Any] | None = None,
    publish_default: bool = False,
    compare: bool = True,
) -> Any:
    """A dataclass field named ``name`` in JSON (None: not part of the JSON form).

    ``schema`` holds extra JSON-schema keywords (enum, pattern, minLength ...), ``items`` those of
    an array's items. ``publish_default`` writes ``default`` into the CRD; leave it off where the
    API server must not fill a value in (spec.tables: it would change the schema hash).
    """
    metadata = {
        "json": name,
        "description": description,
        "schema": dict(schema or {}),
        "items": dict(items or {}),
        "publish_default": publish_default,
    }
    return dataclasses.field(default=default, compare=compare, metadata=metadata)


def json_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    """(field, resolved type) of every field of ``cls`` that is part of the JSON form, in order."""
    return list(_json_fields(cls))


@cache
def _json_fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("json"))


def is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is _MISSING and f.default_factory is _MISSING


def default_of(f: dataclasses.Field[Any]) -> Any:
    """The value an omitted field takes (``_MISSING`` for a required one)."""
    factory = f.default_factory
    return factory() if callable(factory) else f.default


def unwrap_optional(tp: Any) -> Any:
    """``X | None`` → ``X``; any other type as it is."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def to_json(obj: Any) -> dict[str, Any]:
    """A json_field dataclass as JSON, omitting fields that hold their default, None or nothing."""
    out: dict[str, Any] = {}
    for f, _ in json_fields(type(obj)):
        value = _value_to_json(getattr(obj, f.name))
        if value is None or value == [] or (not is_required(f) and value == _value_to_json(default_of(f))):
            continue
        out[f.metadata["json"]] = value
    return out


def _value_to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_json(value)
    if isinstance(value, tuple):
        return [_value_to_json(v) for v in value]
    return value


def from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """A json_field dataclass from JSON that already passed the CRD schema (types are right)."""
    kwargs = {
        f.name: _value_from_json(tp, data[f.metadata["json"]])
        for f, tp in json_fields(cls)
        if data.get(f.metadata["json"]) is not None
    }
    return cls(**kwargs)


def _value_from_json(tp: Any, value: Any) -> Any:
    tp = unwrap_optional(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_json(tp, value)
    if typing.get_origin(tp) is tuple:
        return tuple(_value_from_json(typing.get_args(tp)[0], v) for v in value)
    return value
