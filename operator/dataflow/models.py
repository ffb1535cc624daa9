"""Python model classes → :class:`dataflow.schema.Table`.

A model is a plain class with annotated fields::

    class User:
        name: str
        email: str = Field(max_length=255, unique=True)
        created_at: datetime = None
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import types
import typing
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from dataflow.errors import SchemaError
from dataflow.functions import function_from_dict, trigger_from_dict
from dataflow.schema import (
    EXCLUSION_OPERATOR,
    FK_ACTIONS,
    IDENTITY_KINDS,
    INDEX_METHODS,
    POLICY_COMMANDS,
    PUBLIC_ROLE,
    Check,
    Column,
    EnumRename,
    EnumType,
    Exclusion,
    ForeignKey,
    Function,
    Index,
    Policy,
    Sequence,
    Table,
    Trigger,
    Unique,
    View,
    check_policy,
    checked_enum,
    collation_name,
    extension_names,
    index_order,
    keyword_choice,
    policy_roles,
    sequence_from_dict,
    view_query,
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
    generated: str | None = None  # GENERATED ALWAYS AS (expression) STORED, parsed as one expression
    comment: str | None = None  # COMMENT ON the column (None: the database's comment is left alone)
    collation: str | None = None  # the column's collation, such as "C" (None: its type's default)
    identity: str | None = None  # "ALWAYS" or "BY DEFAULT": an identity column (GENERATED ... AS IDENTITY)
    identity_start: int | None = None  # the identity's START WITH (None: 1)
    identity_increment: int | None = None  # the identity's INCREMENT BY (None: 1)


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
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return enum_type(base).name
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
    if isinstance(value, enum.Enum):
        value = enum_label(value)
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
        generated = None
        if opts.generated is not None:
            if default_sql is not None or (default is not _MISSING and default is not None):
                raise SchemaError(f"{path}.generated", "a generated column takes no default")
            generated = _expression(opts.generated, f"{path}.generated")
        identity = None
        if opts.identity is not None:
            identity = keyword_choice(opts.identity, f"{path}.identity", IDENTITY_KINDS)
            if default_sql is not None or generated is not None:
                raise SchemaError(f"{path}.identity", "an identity column takes no default")
            nullable = False
        # created_at/updated_at default to the current time, unless sql_default="NULL" says: no default
        if default_sql is None and opts.sql_default is None and identity is None:
            if name in AUTO_TIMESTAMP_FIELDS and sql_type == "TIMESTAMPTZ":
                default_sql = "CURRENT_TIMESTAMP"
        if not nullable and default is None and default_sql is None and identity is None:
            raise SchemaError(path, "a NOT NULL field cannot default to None")
        start, increment = _identity_options(
            {"start": opts.identity_start, "increment": opts.identity_increment}
            if identity and (opts.identity_start is not None or opts.identity_increment is not None)
            else None,
            f"{path}.identity",
        )
        columns.append(
            Column(
                name=name,
                type=sql_type,
                nullable=nullable,
                default=default_sql,
                renamed_from=opts.renamed_from,
                generated=generated,
                comment=_text(opts.comment, f"{path}.comment"),
                collation=collation_name(opts.collation, f"{path}.collation"),
                identity=identity,
                identity_start=start,
                identity_increment=increment,
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

    declared = options.get("primary_key")
    if declared is not None:
        primary_key = _declared_primary_key(declared, primary_key, [c.name for c in columns], cls.__name__)
        columns = [replace(c, nullable=False) if c.name in primary_key else c for c in columns]
    if not primary_key and declared is None:
        start, increment = _identity_options(options.get("identity"), f"{cls.__name__}.__dataflow__.identity")
        columns.insert(
            0,
            Column(
                "id",
                "BIGINT",
                nullable=False,
                identity="BY DEFAULT",
                identity_start=start,
                identity_increment=increment,
            ),
        )
        primary_key = ["id"]
    column_names = {c.name for c in columns}
    indexes.extend(_option_indexes(table, options, column_names, cls.__name__))
    uniques.extend(_option_uniques(table, options, column_names, cls.__name__))
    fks.extend(_option_foreign_keys(table, options, column_names, cls.__name__))
    checks.extend(_option_checks(table, options, cls.__name__))
    exclusions = model_exclusions(table, options, column_names, cls.__name__)
    return Table(
        name=table,
        columns=tuple(columns),
        primary_key=tuple(primary_key),
        indexes=tuple(indexes),
        uniques=tuple(uniques),
        foreign_keys=tuple(fks),
        checks=tuple(checks),
        renamed_from=options.get("renamed_from"),
        exclusions=tuple(exclusions),
        comment=_docstring(cls),
        row_level_security=_rls(options, cls.__name__),
        policies=_policies(options, cls.__name__),
        triggers=model_triggers(options, cls.__name__, column_names),
    ).with_sorted_parts()


def _spec_list(value: Any, path: str, example: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise SchemaError(path, f"must be a list, such as {example}")
    return list(value)


def model_triggers(options: Mapping[str, Any], model: str, column_names: set[str]) -> tuple[Trigger, ...]:
    """``"triggers": [{"name", "timing", "events", "function", "level", "columns", "when"}]`` on the model's
    table; ``columns`` (UPDATE OF) must be fields of the model."""
    path = f"{model}.__dataflow__.triggers"
    out = []
    for i, spec in enumerate(
        _spec_list(
            options.get("triggers"),
            path,
            '[{"name": "t", "timing": "BEFORE", "events": ["UPDATE"], "function": "touch_updated_at"}]',
        )
    ):
        trigger = trigger_from_dict(spec, f"{path}[{i}]")
        unknown = [c for c in trigger.columns if c not in column_names]
        if unknown:
            raise SchemaError(f"{path}[{i}].columns", f"unknown field {unknown[0]!r}")
        out.append(trigger)
    if len({t.name for t in out}) != len(out):
        raise SchemaError(path, "names a trigger twice")
    return tuple(out)


def model_functions(cls: type) -> tuple[Function, ...]:
    """Functions a model declares: ``__dataflow__ = {"functions": [{"name": "touch_updated_at", "returns":
    "trigger", "language": "plpgsql", "body": "BEGIN NEW.updated_at = now(); RETURN NEW; END"}]}``."""
    options: Mapping[str, Any] = getattr(cls, "__dataflow__", {}) or {}
    path = f"{cls.__name__}.__dataflow__.functions"
    value = _spec_list(options.get("functions"), path, '[{"name": "f", "returns": "trigger", "body": "..."}]')
    return tuple(function_from_dict(spec, f"{path}[{i}]") for i, spec in enumerate(value))


def _declared_primary_key(declared: Any, flagged: list[str], known: list[str], model: str) -> list[str]:
    """``__dataflow__ = {"primary_key": ["a", "b"]}``: the key's columns in key order; ``[]``: no primary key
    (and no implicit ``id``)."""
    path = f"{model}.__dataflow__.primary_key"
    if flagged:
        raise SchemaError(path, "give the key here or with Field(primary_key=True), not both")
    names = [declared] if isinstance(declared, str) else declared
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise SchemaError(path, 'must be a list of field names, such as ["a", "b"] (or [] for none)')
    for n in names:
        if n not in known:
            raise SchemaError(path, f"unknown field {n!r}")
    if len(set(names)) != len(names):
        raise SchemaError(path, "names a field twice")
    return list(names)


def _identity_options(spec: Any, path: str) -> tuple[int | None, int | None]:
    """``__dataflow__ = {"identity": {"start": 1000, "increment": 1}}``: the implicit id's sequence options."""
    if spec is None:
        return None, None
    if not isinstance(spec, Mapping) or set(spec) - {"start", "increment"}:
        raise SchemaError(path, 'must be {"start": n, "increment": n}')
    values = []
    for key in ("start", "increment"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise SchemaError(f"{path}.{key}", f"must be an integer, not {type(value).__name__}")
        if key == "increment" and value == 0:
            raise SchemaError(f"{path}.{key}", "cannot be 0")
        values.append(None if value == 1 else value)
    return values[0], values[1]


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
        fields = _index_elements(spec.get("fields"), f"{path}.fields", known)
        unique = bool(spec.get("unique", False))
        if spec.get("name") is not None:
            check_identifier(spec["name"], f"{path}.name")
        named = [f for f in fields if f in known] or ["expr"]
        out.append(
            Index(
                spec.get("name") or constraint_name(table, named, "key" if unique else "idx"),
                fields,
                unique=unique,
                **_index_features(spec, fields, known, path),
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


def _option_list(options: Mapping[str, Any], key: str, model: str) -> list[tuple[str, Mapping[str, Any]]]:
    """``__dataflow__[key]``: a list of mappings, each with its path for messages."""
    value = options.get(key) or ()
    path = f"{model}.__dataflow__.{key}"
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise SchemaError(path, "must be a list of mappings")
    out = []
    for i, spec in enumerate(value):
        if not isinstance(spec, Mapping):
            raise SchemaError(f"{path}[{i}]", "must be a mapping")
        out.append((f"{path}[{i}]", spec))
    return out


def _unknown_keys(spec: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = set(spec) - allowed
    if unknown:
        raise SchemaError(path, f"unknown key {sorted(unknown)[0]!r}")


def _option_uniques(table: str, options: Mapping[str, Any], known: set[str], model: str) -> list[Unique]:
    """``"uniques": [{"name": "order_ref_key", "fields": ["customer_id", "ref"]}]``: unique constraints."""
    out = []
    for path, spec in _option_list(options, "uniques", model):
        _unknown_keys(spec, {"name", "fields"}, path)
        fields = _field_list(spec.get("fields"), f"{path}.fields", known)
        name = spec.get("name") or constraint_name(table, fields, "key")
        out.append(Unique(check_identifier(name, f"{path}.name"), fields))
    return out


def _option_foreign_keys(
    table: str, options: Mapping[str, Any], known: set[str], model: str
) -> list[ForeignKey]:
    """``"foreign_keys": [{"name", "fields", "references": "table", "ref_fields", "on_delete", "on_update"}]``."""
    out = []
    keys = {"name", "fields", "references", "ref_fields", "on_delete", "on_update"}
    for path, spec in _option_list(options, "foreign_keys", model):
        _unknown_keys(spec, keys, path)
        fields = _field_list(spec.get("fields"), f"{path}.fields", known)
        ref_table = check_identifier(spec.get("references"), f"{path}.references")
        ref_fields = spec.get("ref_fields") or ("id",)
        ref_fields = (ref_fields,) if isinstance(ref_fields, str) else tuple(ref_fields)
        for f in ref_fields:
            check_identifier(f, f"{path}.ref_fields")
        if len(ref_fields) != len(fields):
            raise SchemaError(f"{path}.ref_fields", f"needs one field per field ({len(fields)})")
        name = spec.get("name") or constraint_name(table, fields, "fkey")
        out.append(
            ForeignKey(
                check_identifier(name, f"{path}.name"),
                fields,
                ref_table,
                ref_fields,
                on_delete=keyword_choice(spec.get("on_delete", "NO ACTION"), f"{path}.on_delete", FK_ACTIONS),
                on_update=keyword_choice(spec.get("on_update", "NO ACTION"), f"{path}.on_update", FK_ACTIONS),
            )
        )
    return out


def _option_checks(table: str, options: Mapping[str, Any], model: str) -> list[Check]:
    """``"checks": [{"name": "order_total_check", "expression": "total >= 0"}]``: table check constraints."""
    out = []
    for path, spec in _option_list(options, "checks", model):
        _unknown_keys(spec, {"name", "expression"}, path)
        name = spec.get("name") or constraint_name(table, ["expr"], "check")
        out.append(
            Check(
                check_identifier(name, f"{path}.name"),
                _expression(spec.get("expression"), f"{path}.expression"),  # type: ignore[arg-type]
            )
        )
    return out


def _index_elements(value: Any, path: str, known: set[str]) -> tuple[str, ...]:
    """Index keys: field names, or SQL expressions such as ``lower(email)`` (a bare unknown name is a typo)."""
    names = (value,) if isinstance(value, str) else tuple(value or ())
    if not names:
        raise SchemaError(path, "needs at least one field")
    out = []
    for n in names:
        if n in known:
            out.append(n)
            continue
        expr = _expression(n, path)
        if "(" not in expr and " " not in expr:
            raise SchemaError(path, f"unknown field {n!r}")
        out.append(expr)
    return tuple(out)


def _per_key(spec: Mapping[str, Any], key: str, fields: tuple[str, ...], path: str) -> tuple[str, ...]:
    """``{"field": "value"}`` (or a list in key order) as one entry per index key, "" where not given."""
    value = spec.get(key) or {}
    if isinstance(value, (list, tuple)):
        if len(value) != len(fields):
            raise SchemaError(f"{path}.{key}", f"needs one entry per key ({len(fields)})")
        return tuple(str(v or "") for v in value)
    if not isinstance(value, Mapping):
        raise SchemaError(f"{path}.{key}", 'must map keys to values, such as {"created_at": "DESC"}')
    for k in value:
        if k not in fields:
            raise SchemaError(f"{path}.{key}", f"{k!r} is not a key of this index")
    return tuple(str(value.get(f) or "") for f in fields)


def _index_features(
    spec: Mapping[str, Any], fields: tuple[str, ...], known: set[str], path: str
) -> dict[str, Any]:
    """INCLUDE, method, sort order, operator classes, partial predicate and NULLS NOT DISTINCT of an index."""
    features: dict[str, Any] = {}
    if spec.get("include"):
        features["include"] = _field_list(spec["include"], f"{path}.include", known)
    if spec.get("method") is not None:
        features["method"] = keyword_choice(spec["method"], f"{path}.method", INDEX_METHODS)
    if spec.get("where") is not None:
        features["where"] = _expression(spec["where"], f"{path}.where")
    order = tuple(o or "ASC" for o in _per_key(spec, "order", fields, path))
    for o in order:
        try:
            index_order(o)
        except ValueError as exc:
            raise SchemaError(f"{path}.order", str(exc)) from None
    features["order"] = order
    opclasses = _per_key(spec, "opclasses", fields, path)
    for o in opclasses:
        if o:
            check_identifier(o, f"{path}.opclasses")
    features["opclasses"] = opclasses
    features["nulls_not_distinct"] = bool(spec.get("nulls_not_distinct", False))
    return features


def model_exclusions(table: str, options: Mapping[str, Any], known: set[str], model: str) -> list[Exclusion]:
    """``__dataflow__ = {"exclusions": [{"name": ..., "using": "gist", "elements": [("room", "="), ...]}]}``."""
    out: list[Exclusion] = []
    for i, spec in enumerate(options.get("exclusions") or ()):
        path = f"{model}.__dataflow__.exclusions[{i}]"
        if not isinstance(spec, Mapping):
            raise SchemaError(
                path, 'must be a mapping such as {"elements": [("room", "="), ("during", "&&")]}'
            )
        pairs = spec.get("elements") or ()
        if not pairs or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            raise SchemaError(f"{path}.elements", "must be a list of (field or expression, operator) pairs")
        elements = _index_elements([p[0] for p in pairs], f"{path}.elements", known)
        operators = tuple(str(p[1]) for p in pairs)
        for op in operators:
            if not re.fullmatch(EXCLUSION_OPERATOR, op):
                raise SchemaError(f"{path}.elements", f"must use operators such as = or &&, not {op!r}")
        if spec.get("name") is not None:
            check_identifier(spec["name"], f"{path}.name")
        named = [e for e in elements if e in known] or ["expr"]
        out.append(
            Exclusion(
                spec.get("name") or constraint_name(table, named, "excl"),
                elements,
                operators,
                keyword_choice(spec.get("using", "gist"), f"{path}.using", INDEX_METHODS),
                _expression(spec["where"], f"{path}.where") if spec.get("where") is not None else None,
            )
        )
    return out


def model_extensions(cls: type) -> tuple[str, ...]:
    """The PostgreSQL extensions a model needs (``__dataflow__ = {"extensions": ["citext"]}``), checked names."""
    options: Mapping[str, Any] = getattr(cls, "__dataflow__", {}) or {}
    value = options.get("extensions") or ()
    value = extension_names(value, f"{cls.__name__}.__dataflow__.extensions")
    if any(str(x.get("using", "gist")).lower() == "gist" for x in options.get("exclusions") or ()):
        value = (*value, "btree_gist")  # equality on scalar columns in a gist exclusion needs it
    return tuple(value)


def enum_label(member: enum.Enum) -> str:
    """The PostgreSQL label of an enum member: its value when a string, else its name."""
    return member.value if isinstance(member.value, str) else member.name


def enum_type(cls: type[enum.Enum]) -> EnumType:
    """The PostgreSQL enum type of an ``enum.Enum`` class: named after it in snake_case (or
    ``__dataflow__ = {"name": ...}`` in the class body), labels in member order; renames declared as
    ``__dataflow__ = {"renamed_values": {"old": "new"}}``."""
    options: Mapping[str, Any] = getattr(cls, "__dataflow__", None) or {}
    path = f"{cls.__name__}.__dataflow__"
    name = options.get("name") or snake_case(cls.__name__)
    check_identifier(name, f"{path}.name")
    renames = options.get("renamed_values") or {}
    if not isinstance(renames, Mapping):
        raise SchemaError(f"{path}.renamed_values", 'must map old labels to new ones, such as {"old": "new"}')
    return checked_enum(
        EnumType(
            name,
            tuple(enum_label(m) for m in cls),
            tuple(EnumRename(str(old), str(new)) for old, new in renames.items()),
        ),
        cls.__name__,
    )


def model_enums(cls: type, namespace: Mapping[str, Any] | None = None) -> tuple[EnumType, ...]:
    """The enum types a model's fields are annotated with (``status: Status``, ``Status | None``)."""
    hints = typing.get_type_hints(cls, globalns=dict(namespace) if namespace is not None else None)
    found: list[EnumType] = []
    for name, hint in hints.items():
        if name.startswith("_"):
            continue
        tp, _ = _unwrap_optional(hint)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            found.append(enum_type(tp))
    return tuple(found)


def unique_enums(enums: Iterable[EnumType]) -> tuple[EnumType, ...]:
    """Each enum type once; two different classes that map to one type name are an error."""
    by_name: dict[str, EnumType] = {}
    for e in enums:
        if by_name.setdefault(e.name, e) != e:
            raise SchemaError(e.name, "two enum classes map to this type with different labels")
    return tuple(by_name.values())


def model_sequences(cls: type) -> tuple[Sequence, ...]:
    """Sequences a model declares: ``__dataflow__ = {"sequences": [{"name": "invoice_no", "start": 1000,
    "increment": 1, "owned_by": "invoice.number"}]}`` (a bare name is a sequence with PostgreSQL's options)."""
    options: Mapping[str, Any] = getattr(cls, "__dataflow__", {}) or {}
    value = options.get("sequences") or ()
    path = f"{cls.__name__}.__dataflow__.sequences"
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SchemaError(
            path, 'must be a list of sequences, such as [{"name": "invoice_no", "start": 1000}]'
        )
    out = []
    for i, spec in enumerate(value):
        spec = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, Mapping):
            raise SchemaError(f"{path}[{i}]", "must be a sequence name or a mapping")
        out.append(sequence_from_dict(spec, f"{path}[{i}]"))
    return tuple(out)


def model_views(cls: type) -> tuple[View, ...]:
    """Views a model declares: ``__dataflow__ = {"views": {"active_users": "SELECT id, name FROM users WHERE
    active"}}``; a value may be a mapping ``{"query": ..., "materialized": True}``."""
    options: Mapping[str, Any] = getattr(cls, "__dataflow__", {}) or {}
    value = options.get("views") or {}
    path = f"{cls.__name__}.__dataflow__.views"
    if not isinstance(value, Mapping):
        raise SchemaError(path, 'must map view names to SELECT statements, such as {"active": "SELECT ..."}')
    out = []
    for name, spec in value.items():
        check_identifier(name, f"{path}.{name}")
        spec = {"query": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, Mapping):
            raise SchemaError(f"{path}.{name}", "must be a SELECT statement or a mapping with query")
        out.append(declared_view(name, spec.get("query"), spec.get("materialized", False), f"{path}.{name}"))
        unknown = set(spec) - {"query", "materialized"}
        if unknown:
            raise SchemaError(f"{path}.{name}.{sorted(unknown)[0]}", "is not a view option")
    return tuple(out)


def declared_view(name: str, query: Any, materialized: Any, path: str) -> View:
    """A view from Python: its query checked as one SELECT (errors name ``<path>.query``)."""
    if not isinstance(materialized, bool):
        raise SchemaError(f"{path}.materialized", f"must be True or False, not {materialized!r}")
    return View(check_identifier(name, path), view_query(query, f"{path}.query"), materialized)


def view_of(obj: Any, name: str | None = None, materialized: bool = False) -> View:
    """The view a ``@db.view`` object declares: a class with ``sql`` (or ``__sql__``), or a function
    returning the SQL; named ``name`` or the snake_case of its own name."""
    view_name = name or snake_case(obj.__name__)
    path = f"views.{view_name}"
    if isinstance(obj, type):
        query = getattr(obj, "sql", None) or getattr(obj, "__sql__", None)
        if query is None:
            raise SchemaError(f"{path}.query", f'{obj.__name__} needs a sql = "SELECT ..." attribute')
    elif callable(obj):
        query = obj()
    else:
        raise SchemaError(
            path, '@db.view decorates a class with sql = "SELECT ..." or a function returning it'
        )
    return declared_view(view_name, query, materialized, path)
