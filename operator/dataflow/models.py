"""Python model classes → :class:`dataflow.schema.Table`.

A model is a plain class with annotated fields::

    class User:
        name: str
        email: str = Field(max_length=255, unique=True)
        created_at: datetime = None
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import types
import typing
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from dataflow.errors import SchemaError
from dataflow.schema import (
    FK_ACTIONS,
    POLICY_COMMANDS,
    PUBLIC_ROLE,
    Check,
    Column,
    ForeignKey,
    Index,
    Policy,
    Table,
    Unique,
    check_policy,
    collation_name,
    keyword_choice,
    policy_roles,
)
from dataflow.sqltext import (
    check_identifier,
    constraint_name,
    normalise_default,
    normalise_expression,
    quote_ident,
    quote_literal,
)
from dataflow.types import canonical_type

_MISSING = object()
AUTO_TIMESTAMP_FIELDS = ("created_at", "updated_at")

PYTHON_TYPES: dict[type, str] = {
    str: "TEXT",
    int: "BIGINT",
    float: "DOUBLE PRECISION",
    bool: "BOOLEAN",
    datetime: "TIMESTAMPTZ",
    date: "DATE",
    time: "TIME",
    timedelta: "INTERVAL",
    Decimal: "NUMERIC(10,2)",
    dict: "JSONB",
    list: "JSONB",
    bytes: "BYTEA",
    uuid.UUID: "UUID",
}


@dataclasses.dataclass(frozen=True)
class Field:
    """Column options for a model field.

    ``references`` names the target as ``"table.column"`` (or ``"table"`` for its ``id``);
    ``renamed_from`` makes the diff rename the old column instead of dropping it.
    """

    default: Any = _MISSING
    nullable: bool | None = None
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    unique: bool = False
    index: bool = False
    primary_key: bool = False
    references: str | None = None
    on_delete: str = "NO ACTION"
    on_update: str = "NO ACTION"
    renamed_from: str | None = None
    db_type: str | None = None
    check: str | None = None
    sql_default: str | None = None  # an SQL expression such as "gen_random_uuid()", parsed as one expression
    comment: str | None = None  # COMMENT ON the column (None: the database's comment is left alone)
    collation: str | None = None  # the column's collation, such as "C" (None: its type's default)


def snake_case(name: str) -> str:
    """``OrderItem`` → ``order_item``; ``HTTPLog`` → ``http_log``."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


# Limits PostgreSQL itself enforces on type modifiers (varchar length, numeric precision).
_MAX_LENGTH = 10_485_760
_MAX_PRECISION = 1000


