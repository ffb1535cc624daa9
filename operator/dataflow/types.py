"""Canonical PostgreSQL type names and how one type converts to another."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

import pglast
from pglast import ast
from pglast import parser as pg_parser
from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

# PostgreSQL's internal type names (what the parser resolves every spelling to) → canonical names.
_CANONICAL = {
    "int2": "SMALLINT",
    "int4": "INTEGER",
    "int8": "BIGINT",
    "float4": "REAL",
    "float8": "DOUBLE PRECISION",
    "numeric": "NUMERIC",
    "bool": "BOOLEAN",
    "text": "TEXT",
    "varchar": "VARCHAR",
    "bpchar": "CHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "time": "TIME",
    "timetz": "TIMETZ",
    "interval": "INTERVAL",
    "json": "JSON",
    "jsonb": "JSONB",
    "bytea": "BYTEA",
    "uuid": "UUID",
    "inet": "INET",
    "cidr": "CIDR",
    "tsvector": "TSVECTOR",
    "bit": "BIT",
    "varbit": "BIT VARYING",
    "money": "MONEY",
    "macaddr": "MACADDR",
    "xml": "XML",
    "oid": "OID",
    "tsquery": "TSQUERY",
}
_MAX_TYPE_BYTES = 256
_MAX_TYPMODS = {"NUMERIC": 2, "INTERVAL": 2}
_LENGTH_TYPES = frozenset({"VARCHAR", "CHAR", "BIT", "BIT VARYING", "NUMERIC"})  # a modifier of 0 is invalid
_MAX_EXTENSION_TYPMODS = 4  # PostGIS takes two (geometry(Point,4326)), pgvector one (vector(3))
_BARE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# names the grammar reads as something else when unquoted (``char`` is bpchar): always quoted
_KEYWORDS = frozenset(RESERVED_KEYWORDS) | frozenset(COL_NAME_KEYWORDS) | frozenset(TYPE_FUNC_NAME_KEYWORDS)

KNOWN_BASE_TYPES = frozenset(
    {
        "TEXT",
        "VARCHAR",
        "CHAR",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "REAL",
        "DOUBLE PRECISION",
        "NUMERIC",
        "BOOLEAN",
        "DATE",
        "TIMESTAMP",
        "TIMESTAMPTZ",
        "TIME",
        "TIMETZ",
        "INTERVAL",
        "JSON",
        "JSONB",
        "BYTEA",
        "UUID",
        "INET",
        "CIDR",
        "TSVECTOR",
    }
)
# every built-in type a manifest may name, as canonical_type spells it (BPCHAR: a char without length)
MANIFEST_BASE_TYPES = KNOWN_BASE_TYPES | {
    "BIT",
    "BIT VARYING",
    "MONEY",
    "MACADDR",
    "XML",
    "OID",
    "TSQUERY",
    "BPCHAR",
}


def _interval_field_names() -> dict[int, str]:
    """Interval field masks as the parser encodes them (``DAY TO SECOND`` → 7176), read from pglast itself."""
    phrases = (
        "YEAR",
        "MONTH",
        "DAY",
        "HOUR",
        "MINUTE",
        "SECOND",
        "YEAR TO MONTH",
        "DAY TO HOUR",
        "DAY TO MINUTE",
        "DAY TO SECOND",
        "HOUR TO MINUTE",
        "HOUR TO SECOND",
        "MINUTE TO SECOND",
    )
    masks: dict[int, str] = {}
    for phrase in phrases:
        select: Any = pg_parser.parse_sql(f"SELECT NULL::interval {phrase}")[0].stmt
        cast = select.targetList[0].val
        masks[cast.typeName.typmods[0].val.ival] = phrase
    return masks


_INTERVAL_FIELDS = _interval_field_names()
_INTERVAL_FULL_RANGE = 0x7FFF


@dataclass(frozen=True)
class PgType:
    """A parsed canonical type: base name, optional length/precision and scale, array or not.

    ``fields`` is an interval's field restriction (``DAY TO SECOND``). PostgreSQL ignores array
    dimensions (``integer[][]`` is ``integer[]``), so ``array`` is 0 or 1. ``modifiers`` are those of
    a type that is not built in (an extension's: ``geometry(Point,4326)`` → ``("point", "4326")``),
    which only the server can check.
    """

    base: str
    length: int | None = None
    scale: int | None = None
    array: int = 0
    fields: str | None = None
    modifiers: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        """A built-in type DataFlow knows by name; any other is resolved by the server at plan time."""
        return self.base in _BUILTIN_BASES

    @property
    def name(self) -> str:
        """The type's name without modifiers or array brackets (what ``to_regtype`` resolves)."""
        return "BPCHAR" if self.base == "CHAR" and self.length is None else self.base

    def __str__(self) -> str:
        base = self.name
        if self.fields:
            base += f" {self.fields}"
        mods = f"({','.join(self.modifiers)})" if self.modifiers else ""
        if self.length is not None:
            mods = f"({self.length})" if self.scale is None else f"({self.length},{self.scale})"
        return f"{base}{mods}{'[]' * self.array}"


def _type_name(text: str) -> Any:  # a pglast TypeName
    """The TypeName of ``SELECT NULL::<text>``: exactly one type, nothing else, or ValueError."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty type")
    if "\x00" in text or len(text.encode("utf-8", "replace")) > _MAX_TYPE_BYTES:
        raise ValueError(f"not a PostgreSQL type: {text[:80]!r}")
    try:
        stmts = pg_parser.parse_sql(f"SELECT NULL::{text}")
    except (pglast.parser.ParseError, UnicodeError):
        raise ValueError(f"not a PostgreSQL type: {text!r}") from None
    select: Any = stmts[0].stmt if len(stmts) == 1 else None
    target = select.targetList if isinstance(select, ast.SelectStmt) and select.targetList else ()
    other = select is None or any(
        getattr(select, k)
        for k in (
            "fromClause",
            "whereClause",
            "groupClause",
            "havingClause",
            "sortClause",
            "limitCount",
            "withClause",
            "distinctClause",
        )
    )
    cast: Any = target[0].val if len(target) == 1 and not target[0].name else None
    if (
        other
        or not isinstance(cast, ast.TypeCast)
        or not isinstance(cast.arg, ast.A_Const)
        or not cast.arg.isnull
    ):
        raise ValueError(f"not exactly one PostgreSQL type: {text!r}")
    tn: Any = cast.typeName
    if tn.setof or tn.pct_type:
        raise ValueError(f"not a column type: {text!r}")
    return tn


def _quoted(name: str) -> str:
    """A name as PostgreSQL prints it: bare when it reads back the same unquoted, else quoted."""
    if _BARE_NAME.fullmatch(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


_BUILTIN_BASES = frozenset(_CANONICAL.values())


def _extension_modifiers(tn: Any, text: str) -> tuple[str, ...]:
    """Modifiers of a type that is not built in: non-negative integers or single names (``Point``)."""
    mods: list[str] = []
    for m in tn.typmods or ():
        fields: Any = m.fields if isinstance(m, ast.ColumnRef) else None
        value: Any = m.val.ival if isinstance(m, ast.A_Const) and isinstance(m.val, ast.Integer) else None
        if value is not None and value >= 0:
            mods.append(str(value))
        elif fields and len(fields) == 1 and isinstance(fields[0], ast.String) and fields[0].sval:
            mods.append(_quoted(fields[0].sval))
        else:
            raise ValueError(f"type modifiers must be non-negative integers or names: {text!r}")
    if len(mods) > _MAX_EXTENSION_TYPMODS:
        raise ValueError(f"too many type modifiers: {text!r}")
    return tuple(mods)


def _modifiers(tn: Any, base: str, text: str) -> tuple[int | None, int | None, str | None]:
    mods: list[int] = []
    for m in tn.typmods or ():
        value = m.val.ival if isinstance(m, ast.A_Const) and isinstance(m.val, ast.Integer) else None
        if value is None or value < 0:
            raise ValueError(f"type modifiers must be non-negative integers: {text!r}")
        mods.append(value)
    fields = None
    if base == "INTERVAL" and mods:
        mask = mods.pop(0)
        fields = None if mask == _INTERVAL_FULL_RANGE else _INTERVAL_FIELDS.get(mask)
        if mask != _INTERVAL_FULL_RANGE and fields is None:
            raise ValueError(f"not a valid interval type: {text!r}")
    if len(mods) > _MAX_TYPMODS.get(base, 1) - (base == "INTERVAL"):
        raise ValueError(f"too many type modifiers: {text!r}")
    if base in _LENGTH_TYPES and mods and mods[0] < 1:
        raise ValueError(f"length or precision must be at least 1: {text!r}")
    return (mods[0] if mods else None), (mods[1] if len(mods) > 1 else None), fields


def parse_type(text: str) -> PgType:
    """Parse a type as written in a model, manifest or ``format_type()`` into canonical form.

    pglast parses it as the type of ``NULL::<text>``, so anything that is not exactly one type
    name (``int; drop table x``, ``int)``, ``text DEFAULT 1``) is a ValueError. A schema spells
    few distinct types many times, so results are cached by text (errors are not).
    """
    if not isinstance(text, str):
        raise ValueError("empty type")
    return _parse_type(text)


@lru_cache(maxsize=16384)
def _parse_type(text: str) -> PgType:
    tn = _type_name(text)
    names = [n.sval for n in tn.names]
    builtin = names[-1] if names[:-1] in ([], ["pg_catalog"]) else None
    base = _CANONICAL.get(builtin) if builtin else None
    array = 1 if tn.arrayBounds else 0
    if base is None:
        base = ".".join(_quoted(n) for n in names)
        return PgType(base, array=array, modifiers=_extension_modifiers(tn, text))
    length, scale, fields = _modifiers(tn, base, text)
    return PgType(base, length, scale, array, fields)


def canonical_type(text: str) -> str:
    """Canonical spelling of a type: ``character varying(20)`` → ``VARCHAR(20)``, ``integer[][]`` → ``INTEGER[]``."""
    if not isinstance(text, str):
        raise ValueError("empty type")
    return _canonical_type(text)


@lru_cache(maxsize=16384)
def _canonical_type(text: str) -> str:
    return str(_parse_type(text))


def is_known_type(text: str) -> bool:
    """Whether ``text`` is one of the built-in types models and manifests may use."""
    try:
        return parse_type(text).base in KNOWN_BASE_TYPES
    except ValueError:
        return False


def is_manifest_type(text: str) -> bool:
    """Whether ``text`` is a column type a manifest may write, spelled canonically (what
    dataflow.schema.column_type_pattern admits): a known built-in type, or another type (an extension's,
    an enum's) named by at most schema and name. A manifest is read as written, so ``integer`` is not
    ``INTEGER`` here; a model's or the catalog's spelling goes through :func:`canonical_type` instead."""
    try:
        t = parse_type(text)
    except ValueError:
        return False
    if t.builtin:
        return t.base in MANIFEST_BASE_TYPES and canonical_type(text) == text
    if len(_type_name(text).names) > 2:  # database.schema.name: never ours
        return False
    # canonical as written, but for a bare modifier name's case (PostgreSQL folds geometry(Point) to point)
    head, tail = t.base, "[]" * t.array
    canonical = canonical_type(text)
    if not (text.startswith(head) and text.endswith(tail)):
        return False
    written_mods = text[len(head) : len(text) - len(tail)]
    return written_mods.lower() == canonical[len(head) : len(canonical) - len(tail)].lower()


def is_builtin_type(text: str) -> bool:
    """Whether ``text`` (which must parse) names a built-in type: only other types need the server."""
    return parse_type(text).builtin


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
    if a.base == b.base and a.length == b.length and a.scale == b.scale and a.modifiers == b.modifiers:
        return Conversion.IN_PLACE
    target = _WIDENS.get(a.base, set())
    if b.base in target and (b.base != "VARCHAR" or b.length is None):
        return Conversion.WIDENING
    return Conversion.NARROWING
