"""Manifest fuzzing: mutations of a valid manifest are either a Schema or a SchemaError naming the field.

2,000 examples by default; set DATAFLOW_FUZZ_EXAMPLES=10000 for a longer run. The hot loop needs
no database; one small sample runs `dataflow plan -f` against the test database and checks that
planning changed nothing.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow.errors import DataFlowError, SchemaError
from dataflow.manifest import dump, from_resource, validate
from dataflow.schema import Schema
from tests.test_cli import dataflow_cli

EXAMPLES = int(os.environ.get("DATAFLOW_FUZZ_EXAMPLES", "2000"))
FIELD = re.compile(r"^(\(document\)|apiVersion/kind|apiVersion|kind|metadata|spec)[^:]*: ")

VALID: dict[str, Any] = {
    "apiVersion": "dataflow.dev/v1alpha1",
    "kind": "DataFlowSchema",
    "metadata": {"name": "shop", "namespace": "prod"},
    "spec": {
        "database": {"secretRef": {"name": "shop-db", "key": "dsn"}, "schema": "public"},
        "policy": {"maxRiskLevel": "MEDIUM", "lockTimeout": "2s", "excludeOperations": ["DROP_TABLE"]},
        "tables": [
            {
                "name": "order",
                "primaryKey": ["id"],
                "columns": [
                    {"name": "id", "type": "BIGINT", "nullable": False, "identity": "BY DEFAULT"},
                    {"name": "user_id", "type": "BIGINT"},
                    {"name": "total", "type": "NUMERIC(12,2)", "default": "0"},
                ],
                "indexes": [{"name": "order_total_idx", "columns": ["total"], "where": "total > 0"}],
                "foreignKeys": [
                    {
                        "name": "order_user_fkey",
                        "columns": ["user_id"],
                        "refTable": "user",
                        "refColumns": ["id"],
                        "onDelete": "CASCADE",
                    }
                ],
                "checks": [{"name": "order_total_check", "expression": "total >= 0"}],
            },
            {
                "name": "user",
                "primaryKey": ["id"],
                "columns": [
                    {"name": "id", "type": "BIGINT", "nullable": False},
                    {"name": "email", "type": "VARCHAR(320)"},
                ],
                "uniques": [{"name": "user_email_key", "columns": ["email"]}],
            },
        ],
    },
}

NASTY_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "\x00",
            "a\x00b",
            "x" * 70,
            "é" * 40,
            "1; DROP TABLE user",
            "total > 0; SELECT 1",
            "pg_sleep(10)",
            "(SELECT 1)",
            "BIGNUM",
            "VARCHAR(-5)",
            "EXPLODE",
            "SAFEST",
            "5 minutes",
            "'unterminated",
            "id",
            "total",
            "user",
            "order",
            "\ud800"[:0] + "\u202e",
            "NaN",
        ]
    ),
    st.just("y" * 100_000),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), NASTY_TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(NASTY_TEXT, st.integers()), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into ``node`` (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, prefix + (i,))
    return out


ALL_PATHS = paths(VALID)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """The valid manifest with a few values replaced, keys removed or added, or list items duplicated."""
    if draw(st.integers(0, 30)) == 0:
        return draw(VALUES)  # not even a mapping, sometimes
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent, key = _resolve(doc, path)
        if parent is None:
            continue
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        if action == "replace":
            parent[key] = draw(VALUES)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(NASTY_TEXT)] = draw(VALUES)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return doc


def _resolve(doc: Any, path: tuple) -> tuple[Any, Any]:
    if not path:
        return None, None
    node = doc
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None, None
    try:
        node[path[-1]]
    except (KeyError, IndexError, TypeError):
        return None, None
    return node, path[-1]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(mutated())
def test_every_manifest_is_a_schema_or_a_field_error(doc: Any) -> None:
    problems = validate(doc)
    for problem in problems:
        assert FIELD.match(problem), problem
        assert "\n" not in problem
    read = _as_read(doc)
    problems_read = validate(read) if isinstance(doc, dict) else problems
    try:
        manifest = from_resource(doc)
    except SchemaError as exc:
        assert problems_read, f"validate() passed but from_resource refused: {exc}"
        assert FIELD.match(str(exc)), str(exc)
        return
    except DataFlowError as exc:  # pragma: no cover - allowed, but report which
        raise AssertionError(f"not a SchemaError: {type(exc).__name__}: {exc}") from None
    assert not problems_read, problems_read
    assert isinstance(manifest.schema, Schema)
    assert manifest.schema.name == doc["spec"]["database"].get("schema", "public")


def _as_read(doc: Any) -> Any:
    """What from_resource reads of ``doc``: it ignores server-set metadata and top-level fields such as status."""
    if not isinstance(doc, dict):
        return doc
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        meta = {k: meta[k] for k in ("name", "namespace", "annotations", "labels") if k in meta}
    return {
        "apiVersion": doc.get("apiVersion"),
        "kind": doc.get("kind"),
        "metadata": meta,
        "spec": doc.get("spec"),
    }


def test_the_valid_manifest_is_valid() -> None:
    assert validate(VALID) == []
    assert from_resource(VALID).schema.table_names == ("order", "user")


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_a_sample_planned_against_the_database_changes_nothing(dsn: str, tmp_path: Path, doc: Any) -> None:
    """`dataflow plan -f` only reads: a sample of fuzzed manifests leaves the catalog as it was.

    The valid manifest is planned first, so the ledger tables exist before the snapshot.
    """
    import asyncio

    path = tmp_path / "fuzz.yaml"

    async def run() -> tuple[int, str, list, list]:
        path.write_text(dump(VALID))
        code, out = await dataflow_cli("plan", "-f", str(path), "--database-url", dsn)
        assert code == 0, out
        before = await _catalog(dsn)
        path.write_text(yaml.safe_dump(doc))
        code, out = await dataflow_cli("plan", "-f", str(path), "--database-url", dsn)
        return code, out, before, await _catalog(dsn)

    code, out, before, after = asyncio.run(run())
    assert "Traceback" not in out and code in (0, 1, 2), out
    assert before == after


async def _catalog(dsn: str) -> list:
    conn = await asyncpg.connect(dsn)
    try:
        return [
            tuple(r)
            for r in await conn.fetch(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
            )
        ]
    finally:
        await conn.close()
