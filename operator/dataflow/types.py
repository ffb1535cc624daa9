"""Canonical PostgreSQL type names and how one type converts to another."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_ALIASES = {
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "INT8": "BIGINT",
    "INT2": "SMALLINT",
    "FLOAT": "DOUBLE PRECISION",
    "FLOAT8": "DOUBLE PRECISION",
    "FLOAT4": "REAL",
    "BOOL": "BOOLEAN",
    "DECIMAL": "NUMERIC",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
    "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
    "TIME WITHOUT TIME ZONE": "TIME",
    "CHARACTER VARYING": "VARCHAR",
    "CHARACTER": "CHAR",
    "BPCHAR": "CHAR",
}

KNOWN_BASE_TYPES = frozenset(
    {
        "TEXT", "VARCHAR", "CHAR", "SMALLINT", "INTEGER", "BIGINT", "REAL", "DOUBLE PRECISION", "NUMERIC",
        "BOOLEAN", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "TIME", "TIMETZ", "INTERVAL", "JSON", "JSONB",
        "BYTEA", "UUID", "INET", "CIDR", "TSVECTOR",
    }
)

_TYPE_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_ ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*((?:\[\])*)\s*$")


@dataclass(frozen=True)
class PgType:
    """A parsed canonical type: base name, optional length/precision and scale, array depth."""

    base: str
    length: int | None = None
    scale: int | None = None
    array: int = 0

    def __str__(self) -> str:
        mods = ""
        if self.length is not None:
            mods = f"({self.length})" if self.scale is None else f"({self.length},{self.scale})"
        return f"{self.base}{mods}{'[]' * self.array}"


def parse_type(text: str) -> PgType:
    """Parse a type as written in a model, manifest or ``format_type()`` into canonical form."""
    m = _TYPE_RE.match(text)
    if not m:
        raise ValueError(f"not a PostgreSQL type: {text!r}")
    base = " ".join(m.group(1).upper().split())
    base = _ALIASES.get(base, base)
    length = int(m.group(2)) if m.group(2) else None
    scale = int(m.group(3)) if m.group(3) else None
    return PgType(base, length, scale, m.group(4).count("[]"))


def canonical_type(text: str) -> str:
    """Canonical spelling of a type: ``character varying(20)`` → ``VARCHAR(20)``."""
    return str(parse_type(text))


def is_known_type(text: str) -> bool:
    try:
        return parse_type(text).base in KNOWN_BASE_TYPES
    except ValueError:
        return False


class Conversion(Enum):
    """How an ALTER COLUMN ... TYPE behaves."""

    IN_PLACE = "in place (no rewrite)"
    WIDENING = "widening (table rewrite, every value converts)"
    NARROWING = "narrowing or incompatible (values may fail to convert)"


_WIDENS = {
    "SMALLINT": {"INTEGER", "BIGINT", "NUMERIC", "REAL", "DOUBLE PRECISION", "TEXT", "VARCHAR"},
    "INTEGER": {"BIGINT", "NUMERIC", "DOUBLE PRECISION", "TEXT", "VARCHAR"},
    "BIGINT": {"NUMERIC", "TEXT", "VARCHAR"},
    "REAL": {"DOUBLE PRECISION", "TEXT", "VARCHAR"},
    "DOUBLE PRECISION": {"TEXT", "VARCHAR"},
    "NUMERIC": {"TEXT", "VARCHAR"},
    "BOOLEAN": {"TEXT", "VARCHAR"},
    "DATE": {"TIMESTAMP", "TIMESTAMPTZ", "TEXT", "VARCHAR"},
    "TIMESTAMP": {"TIMESTAMPTZ", "TEXT", "VARCHAR"},
    "TIMESTAMPTZ": {"TEXT", "VARCHAR"},
    "UUID": {"TEXT", "VARCHAR"},
    "JSON": {"JSONB", "TEXT"},
    "JSONB": {"JSON", "TEXT"},
    "CHAR": {"VARCHAR", "TEXT"},
}


def classify_conversion(old: str, new: str) -> Conversion:
    """Classify a type change; lengths matter (``VARCHAR(20)`` → ``VARCHAR(10)`` narrows)."""
    a, b = parse_type(old), parse_type(new)
    if a.array != b.array:
        return Conversion.NARROWING
    if a.base in ("VARCHAR", "TEXT") and b.base in ("VARCHAR", "TEXT"):
        if b.base == "TEXT" or b.length is None:
            return Conversion.IN_PLACE
        if a.base == "VARCHAR" and a.length is not None and b.length >= a.length:
            return Conversion.IN_PLACE
        return Conversion.NARROWING
    if a.base == b.base == "NUMERIC":
        if b.length is None:
            return Conversion.IN_PLACE
        if a.length is not None and a.scale == b.scale and b.length >= a.length:
            return Conversion.IN_PLACE
        return Conversion.NARROWING
    if a.base == b.base and a.length == b.length and a.scale == b.scale:
        return Conversion.IN_PLACE
    target = _WIDENS.get(a.base, set())
    if b.base in target and (b.base != "VARCHAR" or b.length is None):
        return Conversion.WIDENING
    return Conversion.NARROWING
