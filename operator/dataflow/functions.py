"""Functions and triggers: their canonical form, checks and SQL, shared by the schema, the diff and the ops.

A function's argument list and return type are parsed by pglast (as part of the CREATE FUNCTION they
go into) and rebuilt from the parse: names re-quoted, types in canonical spelling
(:func:`dataflow.types.canonical_type`), defaults deparsed. The model's text and the catalog's
(``pg_get_function_arguments``, ``pg_get_function_result``) therefore compare equal, and nothing but one
argument list or one type can reach SQL through them. A ``sql`` body must parse and is kept in deparsed
form; a ``plpgsql`` body is compared as normalised text (line endings, trailing blanks, blank edges).

The body goes into SQL dollar-quoted with a tag it does not contain. A function DataFlow creates is
marked with :data:`MARKER` and its owner (``COMMENT ON FUNCTION``): only the owner's marked functions may
ever be dropped, so a DBA's own function (or another owner's) is never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream, maybe_double_quote_name

from dataflow.errors import SchemaError
from dataflow.schema import (
    FUNCTION_LANGUAGES,
    TRIGGER_EVENTS,
    TRIGGER_LEVELS,
    TRIGGER_TIMINGS,
    VOLATILITIES,
    Function,
    Trigger,
    keyword_choice,
)
from dataflow.sqltext import check_identifier, normalise_expression, qualified, quote_ident, quote_literal
from dataflow.types import canonical_type

MARKER = "managed by dataflow"
_PROBE_NAME = "dataflow_probe"
_MODES = {"o": "OUT ", "b": "INOUT ", "v": "VARIADIC "}  # IN (i) and the default (d) print nothing
_FUNCTION_KEYS = {"name", "arguments", "returns", "language", "body", "volatility"}
_TRIGGER_KEYS = {"name", "function", "timing", "events", "level", "columns", "when"}
# CreateTrigStmt bits (PostgreSQL's TRIGGER_TYPE_*)
_TIMING_BITS = {"BEFORE": 2, "AFTER": 0, "INSTEAD OF": 64}
_EVENT_BITS = {"INSERT": 4, "UPDATE": 16, "DELETE": 8, "TRUNCATE": 32}


# canonical form ------------------------------------------------------------------------------------
def _function_stmt(arguments: str, returns: str, field: str) -> ast.CreateFunctionStmt:
    """The one CreateFunctionStmt ``arguments`` and ``returns`` make, or a SchemaError naming ``field``."""
    sql = f"CREATE FUNCTION {_PROBE_NAME}({arguments}) RETURNS {returns} LANGUAGE sql AS $$ SELECT 1 $$"
    try:
        statements = parse_sql(sql)
    except ParseError as exc:
        raise SchemaError(field, f"does not parse: {exc}") from None
    stmt = statements[0].stmt if len(statements) == 1 else None
    if not isinstance(stmt, ast.CreateFunctionStmt) or [n.sval for n in stmt.funcname or ()] != [_PROBE_NAME]:
        raise SchemaError(field, "must be one argument list or type, nothing more")
    if len(stmt.options or ()) != 2:
        raise SchemaError(field, "must be one argument list or type, nothing more")
    return stmt


def _type_text(node: Any, field: str) -> str:
    text = RawStream()(node)
    try:
        return canonical_type(text)
    except ValueError as exc:
        raise SchemaError(field, str(exc)) from None


def _parameter(p: ast.FunctionParameter, field: str, modes: bool = True) -> str:
    text = _MODES.get(str(p.mode), "") if modes else ""
    if p.name:
        text += maybe_double_quote_name(p.name) + " "
    text += _type_text(p.argType, field)
    if p.defexpr is not None and modes:
        text += " DEFAULT " + normalise_expression(RawStream()(p.defexpr))
    return text


def canonical_arguments(text: Any, field: str) -> str:
    """An argument list in canonical form (``a int, b int = 3`` → ``a INTEGER, b INTEGER DEFAULT 3``)."""
    if not isinstance(text, str):
        raise SchemaError(field, f"must be text, not {type(text).__name__}")
    stmt = _function_stmt(text, "void", field)
    return ", ".join(_parameter(p, field) for p in stmt.parameters or () if str(p.mode) != "t")


def canonical_returns(text: Any, field: str) -> str:
    """A return type in canonical form: ``TYPE``, ``SETOF TYPE`` or ``TABLE(name TYPE, ...)``."""
    if not isinstance(text, str) or not text.strip():
        raise SchemaError(field, "is required: a type such as INTEGER, SETOF TEXT or trigger")
    stmt = _function_stmt("", text, field)
    columns = [p for p in stmt.parameters or () if str(p.mode) == "t"]
    if columns:
        return "TABLE(" + ", ".join(_parameter(p, field, modes=False) for p in columns) + ")"
    returned = stmt.returnType
    if returned is None:
        raise SchemaError(field, "must be a type")
    return ("SETOF " if returned.setof else "") + _type_text(
        ast.TypeName(names=returned.names, typmods=returned.typmods, arrayBounds=returned.arrayBounds), field
    )


def identity_arguments(arguments: str) -> str:
    """The argument types that identify the function (for DROP and COMMENT): no names, defaults nor OUT."""
    stmt = _function_stmt(arguments, "void", "arguments")
    return ", ".join(
        _MODES.get(str(p.mode), "") + _type_text(p.argType, "arguments")
        for p in stmt.parameters or ()
        if str(p.mode) not in ("o", "t")
    )


def normalise_body(body: Any, language: str, field: str) -> str:
    """A ``sql`` body parsed and deparsed (statements joined by ``;``); a ``plpgsql`` body's normalised text."""
    if not isinstance(body, str) or not body.strip():
        raise SchemaError(field, "is required: the function's body")
    if "\x00" in body:
        raise SchemaError(field, "must not contain NUL")
    if language == "sql":
        try:
            statements = parse_sql(body)
        except ParseError as exc:
            raise SchemaError(field, f"is not valid SQL: {exc}") from None
        if not statements:
            raise SchemaError(field, "holds no statement")
        return "; ".join(RawStream()(s.stmt) for s in statements if s.stmt is not None)
    lines = [line.rstrip() for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _text(d: Mapping[str, Any], key: str, path: str, default: str | None = None) -> Any:
    value = d.get(key, default)
    if value is None:
        raise SchemaError(f"{path}.{key}", "is required")
    return value


def function_from_dict(d: Any, path: str) -> Function:
    """One function of ``spec.functions`` or a model's ``__dataflow__``: checked and in canonical form."""
    if not isinstance(d, Mapping):
        raise SchemaError(path, "must be a mapping with name, returns, body")
    keys = {"securityDefiner" if k == "security_definer" else k for k in d}
    unknown = keys - _FUNCTION_KEYS - {"securityDefiner"}
    if unknown:
        raise SchemaError(f"{path}.{sorted(unknown)[0]}", "is not a function option")
    name = check_identifier(d.get("name"), f"{path}.name")
    language = keyword_choice(d.get("language", "plpgsql"), f"{path}.language", FUNCTION_LANGUAGES).lower()
    security = d.get("securityDefiner", d.get("security_definer", False))
    if not isinstance(security, bool):
        raise SchemaError(f"{path}.securityDefiner", f"must be true or false, not {security!r}")
    return Function(
        name=name,
        returns=canonical_returns(_text(d, "returns", path), f"{path}.returns"),
        body=normalise_body(_text(d, "body", path), language, f"{path}.body"),
        arguments=canonical_arguments(d.get("arguments") or "", f"{path}.arguments"),
        language=language,
        volatility=keyword_choice(d.get("volatility", "volatile"), f"{path}.volatility", VOLATILITIES),
        security_definer=security,
    )


def unique_functions(functions: Iterable[Function]) -> tuple[Function, ...]:
    """Each function once by name (overloads are not supported); the same one twice is kept once."""
    by_name: dict[str, Function] = {}
    for f in functions:
        if by_name.setdefault(f.name, f) != f:
            raise SchemaError(f"functions.{f.name}", "is declared twice with different definitions")
    return tuple(by_name.values())


def _events(value: Any, path: str) -> tuple[str, ...]:
    events = [value] if isinstance(value, str) else value
    if not isinstance(events, (list, tuple)) or not events:
        raise SchemaError(path, f"must be a non-empty list of {', '.join(TRIGGER_EVENTS)}")
    chosen = {keyword_choice(e, path, TRIGGER_EVENTS) for e in events}
    return tuple(e for e in TRIGGER_EVENTS if e in chosen)


def trigger_from_dict(d: Any, path: str) -> Trigger:
    """One trigger of a table (``triggers`` in the manifest, ``__dataflow__["triggers"]`` on a model)."""
    if not isinstance(d, Mapping):
        raise SchemaError(path, "must be a mapping with name, timing, events, function")
    unknown = set(d) - _TRIGGER_KEYS
    if unknown:
        raise SchemaError(f"{path}.{sorted(unknown)[0]}", "is not a trigger option")
    events = _events(_text(d, "events", path), f"{path}.events")
    columns = d.get("columns") or ()
    if isinstance(columns, str) or not isinstance(columns, (list, tuple)):
        raise SchemaError(f"{path}.columns", "must be a list of column names")
    columns = tuple(check_identifier(c, f"{path}.columns") for c in columns)
    if columns and "UPDATE" not in events:
        raise SchemaError(f"{path}.columns", "UPDATE OF columns needs the UPDATE event")
    when = d.get("when")
    if when is not None:
        if not isinstance(when, str):
            raise SchemaError(f"{path}.when", f"must be SQL text, not {type(when).__name__}")
        try:
            when = normalise_expression(when)
        except ValueError as exc:
            raise SchemaError(f"{path}.when", str(exc)) from None
    trigger = Trigger(
        name=check_identifier(d.get("name"), f"{path}.name"),
        function=check_identifier(d.get("function"), f"{path}.function"),
        timing=keyword_choice(_text(d, "timing", path), f"{path}.timing", TRIGGER_TIMINGS),
        events=events,
        level=keyword_choice(d.get("level", "ROW"), f"{path}.level", TRIGGER_LEVELS),
        columns=tuple(sorted(set(columns))),
        when=when,
    )
    return check_trigger(trigger, path)


def check_trigger(t: Trigger, path: str) -> Trigger:
    """What PostgreSQL refuses, refused before any SQL runs."""
    if t.level == "STATEMENT" and t.when is not None and ("new." in t.when or "old." in t.when):
        raise SchemaError(f"{path}.when", "a statement-level trigger cannot refer to OLD or NEW")
    if "TRUNCATE" in t.events and t.level == "ROW":
        raise SchemaError(f"{path}.events", "TRUNCATE fires only FOR EACH STATEMENT")
    if t.timing == "INSTEAD OF":
        raise SchemaError(
            f"{path}.timing", "INSTEAD OF triggers are for views, which DataFlow does not manage"
        )
    return t


# SQL -------------------------------------------------------------------------------------------------
def dollar_quote(body: str) -> str:
    """``body`` between dollar quotes whose tag does not occur in it."""
    n = 0
    while True:
        tag = "$body$" if n == 0 else f"$body{n}$"
        if tag not in body:
            return f"{tag}\n{body}\n{tag}"
        n += 1


def signature(f: Function, schema: str) -> str:
    """``"schema"."name"(types)``: what DROP FUNCTION and COMMENT ON FUNCTION name."""
    return f"{qualified(schema, f.name)}({identity_arguments(f.arguments)})"


def create_function_sql(f: Function, schema: str) -> str:
    """CREATE OR REPLACE FUNCTION; checked by pglast to be exactly one CreateFunctionStmt of this name."""
    security = " SECURITY DEFINER" if f.security_definer else ""
    sql = (
        f"CREATE OR REPLACE FUNCTION {qualified(schema, f.name)}({f.arguments}) RETURNS {f.returns}"
        f" LANGUAGE {keyword_choice(f.language, 'language', FUNCTION_LANGUAGES).lower()}"
        f" {keyword_choice(f.volatility, 'volatility', VOLATILITIES).upper()}{security}"
        f" AS {dollar_quote(f.body)};"
    )
    statements = parse_sql(sql)
    stmt = statements[0].stmt if len(statements) == 1 else None
    if not isinstance(stmt, ast.CreateFunctionStmt) or [n.sval for n in stmt.funcname or ()] != [
        schema,
        f.name,
    ]:
        raise SchemaError(f"functions.{f.name}", "does not make exactly one CREATE FUNCTION")
    return sql


def marker(owner: str) -> str:
    """The comment that marks a function as this owner's."""
    return f"{MARKER} (owner {owner})" if owner else MARKER


def marked_owner(comment: str | None) -> str | None:
    """The owner a function's comment marks it for ("" without one), or None: not DataFlow's."""
    if comment == MARKER:
        return ""
    prefix = f"{MARKER} (owner "
    if comment and comment.startswith(prefix) and comment.endswith(")"):
        return comment[len(prefix) : -1]
    return None


def mark_function_sql(f: Function, schema: str) -> str:
    """Mark ``f`` as its owner's (None: remove the mark)."""
    text = "NULL" if f.owner is None else quote_literal(marker(f.owner))
    return f"COMMENT ON FUNCTION {signature(f, schema)} IS {text};"


def drop_function_sql(f: Function, schema: str, if_exists: bool = False) -> str:
    return f"DROP FUNCTION {'IF EXISTS ' if if_exists else ''}{signature(f, schema)};"


def create_trigger_sql(t: Trigger, table: str, schema: str) -> str:
    events = []
    for e in t.events:
        event = keyword_choice(e, "events", TRIGGER_EVENTS)
        if event == "UPDATE" and t.columns:
            event += " OF " + ", ".join(quote_ident(c) for c in t.columns)
        events.append(event)
    when = f" WHEN ({normalise_expression(t.when)})" if t.when is not None else ""
    return (
        f"CREATE TRIGGER {quote_ident(t.name)} {keyword_choice(t.timing, 'timing', TRIGGER_TIMINGS)}"
        f" {' OR '.join(events)} ON {qualified(schema, table)}"
        f" FOR EACH {keyword_choice(t.level, 'level', TRIGGER_LEVELS)}{when}"
        f" EXECUTE FUNCTION {qualified(schema, t.function)}();"
    )


def drop_trigger_sql(t: Trigger, table: str, schema: str, if_exists: bool = False) -> str:
    return f"DROP TRIGGER {'IF EXISTS ' if if_exists else ''}{quote_ident(t.name)} ON {qualified(schema, table)};"


# introspection ---------------------------------------------------------------------------------------
def trigger_from_definition(name: str, function: str, definition: str) -> Trigger:
    """A trigger as ``pg_get_triggerdef`` prints it (``function``: its function's name, qualified when it
    lies in another schema)."""
    stmt: Any = parse_sql(definition)[0].stmt
    timing = next((k for k, bit in _TIMING_BITS.items() if bit and stmt.timing & bit), "AFTER")
    events = tuple(e for e in TRIGGER_EVENTS if stmt.events & _EVENT_BITS[e])
    when = normalise_expression(RawStream()(stmt.whenClause)) if stmt.whenClause is not None else None
    return Trigger(
        name=name,
        function=function,
        timing=timing,
        events=events,
        level="ROW" if stmt.row else "STATEMENT",
        columns=tuple(sorted(c.sval for c in stmt.columns or ())),
        when=when,
    )
