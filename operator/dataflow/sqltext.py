"""Quoting identifiers and literals, and parsing SQL expressions with pglast."""

from __future__ import annotations

import re
from functools import lru_cache
from decimal import Decimal
from typing import Any

import pglast
from pglast import ast, parser as pg_parser
from pglast.stream import RawStream
from pglast.visitors import Visitor

MAX_IDENTIFIER_BYTES = 63


def quote_ident(name: str) -> str:
    """Always-quoted identifier: ``user`` → ``"user"``, ``a"b`` → ``"a""b"``."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid identifier {name!r}")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"identifier {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    return '"' + name.replace('"', '""') + '"'


def constraint_name(table: str, parts: tuple[str, ...] | list[str], suffix: str) -> str:
    """PostgreSQL-style default names (``order_user_id_fkey``), trimmed to 63 bytes."""
    name = "_".join([table, *parts, suffix])
    while len(name.encode()) > MAX_IDENTIFIER_BYTES:
        name = name[:-1]
    return name


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def quote_literal(value: Any) -> str:
    """Render a Python value as a safe SQL literal (used for DEFAULT clauses, which cannot be bound)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"'{value}'"
        return repr(value)
    text = str(value)
    if "\x00" in text:
        raise ValueError("a literal cannot contain NUL")
    _require_utf8(text)
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"


def _require_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid UTF-8 text ({exc.reason} at position {exc.start})") from None


def parse_expression(text: str) -> Any:
    """Parse ``text`` as exactly one SQL scalar expression; raise ValueError otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty expression")
    _require_utf8(text)
    try:
        stmts = pg_parser.parse_sql(f"SELECT {text}")
    except pglast.parser.ParseError as exc:
        raise ValueError(f"not a valid SQL expression: {exc}") from None
    if len(stmts) != 1:
        raise ValueError("must be a single expression, not several statements")
    select = stmts[0].stmt
    if (
        select.targetList is None
        or len(select.targetList) != 1
        or select.fromClause
        or select.whereClause
        or select.groupClause
        or select.havingClause
        or select.sortClause
        or select.limitCount
        or select.withClause
    ):
        raise ValueError("must be a single expression")
    if getattr(select.targetList[0], "name", None):
        raise ValueError("must be a single expression")
    return select.targetList[0].val


class _DropConstantCasts(Visitor):
    """``(0)::numeric`` → ``0``: PostgreSQL adds such casts when it stores an expression."""

    def visit_TypeCast(self, ancestors: Any, node: ast.TypeCast) -> Any:  # noqa: N802 (pglast API)
        return node.arg if isinstance(node.arg, ast.A_Const) else None


def function_names(text: str) -> frozenset[str]:
    """Lower-cased names (``schema.name`` when qualified) of every function ``text`` calls."""
    names: set[str] = set()

    class _Calls(Visitor):
        def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:  # noqa: N802 (pglast API)
            names.add(".".join(part.sval for part in node.funcname).lower())

    _Calls()(parse_expression(text))
    return frozenset(names)


@lru_cache(maxsize=4096)
def normalise_expression(text: str) -> str:
    """Canonical text of an expression, so the model's and the catalog's spellings compare equal.

    Parses with pglast, drops casts on constants and deparses: ``(price > (0)::numeric)`` →
    ``price > 0``.
    """
    node = _DropConstantCasts()(parse_expression(text))
    return RawStream()(node)


_NUMERIC_STRING = re.compile(r"'(-?\d+(?:\.\d+)?)'")
_NOW_SPELLINGS = {"now()": "CURRENT_TIMESTAMP", "transaction_timestamp()": "CURRENT_TIMESTAMP"}


@lru_cache(maxsize=4096)
def normalise_default(text: str | None) -> str | None:
    """Compare-friendly form of a column default.

    ``'pending'::character varying`` → ``'pending'``, ``'-1'::integer`` → ``-1``,
    ``now()`` → ``CURRENT_TIMESTAMP``.
    """
    if text is None:
        return None
    value = normalise_expression(text)
    numeric = _NUMERIC_STRING.fullmatch(value)
    if numeric and re.search(r"::\s*(integer|bigint|smallint|numeric|real|double precision)", text, re.I):
        value = numeric.group(1)
    if value.lower() in ("true", "false", "null"):
        return value.lower()
    return _NOW_SPELLINGS.get(value.lower(), value)


@lru_cache(maxsize=4096)
def strip_check(definition: str) -> str:
    """``CHECK ((price >= (0)::double precision))`` → ``price >= 0``."""
    inner = definition.strip()
    if inner.upper().startswith("CHECK"):
        inner = inner[5:].strip()
    inner = re.sub(r"\s+NOT VALID$", "", inner)
    return normalise_expression(inner)
