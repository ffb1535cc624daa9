"""Quoting identifiers and literals, and parsing SQL expressions with pglast."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from decimal import Decimal
from functools import lru_cache
from typing import Any

import pglast
from pglast import ast, enums
from pglast import parser as pg_parser
from pglast.stream import RawStream
from pglast.visitors import Visitor

from dataflow.types import parse_type

MAX_IDENTIFIER_BYTES = 63
# Expressions are bounded before pglast sees them: its C parser overflows the stack on ~60 KB of
# ``1+1+...`` and the Python tree walkers (deparse, visitors) recurse ~6 frames per level.
# 4 KiB is far more than any hand-written default, check or index expression needs; 64 levels keep
# every walker well inside Python's recursion limit even when called from a deep (operator) stack.
MAX_EXPRESSION_BYTES = 4096
MAX_EXPRESSION_DEPTH = 64
_HASH_CHARS = 8


def identifier_problem(name: object) -> str | None:
    """Why ``name`` cannot be a PostgreSQL identifier (None when it can)."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty name"
    if "\x00" in name:
        return "must not contain NUL"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    if size > MAX_IDENTIFIER_BYTES:
        return f"is longer than {MAX_IDENTIFIER_BYTES} bytes ({size} bytes; PostgreSQL would cut it)"
    return None


def check_identifier(name: object, field: str) -> str:
    """Return ``name`` when it is a usable identifier, else raise SchemaError naming ``field``.

    PostgreSQL silently truncates longer names, so two long names could become one object.
    """
    problem = identifier_problem(name)
    if problem:
        from dataflow.errors import (
            SchemaError,  # errors is a leaf module; imported late to keep sqltext standalone
        )

        raise SchemaError(field, problem)
    return name  # type: ignore[return-value]


def quote_ident(name: str) -> str:
    """Always-quoted identifier: ``user`` → ``"user"``, ``a"b`` → ``"a""b"``."""
    if not isinstance(name, str):
        raise ValueError(f"invalid identifier {name!r}: {identifier_problem(name)}")
    return _quote_ident(name)


@lru_cache(maxsize=65536)
def _quote_ident(name: str) -> str:
    """Cached by name: rendering a large schema quotes the same table and column names many times."""
    problem = identifier_problem(name)
    if problem:
        raise ValueError(f"invalid identifier {name!r}: {problem}")
    return '"' + name.replace('"', '""') + '"'


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that fits ``max_bytes`` bytes, never splitting a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def constraint_name(table: str, parts: Iterable[str], suffix: str) -> str:
    """The derived name of an index, constraint or backup: ``order_user_id_fkey``.

    Names that fit 63 bytes are exactly what PostgreSQL would choose, so existing databases match.
    Longer ones keep a readable prefix cut on a character boundary plus a hash of the full name
    (and the suffix), so distinct inputs never collapse into one object.
    """
    name = "_".join([table, *parts, suffix])
    encoded = name.encode("utf-8")
    if len(encoded) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:_HASH_CHARS]
    tail = f"_{digest}_{_cut_utf8(suffix, 16)}"
    return _cut_utf8(name, MAX_IDENTIFIER_BYTES - len(tail.encode())) + tail


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
    if "\x00" in text:
        raise ValueError("an expression cannot contain NUL")
    size = len(text.encode("utf-8"))
    if size > MAX_EXPRESSION_BYTES:
        raise ValueError(f"expression is {size} bytes long; the limit is {MAX_EXPRESSION_BYTES} bytes")
    try:
        stmts = pg_parser.parse_sql(f"SELECT {text}")
    except pglast.parser.ParseError as exc:
        raise ValueError(f"not a valid SQL expression: {exc}") from None
    if len(stmts) != 1:
        raise ValueError("must be a single expression, not several statements")
    select: Any = stmts[0].stmt
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
    node = select.targetList[0].val
    depth = tree_depth(node)
    if depth > MAX_EXPRESSION_DEPTH:
        raise ValueError(f"expression nests {depth} levels deep; the limit is {MAX_EXPRESSION_DEPTH} levels")
    return node