def _check_modifiers(opts: Field, path: str) -> None:
    """``max_length``, ``precision`` and ``scale`` must be integers in PostgreSQL's ranges."""
    for name, low, high in (
        ("max_length", 1, _MAX_LENGTH),
        ("precision", 1, _MAX_PRECISION),
        ("scale", 0, _MAX_PRECISION),
    ):
        value = getattr(opts, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{path}.{name}", f"must be an integer, not {type(value).__name__}")
        if not low <= value <= high:
            raise SchemaError(f"{path}.{name}", f"must be between {low} and {high}, not {value}")
    if opts.precision is not None and opts.scale is not None and opts.scale > opts.precision:
        raise SchemaError(f"{path}.scale", f"cannot exceed precision ({opts.precision})")


def _sql_type(tp: Any, opts: Field, path: str) -> str:
    _check_modifiers(opts, path)
    if opts.db_type:
        # one type, nothing else (pglast); a type that is not built in (citext, geometry(Point,4326))
        # is looked up on the server when a plan is made (dataflow.extensions)
        if not isinstance(opts.db_type, str):
            raise SchemaError(f"{path}.db_type", f"must be a type name, not {type(opts.db_type).__name__}")
        try:
            return canonical_type(opts.db_type)
        except ValueError as exc:
            raise SchemaError(f"{path}.db_type", f"unknown PostgreSQL type {opts.db_type!r}: {exc}") from None
    base = typing.get_origin(tp) or tp
    if base is typing.Annotated:
        base = typing.get_args(tp)[0]
    if base not in PYTHON_TYPES:
        raise SchemaError(
            path,
            f"unsupported field type {tp!r}; use Field(db_type=...) or one of "
            + ", ".join(t.__name__ for t in PYTHON_TYPES),
        )
    if base is str and opts.max_length:
        return f"VARCHAR({opts.max_length})"
    if base is Decimal and (opts.precision or opts.scale is not None):
        precision, scale = opts.precision or 10, opts.scale if opts.scale is not None else 2
        if scale > precision:
            raise SchemaError(f"{path}.scale", f"cannot exceed precision ({precision})")
        return f"NUMERIC({precision},{scale})"
    return PYTHON_TYPES[base]


def _default_sql(value: Any, sql_type: str, path: str) -> str | None:
    if value is None or value is _MISSING:
        return None
    try:
        if isinstance(value, (dict, list)):
            return normalise_default(quote_literal(json.dumps(value, sort_keys=True)), sql_type)
        if isinstance(value, (str, bool, int, float, Decimal, uuid.UUID)):
            return normalise_default(quote_literal(value), sql_type)
    except ValueError as exc:
        raise SchemaError(f"{path}.default", str(exc)) from None
    raise SchemaError(
        f"{path}.default", f"cannot store a default of type {type(value).__name__} in {sql_type}"
    )


def model_to_table(cls: type, namespace: Mapping[str, Any] | None = None) -> Table:
    """Build the table a model class describes (see the README for the type map)."""
    options: Mapping[str, Any] = getattr(cls, "__dataflow__", {}) or {}
    table = options.get("table") or options.get("table_name") or snake_case(cls.__name__)
    check_identifier(table, f"{cls.__name__}.__dataflow__.table")
    if options.get("renamed_from") is not None:
        check_identifier(options["renamed_from"], f"{cls.__name__}.__dataflow__.renamed_from")
    try:
        hints = typing.get_type_hints(
            cls, globalns=dict(namespace) if namespace is not None else None, include_extras=True
        )
    except NameError as exc:
        raise SchemaError(cls.__name__, f"cannot resolve a field annotation: {exc}") from None
    hints = {k: v for k, v in hints.items() if not k.startswith("_")}
    if not hints:
        raise SchemaError(cls.__name__, "a model needs at least one annotated field")

    columns: list[Column] = []
    primary_key: list[str] = []
    uniques: list[Unique] = []
    indexes: list[Index] = []
    fks: list[ForeignKey] = []
    checks: list[Check] = []
    for name, hint in hints.items():
        path = f"{cls.__name__}.{name}"
        raw = cls.__dict__.get(name, _MISSING)
        opts = raw if isinstance(raw, Field) else Field(default=raw)
        check_identifier(name, path)
        if opts.renamed_from is not None:
            check_identifier(opts.renamed_from, f"{path}.renamed_from")
        tp, optional = _unwrap_optional(hint)
        sql_type = _sql_type(tp, opts, path)
        default = opts.default
        nullable = optional or default is None
        if opts.nullable is not None:
            nullable = opts.nullable
        if opts.primary_key:
            nullable = False
            primary_key.append(name)
        default_sql = _default_sql(default, sql_type, path)
        if opts.sql_default is not None:
            if default is not _MISSING and default is not None:
                raise SchemaError(path, "give either default= or sql_default=, not both")
            default_sql = _default_expression(opts.sql_default, f"{path}.sql_default", sql_type)
            nullable = bool(optional or opts.nullable)
        if default_sql is None and name in AUTO_TIMESTAMP_FIELDS and sql_type == "TIMESTAMPTZ":
            default_sql = "CURRENT_TIMESTAMP"
        if not nullable and default is None and default_sql is None:
            raise SchemaError(path, "a NOT NULL field cannot default to None")
        columns.append(
            Column(
                name=name,
                type=sql_type,
                nullable=nullable,
                default=default_sql,
                renamed_from=opts.renamed_from,
                comment=_text(opts.comment, f"{path}.comment"),
                collation=collation_name(opts.collation, f"{path}.collation"),
            )
        )
        if opts.unique:
            uniques.append(Unique(constraint_name(table, [name], "key"), (name,)))
        if opts.index:
            indexes.append(Index(constraint_name(table, [name], "idx"), (name,)))
        if opts.references:
            fks.append(_foreign_key(table, name, opts, path))
        if opts.check:
            checks.append(
                Check(constraint_name(table, [name], "check"), _expression(opts.check, f"{path}.check"))
            )

    if not primary_key:
        columns.insert(0, Column("id", "BIGINT", nullable=False, identity="BY DEFAULT"))
        primary_key = ["id"]
    column_names = {c.name for c in columns}
    indexes.extend(_option_indexes(table, options, column_names, cls.__name__))
    return Table(
        name=table,
        columns=tuple(columns),
        primary_key=tuple(primary_key),
        indexes=tuple(indexes),
        uniques=tuple(uniques),
        foreign_keys=tuple(fks),
        checks=tuple(checks),
        renamed_from=options.get("renamed_from"),
        comment=_docstring(cls),
        row_level_security=_rls(options, cls.__name__),
        policies=_policies(options, cls.__name__),
    ).with_sorted_parts()


def _text(value: Any, path: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SchemaError(path, f"must be text, not {type(value).__name__}")
    return value


def _docstring(cls: type) -> str | None:
    """The class's own docstring, dedented (None without one: the table's comment is left alone)."""
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


def _rls(options: Mapping[str, Any], model: str) -> bool | None:
    """``"rls": True/False`` declares row security; policies alone imply it is on."""
    value = options.get("rls")
    if value is None:
        return True if options.get("policies") else None
    if not isinstance(value, bool):
        raise SchemaError(f"{model}.__dataflow__.rls", f"must be True or False, not {value!r}")
    return value


def _policies(options: Mapping[str, Any], model: str) -> tuple[Policy, ...]:
    """``"policies": [{"name", "command", "roles", "using", "with_check", "permissive"}]``, checked."""
    value = options.get("policies") or ()
    path = f"{model}.__dataflow__.policies"
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise SchemaError(path, "must be a list of policies")
    out: list[Policy] = []
    for i, spec in enumerate(value):
        at = f"{path}[{i}]"
        if not isinstance(spec, Mapping):
            raise SchemaError(at, "must be a mapping with name, command, roles, using, with_check")
        unknown = set(spec) - {"name", "command", "roles", "using", "with_check", "permissive"}
        if unknown:
            raise SchemaError(at, f"unknown key {sorted(unknown)[0]!r}")
        if not isinstance(spec.get("name"), str):
            raise SchemaError(f"{at}.name", "is required")
        permissive = spec.get("permissive", True)
        if not isinstance(permissive, bool):
            raise SchemaError(f"{at}.permissive", f"must be True or False, not {permissive!r}")
        policy = Policy(
            name=check_identifier(spec["name"], f"{at}.name"),
            command=keyword_choice(spec.get("command", "ALL"), f"{at}.command", POLICY_COMMANDS),
            roles=policy_roles(spec.get("roles", [PUBLIC_ROLE]), f"{at}.roles"),
            using=None if spec.get("using") is None else _expression(spec["using"], f"{at}.using"),
            with_check=None
            if spec.get("with_check") is None
            else _expression(spec["with_check"], f"{at}.with_check"),
            permissive=permissive,
        )
        out.append(check_policy(policy, at))
    if len({p.name for p in out}) != len(out):
        raise SchemaError(path, "policy names must be unique")
    return tuple(out)


def _foreign_key(table: str, column: str, opts: Field, path: str) -> ForeignKey:
    """``references="table.column"`` (or ``"table"`` for its ``id``) with checked names and actions."""
    if not isinstance(opts.references, str):
        raise SchemaError(f"{path}.references", 'must be "table" or "table.column"')
    ref_table, _, ref_col = opts.references.partition(".")
    check_identifier(ref_table, f"{path}.references")
    check_identifier(ref_col or "id", f"{path}.references")
    return ForeignKey(
        constraint_name(table, [column], "fkey"),
        (column,),
        ref_table,
        (ref_col or "id",),
        on_delete=keyword_choice(opts.on_delete, f"{path}.on_delete", FK_ACTIONS),
        on_update=keyword_choice(opts.on_update, f"{path}.on_update", FK_ACTIONS),
    )


def _expression(text: str, path: str) -> str:
    """An SQL expression from a model, parsed as exactly one expression, in canonical form."""
    if not isinstance(text, str):
        raise SchemaError(path, f"must be SQL text, not {type(text).__name__}")
    try:
        return normalise_expression(text)
    except ValueError as exc:
        raise SchemaError(path, str(exc)) from None


def _default_expression(text: str, path: str, column_type: str) -> str | None:
    """A default from a model normalised for its column's type; None when it is NULL (PostgreSQL stores none)."""
    _expression(text, path)
    return normalise_default(text, column_type)


def _field_list(value: Any, path: str, known: set[str]) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value or ())
    if not names:
        raise SchemaError(path, "needs at least one field")
    for n in names:
        if n not in known:
            raise SchemaError(path, f"unknown field {n!r}")
    return names


def _option_indexes(table: str, options: Mapping[str, Any], known: set[str], model: str) -> list[Index]:
    out: list[Index] = []
    for i, spec in enumerate(options.get("indexes") or ()):
        path = f"{model}.__dataflow__.indexes[{i}]"
        spec = {"fields": spec} if isinstance(spec, (str, list, tuple)) else spec
        fields = _field_list(spec.get("fields"), f"{path}.fields", known)
        unique = bool(spec.get("unique", False))
        if spec.get("name") is not None:
            check_identifier(spec["name"], f"{path}.name")
        out.append(
            Index(
                spec.get("name") or constraint_name(table, fields, "key" if unique else "idx"),
                fields,
                unique=unique,
            )
        )
    pg = options.get("postgresql") or {}
    for col in pg.get("jsonb_gin_indexes") or ():
        _field_list(col, f"{model}.__dataflow__.postgresql.jsonb_gin_indexes", known)
        out.append(Index(constraint_name(table, [col], "gin_idx"), (col,), method="gin"))
    for col in pg.get("text_search") or ():
        _field_list(col, f"{model}.__dataflow__.postgresql.text_search", known)
        expr = normalise_expression(f"to_tsvector('english', coalesce({quote_ident(col)}, ''))")
        out.append(Index(constraint_name(table, [col], "fts_idx"), (expr,), method="gin"))
    for i, spec in enumerate(pg.get("partial_indexes") or ()):
        path = f"{model}.__dataflow__.postgresql.partial_indexes[{i}]"
        fields = _field_list(spec.get("fields"), f"{path}.fields", known)
        if not spec.get("condition"):
            raise SchemaError(f"{path}.condition", "is required")
        where = _expression(spec["condition"], f"{path}.condition")
        if spec.get("name") is not None:
            check_identifier(spec["name"], f"{path}.name")
        out.append(
            Index(
                spec.get("name") or constraint_name(table, fields, "partial_idx"),
                fields,
                unique=bool(spec.get("unique", False)),
                where=where,
            )
        )
    return out


def model_extensions(cls: type) -> tuple[str, ...]:
    """The PostgreSQL extensions a model needs (``__dataflow__ = {"extensions": ["citext"]}``), checked names."""
    options: Mapping[str, Any] = getattr(cls, "__dataflow__", {}) or {}
    value = options.get("extensions") or ()
    path = f"{cls.__name__}.__dataflow__.extensions"
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SchemaError(path, 'must be a list of extension names, such as ["citext"]')
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise SchemaError(f"{path}[{i}]", f"must be an extension name, not {type(name).__name__}")
        check_identifier(name, f"{path}[{i}]")
    return tuple(value)
