"""Import a live schema: the DataFlow :class:`Schema` of its importable tables, and a report of the rest.

What DataFlow manages is read by :func:`dataflow.introspect.introspect`; everything else the schema
holds is listed, kind by kind, as "not managed (left alone)" with the reason. ``KINDS`` is the one
table of object kinds: moving a kind to managed is one line there (plus reading it in introspection).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from dataflow.errors import SchemaError
from dataflow.functions import function_from_dict, trigger_from_dict
from dataflow.introspect import introspect
from dataflow.jsonfields import to_json
from dataflow.ledger import INTERNAL_TABLES
from dataflow.schema import FUNCTION_LANGUAGES, Function, Schema, Sequence, Table, View
from dataflow.sqltext import identifier_problem, parse_expression

MANAGED = "managed"
LEFT_ALONE = "left alone"

# object kind -> (managed or left alone, why it is left alone)
KINDS: dict[str, tuple[str, str]] = {
    "table": (MANAGED, ""),
    "enum": (MANAGED, ""),
    "sequence": (MANAGED, ""),
    "extension": (MANAGED, ""),
    "partitioned table": (LEFT_ALONE, "partitioning is not modelled; its partitions and indexes neither"),
    "partition": (LEFT_ALONE, "a partition belongs to its partitioned table"),
    "inherited table": (LEFT_ALONE, "table inheritance is not modelled"),
    "foreign table": (LEFT_ALONE, "foreign tables are not modelled"),
    "view": (MANAGED, ""),
    "materialized view": (MANAGED, ""),
    "trigger": (MANAGED, ""),
    "function": (MANAGED, ""),
    "domain": (LEFT_ALONE, "domains are not modelled; columns of the domain keep it as their type"),
    "composite type": (LEFT_ALONE, "composite types are not modelled"),
    "range type": (LEFT_ALONE, "range types are not modelled"),
    "rule": (LEFT_ALONE, "rewrite rules are not modelled"),
    "collation": (LEFT_ALONE, "collations are not modelled; columns using one name it"),
    "statistics": (LEFT_ALONE, "extended statistics are not modelled"),
    "index": (LEFT_ALONE, "it belongs to an object that is left alone"),
    "table (not importable)": (LEFT_ALONE, "see the detail"),
    "table setting": (LEFT_ALONE, "storage settings are not modelled; the table keeps them"),
}

# Every object of schema $1 by kind, one query: (kind, name, detail). Tables are classified here too,
# so a partition or an inheritance child is reported even though introspection reads it as a table.
_OBJECTS = """
SELECT CASE c.relkind WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
         WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence'
         ELSE CASE WHEN c.relispartition THEN 'partition'
                   WHEN EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid)
                   THEN 'inherited table' ELSE 'table' END END AS kind,
       c.relname AS name,
       CASE WHEN c.relispartition THEN 'of ' || (SELECT p.relname FROM pg_inherits i JOIN pg_class p
                                                 ON p.oid = i.inhparent WHERE i.inhrelid = c.oid LIMIT 1)
       END AS detail