def tree_depth(node: Any) -> int:
    """Depth of a pglast tree in nodes, measured without recursion (the tree may be very deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend((child, depth) for child in item)
        elif isinstance(item, ast.Node):
            deepest = max(deepest, depth)
            stack.extend((getattr(item, slot, None), depth + 1) for slot in getattr(item, "__slots__", ()))
    return deepest


_TEXT_TYPES = frozenset({"text", "varchar", "bpchar"})
_INT_RANGES = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
_FLOAT_TYPES = frozenset({"float4", "float8"})
_EXACT_FLOAT_INT = 2**24  # integers up to here are exact in real and double precision
_REGCONFIG_FUNCTIONS = frozenset(
    {"to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery"}
)
_COMPARISONS = frozenset({"=", "<>", "!=", "<", ">", "<=", ">="})
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _cast_type(node: Any) -> str | None:
    """``pg_catalog.int4`` / ``int4`` → ``int4``; None for arrays, %TYPE and other schemas."""
    tn = node.typeName
    names = [n.sval for n in tn.names or ()]
    if tn.arrayBounds or tn.setof or tn.pct_type or not names or names[:-1] not in ([], ["pg_catalog"]):
        return None
    return names[-1]


def _literal(node: Any) -> tuple[str, Any] | None:
    """(kind, value) of a non-NULL constant: kind is "int", "decimal" or "string"."""
    if not isinstance(node, ast.A_Const) or node.isnull:
        return None
    val = node.val
    if isinstance(val, ast.Integer):
        return "int", val.ival
    if isinstance(val, ast.Float):
        return "decimal", Decimal(str(val.fval))
    if isinstance(val, ast.String):
        return "string", val.sval
    return None


def _number_node(value: int | Decimal) -> Any:
    return parse_expression(str(value))


def _natural_number(node: Any) -> Any | None:
    """``'-1'::integer`` → ``-1``: a number cast to the type the bare number has anyway (any context)."""
    lit, target = _literal(node.arg), _cast_type(node)
    if lit is None or target is None or not (lit[0] != "string" or _NUMBER.fullmatch(lit[1])):
        return None
    text = str(lit[1])
    value: int | Decimal
    if "." not in text:
        value = int(text)
        natural = "int4" if -(2**31) <= value < 2**31 else "int8" if -(2**63) <= value < 2**63 else "numeric"
    else:
        value, natural = Decimal(text), "numeric"
    return _number_node(value) if target == natural else None


def _comparison_operand(node: Any) -> Any | None:
    """A literal's cast PostgreSQL adds when it stores a comparison (``price >= (0)::numeric``) → the bare literal.

    Only where the bare literal resolves to the same value: strings to text types, integers
    (in range) to integer, numeric and (exact) float types, decimals to numeric.
    """
    if not isinstance(node, ast.TypeCast):
        return None
    lit, target = _literal(node.arg), _cast_type(node)
    if lit is None or target is None:
        return None
    kind, value = lit
    if kind == "string" and _NUMBER.fullmatch(value) and target not in _TEXT_TYPES:
        kind, value = ("decimal", Decimal(value)) if "." in value else ("int", int(value))
        node = ast.TypeCast(arg=_number_node(value), typeName=node.typeName)
    if kind == "string" and target in _TEXT_TYPES and node.typeName.typmods is None:
        return node.arg
    if kind == "int" and (
        target == "numeric"
        and node.typeName.typmods is None
        or target in _INT_RANGES
        and abs(value) < _INT_RANGES[target]
        or target in _FLOAT_TYPES
        and abs(value) <= _EXACT_FLOAT_INT
    ):
        return node.arg
    if kind == "decimal" and target == "numeric" and node.typeName.typmods is None:
        return node.arg
    return None


def _is_constant(node: Any) -> bool:
    return (
        isinstance(node, ast.A_Const) or isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.A_Const)
    )


class _DropStoredCasts(Visitor):
    """Undo the casts PostgreSQL adds to literals when it stores an expression, and only those.

    ``'-1'::integer`` → ``-1`` anywhere; ``price >= (0)::numeric`` → ``price >= 0`` and
    ``status = 'x'::text`` → ``status = 'x'`` only as a comparison operand against a non-constant,
    where PostgreSQL resolves the bare literal to the same type. ``'victim'::regclass::oid``,
    ``'1 day'::interval`` and ``(1)::numeric / 3`` keep their casts.
    """

    def visit_TypeCast(self, ancestors: Any, node: Any) -> Any:  # noqa: N802 (pglast API)
        return _natural_number(node)

    def visit_A_Expr(self, ancestors: Any, node: Any) -> None:  # noqa: N802 (pglast API)
        op = node.name[-1].sval if node.name and isinstance(node.name[-1], ast.String) else None
        comparison = (
            node.kind
            in (enums.A_Expr_Kind.AEXPR_OP, enums.A_Expr_Kind.AEXPR_OP_ANY, enums.A_Expr_Kind.AEXPR_OP_ALL)
            and op in _COMPARISONS
        )
        comparison = comparison or node.kind in (
            enums.A_Expr_Kind.AEXPR_DISTINCT,
            enums.A_Expr_Kind.AEXPR_NOT_DISTINCT,
        )
        if node.lexpr is None or node.rexpr is None:
            return None
        if not comparison:
            self._same_typed_operands(node)
            return None
        left, right = node.lexpr, node.rexpr
        if not _is_constant(left):
            node.rexpr = _comparison_operand(right) or right
        if not _is_constant(right):
            node.lexpr = _comparison_operand(left) or left
        return None

    @staticmethod
    def _same_typed_operands(node: Any) -> None:
        """``(1)::numeric / (3)::numeric`` → ``(1)::numeric / 3``: beside an operand cast to the same type, a
        literal's cast is redundant (PostgreSQL adds it when it stores the expression)."""
        if node.kind != enums.A_Expr_Kind.AEXPR_OP:
            return
        left, right = node.lexpr, node.rexpr
        if not (isinstance(left, ast.TypeCast) and isinstance(right, ast.TypeCast)):
            return
        left_type: Any = left.typeName
        right_type: Any = right.typeName
        if _cast_type(left) is None or RawStream()(left_type) != RawStream()(right_type):
            return
        node.rexpr = _comparison_operand(right) or right

    def visit_CoalesceExpr(self, ancestors: Any, node: Any) -> None:  # noqa: N802 (pglast API)
        """``COALESCE(name, ''::text)``: the literal takes the type of its non-constant siblings."""
        if node.args and not all(_is_constant(a) for a in node.args):
            node.args = tuple(_comparison_operand(a) or a for a in node.args)

    visit_MinMaxExpr = visit_CoalesceExpr  # noqa: N815 (GREATEST/LEAST resolve their arguments the same way)

    def visit_FuncCall(self, ancestors: Any, node: Any) -> None:  # noqa: N802 (pglast API)
        """``to_tsvector('english'::regconfig, body)``: every 2-argument form takes a regconfig first."""
        name = ".".join(part.sval for part in node.funcname).lower().removeprefix("pg_catalog.")
        first = node.args[0] if node.args and len(node.args) == 2 else None
        if (
            name in _REGCONFIG_FUNCTIONS
            and isinstance(first, ast.TypeCast)
            and _cast_type(first) == "regconfig"
        ):
            lit = _literal(first.arg)
            first_type: Any = first.typeName
            if lit and lit[0] == "string" and not first_type.typmods:
                node.args = (first.arg, node.args[1])


