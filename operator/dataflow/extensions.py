"""Types that are not built in, and the extensions that provide them, resolved by the server at plan time.

A model may use any type the server knows (``Field(db_type="citext")``, ``geometry(Point,4326)``,
``vector(3)``): pglast has already checked that the text is exactly one type name. Here one catalog
query looks every such name up (``to_regtype``, then ``format_type`` for the spelling introspection
will print) together with the extensions the schema asks for, so a plan names each type as the
database does and re-plans empty, and a type nobody provides fails the plan naming its field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import asyncpg

from dataflow.errors import SchemaError
from dataflow.operations import Change
from dataflow.ops import sort_changes
from dataflow.ops.create_extension import CREATE_EXTENSION, Extension
from dataflow.ops.drop_extension import DROP_EXTENSION
from dataflow.schema import Schema
from dataflow.schema_memo import per_schema
from dataflow.types import PgType, parse_type

# $1: type names without modifiers; $2: extension names. One row per name, ``kind`` says which.
_RESOLVE = """
SELECT 'type' AS kind, u.name, format_type(ty.oid, NULL) AS resolved, ty.typmodin <> 0 AS takes_modifiers,
       NULL::text AS version, NULL::bool AS installed, NULL::bool AS superuser
FROM unnest($1::text[]) u(name)
LEFT JOIN pg_type ty ON ty.oid = to_regtype(u.name)
UNION ALL
SELECT 'extension', x.name, NULL, NULL, coalesce(e.extversion, a.v[1]), e.oid IS NOT NULL,
       coalesce(a.v[2]::bool, true)
FROM unnest($2::text[]) x(name)
LEFT JOIN pg_extension e ON e.extname = x.name
-- pg_available_extensions reads every control file on disk (~2.5 ms): only for one not installed yet
CROSS JOIN LATERAL (SELECT CASE WHEN e.oid IS NULL THEN (
  SELECT ARRAY[av.default_version, (v.superuser AND NOT v.trusted)::text]
  FROM pg_available_extensions av
  LEFT JOIN pg_available_extension_versions v ON v.name = av.name AND v.version = av.default_version
  WHERE av.name = x.name) END AS v) a
"""


@dataclass(frozen=True)
class Resolution:
    """``schema`` with every extension type spelled as the server spells it; ``missing`` extensions to create,
    ``dropped`` ones this owner created, no longer declares and may drop (its owner set is complete)."""

    schema: Schema
    missing: tuple[Extension, ...] = ()
    dropped: tuple[Extension, ...] = ()

    def with_changes(
        self, changes: Iterable[Change], exclude_operations: Iterable[str] | None
    ) -> list[Change]:
        """``changes`` with the creation of each missing extension first (schema-wide: no table filter)."""
        excluded = set(exclude_operations or ())
        created = [] if CREATE_EXTENSION in excluded else self.missing
        dropped = [] if DROP_EXTENSION in excluded else self.dropped
        return sort_changes(
            [
                *(Change(CREATE_EXTENSION, e.name, e.name, new=e) for e in created),
                *(Change(DROP_EXTENSION, e.name, e.name, old=e) for e in dropped),
                *changes,
            ]
        )


@per_schema
def _extension_types(schema: Schema) -> dict[str, list[tuple[str, str, PgType]]]:
    """Type name → ``(table, column, parsed type)`` of every column whose type is not built in (remembered
    by schema hash: the same model set is planned again and again)."""
    found: dict[str, list[tuple[str, str, PgType]]] = {}
    enums = {e.name for e in schema.enums}  # created by the plan itself (CREATE_ENUM)
    for table in schema.tables:
        for column in table.columns:
            t = parse_type(column.type)
            if not t.builtin and t.name not in enums:
                found.setdefault(t.name, []).append((table.name, column.name, t))
    return found


async def resolve(conn: asyncpg.Connection, desired: Schema, owned: Iterable[str] = ()) -> Resolution:
    """Look up ``desired``'s extension types and extensions in one query (none when it has neither).

    A type the server does not know is accepted only while an extension the schema asks for is still
    to be created (it may provide it: the migration's transaction fails, and undoes all, if not).
    ``owned``: extensions this owner created, when its owner set is complete; those still installed
    that ``desired`` no longer declares are to be dropped.
    """
    used = _extension_types(desired)
    undeclared = sorted(set(owned) - set(desired.extensions))
    if not used and not desired.extensions and not undeclared:
        return Resolution(desired)
    rows = await conn.fetch(_RESOLVE, sorted(used), [*desired.extensions, *undeclared])
    missing, dropped = [], []
    for r in rows:
        if r["kind"] != "extension":
            continue
        if r["name"] in undeclared:
            if r["installed"]:
                dropped.append(Extension(r["name"], r["version"], r["superuser"]))
            continue
        if r["version"] is None:
            raise SchemaError(
                "extensions",
                f"extension {r['name']!r} is not available on this server (pg_available_extensions)",
            )
        if not r["installed"]:
            missing.append(Extension(r["name"], r["version"], r["superuser"]))
    renamed: dict[str, str] = {}
    for r in rows:
        if r["kind"] != "type":
            continue
        table, column, parsed = used[r["name"]][0]
        path = f"{table}.{column}.type"
        if r["resolved"] is None:
            if missing:
                continue
            raise SchemaError(
                path,
                f"type {r['name']!r} does not exist in schema {desired.name!r}; name the extension that "
                f'provides it in the model: __dataflow__ = {{"extensions": [...]}}',
            )
        with_modifiers = [t for _, _, t in used[r["name"]] if t.modifiers]
        if with_modifiers and not r["takes_modifiers"]:
            raise SchemaError(path, f"type {r['resolved']} takes no modifiers: {with_modifiers[0]}")
        name = parse_type(r["resolved"]).name
        if name != r["name"]:
            renamed[r["name"]] = name
    schema = _renamed(desired, renamed) if renamed else desired
    return Resolution(
        schema, tuple(sorted(missing, key=lambda e: e.name)), tuple(sorted(dropped, key=lambda e: e.name))
    )


def _renamed(schema: Schema, names: dict[str, str]) -> Schema:
    """``schema`` with each type named ``old`` spelled ``names[old]`` (modifiers and array kept)."""

    def spelled(text: str) -> str:
        t = parse_type(text)
        return str(replace(t, base=names[t.name])) if not t.builtin and t.name in names else text

    tables = tuple(
        replace(t, columns=tuple(replace(c, type=spelled(c.type)) for c in t.columns)) for t in schema.tables
    )
    return replace(schema, tables=tables)