FROM pg_class c WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT 'table setting', c.relname,
       concat_ws(', ', CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED' END, array_to_string(c.reloptions, ', '))
FROM pg_class c WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND (c.relpersistence = 'u' OR c.reloptions IS NOT NULL)
UNION ALL
SELECT 'index', i.relname, 'on ' || t.relname
FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid
WHERE t.relnamespace = $1 AND (t.relkind IN ('p', 'm') OR t.relispartition)
UNION ALL
SELECT 'trigger', tg.tgname, 'on ' || c.relname
FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
WHERE c.relnamespace = $1 AND NOT tg.tgisinternal AND tg.tgparentid = 0
UNION ALL
SELECT 'rule', r.rulename, 'on ' || c.relname
FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
WHERE c.relnamespace = $1 AND r.rulename <> '_RETURN'
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window' END
FROM pg_proc p WHERE p.pronamespace = $1
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
UNION ALL
SELECT CASE ty.typtype WHEN 'd' THEN 'domain' WHEN 'c' THEN 'composite type' WHEN 'r' THEN 'range type'
         WHEN 'e' THEN 'enum' END, ty.typname,
       CASE WHEN ty.typtype = 'd' THEN 'over ' || format_type(ty.typbasetype, ty.typtypmod) END
FROM pg_type ty WHERE ty.typnamespace = $1 AND ty.typtype IN ('d', 'c', 'r', 'e')
  AND (ty.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = ty.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = ty.oid
                  AND d.deptype = 'e')
UNION ALL
SELECT 'collation', co.collname, NULL FROM pg_collation co WHERE co.collnamespace = $1
UNION ALL
SELECT 'statistics', s.stxname, NULL FROM pg_statistic_ext s WHERE s.stxnamespace = $1
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class LeftAlone:
    """One object the import does not manage: its kind, name and why."""

    kind: str
    name: str
    reason: str


@dataclass(frozen=True)
class Imported:
    """The importable part of a schema, the extensions it uses, and the report of what is left alone."""

    schema: Schema
    left_alone: tuple[LeftAlone, ...] = ()
    extensions: tuple[str, ...] = field(default=())


async def import_schema(
    conn: asyncpg.Connection, schema: str = "public", tables: Iterable[str] | None = None
) -> Imported:
    """Read ``schema`` (only ``tables``, when given) as DataFlow would manage it, and report the rest.

    An unknown schema, or a table that ``tables`` names but the schema lacks, is a SchemaError
    naming the option (``--schema``, ``--tables``).
    """
    if problem := identifier_problem(schema):
        raise SchemaError("--schema", problem)
    oid = await conn.fetchval("SELECT oid FROM pg_namespace WHERE nspname = $1", schema)
    if oid is None:
        raise SchemaError("--schema", f"no such schema {schema!r}")
    wanted = None if tables is None else list(dict.fromkeys(tables))
    objects = [
        (r["kind"], r["name"], r["detail"])
        for r in await conn.fetch(_OBJECTS, oid)
        if not (r["kind"] == "table" and r["name"] in INTERNAL_TABLES)
    ]
    relations = {name: kind for kind, name, _ in objects if kind in _RELATION_KINDS}
    if wanted is not None:
        if not wanted:
            raise SchemaError("--tables", "names no table")
        missing = [t for t in wanted if t not in relations]
        if missing:
            raise SchemaError("--tables", f"no such table in schema {schema!r}: {', '.join(missing)}")
    chosen = set(relations) if wanted is None else set(wanted)
    importable = sorted(n for n in chosen if KINDS[relations[n]][0] == MANAGED and relations[n] == "table")

    state = await introspect(conn, schema, tables=importable)
    read = state.schema
    kept = tuple(t for t in read.tables if t.name in importable)
    kept, dangling = _without_dangling(kept)
    if dangling and wanted is not None:
        table, ref = dangling[0]
        raise SchemaError("--tables", f"{table!r} has a foreign key to {ref}, which is not imported: add it")
    used_types = {unquoted(c.type.removesuffix("[]")) for t in kept for c in t.columns}
    enums = tuple(e for e in read.enums if e.name in used_types)
    sequences = _sequences(kept, read.sequences)
    functions, not_functions = _functions(read.functions)
    kept, not_triggers = _with_triggers(kept, functions)
    views, not_views = _views(read.views, kept, chosen)
    used_functions = {t.function for table in kept for t in table.triggers}
    imported = Schema(
        kept,
        schema,
        enums=enums,
        sequences=sequences,
        views=views,
        functions=tuple(f for name, f in functions.items() if wanted is None or name in used_functions),
    ).normalised()
    imported_names = {
        *((("view" if not v.materialized else "materialized view"), v.name) for v in views),
        *(("function", f.name) for f in imported.functions),
        *(("trigger", t.name, f"on {table.name}") for table in kept for t in table.triggers),
    }
    why_not = {**not_functions, **not_triggers, **not_views}

    report: list[LeftAlone] = []
    for kind, name, detail in objects:
        status, why = KINDS.get(kind, (LEFT_ALONE, "not modelled"))
        if kind in _SCHEMA_OBJECT_KINDS:
            key = _object_key(kind, name, detail)
            if key in imported_names or (kind == "function" and wanted is not None and key not in why_not):
                continue  # imported; or, with --tables, a function no imported trigger executes
            if key in why_not:
                why = why_not[key]
            elif detail in ("procedure", "aggregate", "window"):  # the catalog query says which
                why, detail = f"{detail}s are not modelled", None
            else:
                why = "not importable"
        elif status == MANAGED:
            continue
        if kind in _RELATION_KINDS and name not in chosen:
            continue  # a table not asked for is simply not imported
        if detail and kind in ("index", "trigger", "rule") and wanted is not None:
            if detail.removeprefix("on ") not in chosen:
                continue
        if kind == "table setting" and name not in chosen:
            continue
        report.append(LeftAlone(kind, name, f"{why} ({detail})" if detail else why))
    if wanted is None:  # managed kinds the imported tables do not use: named, so nothing goes unmentioned
        report += [
            LeftAlone("enum", e.name, "no imported table uses it") for e in read.enums if e not in enums
        ]
        report += [
            LeftAlone("sequence", q.name, "no imported table owns it or calls nextval on it")
            for q in read.sequences
            if q not in sequences
        ]
    for table, ref in dangling:
        report.append(
            LeftAlone("table (not importable)", table, f"a foreign key refers to {ref}, not imported")
        )
    extensions = await _extensions(conn, schema, imported)
    return Imported(imported, tuple(report), extensions)


_SCHEMA_OBJECT_KINDS = frozenset({"view", "materialized view", "trigger", "function"})


def _object_key(kind: str, name: str, detail: str | None) -> tuple[str, ...]:
    """How the import names an object of a managed kind: a function by its name alone (the report shows
    its signature), a trigger with its table (``on t``), anything else by kind and name."""
    if kind == "function":
        return (kind, name.split("(", 1)[0])
    if kind == "trigger":
        return (kind, name, detail or "")
    return (kind, name)


def _functions(read: tuple[Function, ...]) -> tuple[dict[str, Function], dict[tuple[str, ...], str]]:
    """The functions a model can declare exactly (by name), and why each other one cannot."""
    names = [f.name for f in read]
    out: dict[str, Function] = {}
    why: dict[tuple[str, ...], str] = {}
    for f in read:
        key = ("function", f.name)
        if names.count(f.name) > 1:
            why[key] = "overloaded: DataFlow declares one function per name"
        elif f.language not in FUNCTION_LANGUAGES:
            why[key] = f"language {f.language} is not modelled (sql and plpgsql are)"
        elif problem := _read_back_problem(f, function_from_dict):
            why[key] = problem
        else:
            out[f.name] = f
    return out, why


def _read_back_problem(obj: Any, from_dict: Any) -> str | None:
    """Why ``obj`` (read from the catalog) is not what declaring its canonical form gives, or None."""
    try:
        again = from_dict(to_json(obj), "import")
    except SchemaError as exc:
        return f"its definition does not read back exactly ({exc})"
    return None if again == obj else "its definition does not read back exactly"


def _with_triggers(
    tables: tuple[Table, ...], functions: dict[str, Function]
) -> tuple[tuple[Table, ...], dict[tuple[str, ...], str]]:
    """``tables`` keeping the triggers a model can declare, and why each other one is left alone."""
    out = []
    why: dict[tuple[str, ...], str] = {}
    for table in tables:
        keep = []
        for t in table.triggers:
            key = ("trigger", t.name, f"on {table.name}")
            if t.function not in functions:
                why[key] = f"its function {t.function} is not imported"
            elif t.timing not in ("BEFORE", "AFTER"):
                why[key] = f"{t.timing} triggers are not modelled"
            elif problem := _read_back_problem(t, trigger_from_dict):
                why[key] = problem
            else:
                keep.append(t)
        out.append(replace(table, triggers=tuple(keep)))
    return tuple(out), why


def _views(
    read: tuple[View, ...], tables: tuple[Table, ...], chosen: set[str]
) -> tuple[tuple[View, ...], dict[tuple[str, ...], str]]:
    """The views asked for whose relations are all imported (tables, or views imported too), in a
    fixed point, and why each other one is left alone."""
    available = {t.name for t in tables}
    pending = [v for v in read if v.name in chosen]
    why: dict[tuple[str, ...], str] = {}
    kept: list[View] = []
    while True:
        ready = [v for v in pending if all(rel in available for rel, _ in v.depends_on)]
        if not ready:
            break
        kept += ready
        available |= {v.name for v in ready}
        pending = [v for v in pending if v not in ready]
    for v in pending:
        missing = sorted({rel for rel, _ in v.depends_on if rel not in available})
        kind = "materialized view" if v.materialized else "view"
        why[(kind, v.name)] = f"it reads {', '.join(missing)}, which is not imported"
    return tuple(sorted(kept, key=lambda v: v.name)), why


_RELATION_KINDS = frozenset(
    {
        "table",
        "partitioned table",
        "partition",
        "inherited table",
        "foreign table",
        "view",
        "materialized view",
    }
)


def unquoted(name: str) -> str:
    """A type name as the catalog stores it (canonical_type quotes one that is not lower case)."""
    if len(name) > 1 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def _without_dangling(tables: tuple[Table, ...]) -> tuple[tuple[Table, ...], list[tuple[str, str]]]:
    """``tables`` less those whose foreign keys refer to a table not among them (until none does), and
    those left out with the tables they refer to (``'a', 'b'``)."""
    dropped: list[tuple[str, str]] = []
    while True:
        names = {t.name for t in tables}
        bad: dict[str, set[str]] = {}
        for t in tables:
            for fk in t.foreign_keys:
                if fk.ref_table not in names:
                    bad.setdefault(t.name, set()).add(fk.ref_table)
        if not bad:
            return tables, dropped
        dropped.extend((name, ", ".join(repr(r) for r in sorted(refs))) for name, refs in sorted(bad.items()))
        tables = tuple(t for t in tables if t.name not in bad)


def _sequences(tables: tuple[Table, ...], sequences: tuple[Sequence, ...]) -> tuple[Sequence, ...]:
    """The sequences an imported table owns or whose ``nextval`` one of its defaults calls."""
    names = {t.name for t in tables}
    called = {name for t in tables for c in t.columns if c.default for name in nextval_names(c.default)}
    return tuple(q for q in sequences if q.name in called or (q.owner is not None and q.owner[0] in names))


def nextval_names(default: str) -> list[str]:
    """Sequence names a default's ``nextval('name')`` calls (as a string literal, with or without a cast)."""
    from pglast.visitors import Visitor

    found: list[str] = []

    class Calls(Visitor):
        def visit_FuncCall(self, ancestors: Any, node: Any) -> None:  # noqa: N802 (pglast API)
            name = [s.sval for s in node.funcname][-1]
            args: Any = node.args or ()
            if name == "nextval" and len(args) == 1:
                arg = args[0]
                arg = getattr(arg, "arg", arg)  # a cast to regclass
                value = getattr(getattr(arg, "val", None), "sval", None)
                if value:
                    found.append(value.split(".")[-1].strip('"'))

    Calls()(parse_expression(default))
    return found


async def _extensions(conn: asyncpg.Connection, schema: str, imported: Schema) -> tuple[str, ...]:
    """The extensions installed in the database (but plpgsql, which every database has)."""
    rows = await conn.fetch("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
    return tuple(r[0] for r in rows) if imported.tables else ()


def with_extensions(imported: Imported) -> Schema:
    """The imported schema declaring its extensions (what models declare with ``__dataflow__``)."""
    return replace(imported.schema, extensions=imported.extensions).normalised()