def function_names(text: str) -> frozenset[str]:
    """Lower-cased names (``schema.name`` when qualified) of every function ``text`` calls.

    Cached by text: a schema repeats the same few defaults and checks across many tables.
    """
    if not isinstance(text, str):
        raise ValueError("empty expression")
    return _function_names(text)


@lru_cache(maxsize=16384)
def _function_names(text: str) -> frozenset[str]:
    names: set[str] = set()

    class _Calls(Visitor):
        def visit_FuncCall(self, ancestors: Any, node: Any) -> None:  # noqa: N802 (pglast API)
            names.add(".".join(part.sval for part in node.funcname).lower())

    _Calls()(parse_expression(text))
    return frozenset(names)


@lru_cache(maxsize=16384)
def normalise_expression(text: str) -> str:
    """Canonical text of an expression, so the model's and the catalog's spellings compare equal.

    Parses with pglast, drops only the literal casts PostgreSQL adds when it stores an expression
    (see :class:`_DropStoredCasts`) and deparses: ``(price > (0)::numeric)`` → ``price > 0``.
    """
    return RawStream()(_DropStoredCasts()(parse_expression(text)))


_NOW_SPELLINGS = {"now()": "CURRENT_TIMESTAMP", "transaction_timestamp()": "CURRENT_TIMESTAMP"}


@lru_cache(maxsize=16384)
def normalise_default(text: str | None, column_type: str | None = None) -> str | None:
    """Compare-friendly form of a column default; None when there is none (NULL stores nothing).

    A default is assigned to its column, so a literal's cast to the column's own type is a no-op:
    ``'pending'::character varying`` → ``'pending'`` for a VARCHAR column. ``column_type`` None
    means "as ``pg_get_expr`` prints a stored default", which is always coerced to its column already.
    ``now()`` → ``CURRENT_TIMESTAMP``.
    """
    if text is None:
        return None
    node = _DropStoredCasts()(parse_expression(text))
    while isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.A_Const) and node.arg.isnull:
        node = node.arg
    if isinstance(node, ast.A_Const) and node.isnull:
        return None
    if isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.A_Const) and _same_type(node, column_type):
        numeric = _cast_type(node) in (*_INT_RANGES, *_FLOAT_TYPES, "numeric")
        node = (_natural_number_literal(node.arg) if numeric else None) or node.arg
    value = RawStream()(node)
    if value.lower() in ("true", "false"):
        return value.lower()
    return _NOW_SPELLINGS.get(value.lower(), value)


def _same_type(cast: Any, column_type: str | None) -> bool:
    """Whether ``cast`` converts to the column's type (always true for a catalog default)."""
    if column_type is None:
        return True
    try:
        return parse_type(RawStream()(cast.typeName)).base == parse_type(column_type).base
    except ValueError:
        return False


def _natural_number_literal(node: Any) -> Any | None:
    """``'-2.5'`` (cast to a numeric type, assigned to a numeric column) is the number ``-2.5``."""
    lit = _literal(node)
    if lit and lit[0] == "string" and _NUMBER.fullmatch(lit[1]):
        return _number_node(Decimal(lit[1]) if "." in lit[1] else int(lit[1]))
    return None


@lru_cache(maxsize=16384)
def strip_check(definition: str) -> str:
    """``CHECK ((price >= (0)::double precision))`` → ``price >= 0``."""
    inner = definition.strip()
    if inner.upper().startswith("CHECK"):
        inner = inner[5:].strip()
    inner = re.sub(r"\s+NOT VALID$", "", inner)
    return normalise_expression(inner)
