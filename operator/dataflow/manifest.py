"""``DataFlowSchema`` manifests: generate from model code, validate, and read into engine inputs."""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import jsonschema
import yaml

from dataflow.errors import SchemaError
from dataflow.executor import ExecutionSettings
from dataflow.operations import Risk
from dataflow.reconcile import Policy
from dataflow.schema import Schema
from dataflow.sqltext import MAX_IDENTIFIER_BYTES, parse_expression
from dataflow.types import is_known_type

if TYPE_CHECKING:
    from dataflow.dataflow import DataFlow

API_VERSION = "dataflow.dev/v1alpha1"
KIND = "DataFlowSchema"
APPROVAL_ANNOTATION = "dataflow.dev/approved-plan"
DEFAULT_SECRET_KEY = "dsn"
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


@lru_cache(maxsize=1)
def crd() -> dict[str, Any]:
    text = resources.files("dataflow").joinpath("resources/crd.yaml").read_text()
    return yaml.safe_load(text)


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Unknown fields are errors (the API server's strict field validation), except where preserved."""
    schema = copy.deepcopy(schema)

    def walk(node: dict[str, Any]) -> None:
        if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            walk(child)
        if "items" in node:
            walk(node["items"])

    walk(schema)
    return schema


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft7Validator:
    version = crd()["spec"]["versions"][0]
    return jsonschema.Draft7Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


def duration_ms(value: str, field: str) -> int:
    m = _DURATION.match(value or "")
    if not m:
        raise SchemaError(field, f"must be a duration like 500ms, 2s or 5m, not {value!r}")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


# generate --------------------------------------------------------------------------------------
def load_dataflow(path: str | Path) -> "DataFlow":
    """Import a models file and return its ``DataFlow`` instance (the one holding the models)."""
    from dataflow.dataflow import DataFlow

    path = Path(path)
    if not path.is_file():
        raise SchemaError(str(path), "no such models file")
    name = f"dataflow_models_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    instances = [v for v in vars(module).values() if isinstance(v, DataFlow)]
    if len(instances) != 1:
        raise SchemaError(str(path), f"must define exactly one DataFlow instance with @db.model classes, found {len(instances)}")
    return instances[0]


def load_models(path: str | Path) -> Schema:
    """The desired schema of a models file."""
    return load_dataflow(path).schema()


def generate(schema: Schema, *, name: str, namespace: str, secret: str, secret_key: str = DEFAULT_SECRET_KEY,
             max_risk: str = "MEDIUM", promotion_after: str | None = None) -> dict[str, Any]:
    """A DataFlowSchema resource for ``schema`` (keys in a fixed order, so Git diffs stay small)."""
    spec: dict[str, Any] = {
        "database": {"secretRef": {"name": secret, "key": secret_key}, "schema": schema.name},
        "policy": {"maxRiskLevel": Risk.parse(max_risk, "--max-risk").name},
    }
    if promotion_after:
        spec["promotion"] = {"after": promotion_after}
    spec["tables"] = schema.to_dict()["tables"]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def dump(doc: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=120)


# validate --------------------------------------------------------------------------------------
def field_path(parts: Iterable[Any]) -> str:
    """``["spec", "tables", 0, "name"]`` → ``spec.tables[0].name``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def validate(doc: Any) -> list[str]:
    """Every problem with a manifest, each as ``field.path: what is wrong``."""
    if not isinstance(doc, Mapping):
        return ["(document): must be a mapping"]
    problems = []
    for e in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = field_path(e.absolute_path)
        problems.append(f"{where}: {e.message}")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        problems.append(f"apiVersion/kind: must be {API_VERSION} {KIND}")
    if problems:
        return problems
    return semantic_problems(doc["spec"].get("tables") or [])


def semantic_problems(tables: list[Mapping[str, Any]]) -> list[str]:
    """Checks a JSON schema cannot express: types, duplicates, references, expressions."""
    problems: list[str] = []
    names = [t["name"] for t in tables]
    columns_of = {t["name"]: {c["name"] for c in t.get("columns", [])} for t in tables}
    relation_names: dict[str, str] = {}

    def claim(name: str, where: str) -> None:
        # tables, indexes and constraints share one namespace per schema in PostgreSQL
        if name in relation_names:
            problems.append(f"{where}: name {name!r} is already used by {relation_names[name]}")
        relation_names.setdefault(name, where)

    for i, t in enumerate(tables):
        p = f"spec.tables[{i}]"
        if t["name"] in names[:i]:
            problems.append(f"{p}.name: duplicate table {t['name']!r}")
        cols = [c["name"] for c in t["columns"]]
        for j, c in enumerate(t["columns"]):
            cp = f"{p}.columns[{j}]"
            if c["name"] in cols[:j]:
                problems.append(f"{cp}.name: duplicate column {c['name']!r}")
            if len(c["name"].encode()) > MAX_IDENTIFIER_BYTES:
                problems.append(f"{cp}.name: longer than {MAX_IDENTIFIER_BYTES} bytes")
            if not is_known_type(c["type"]):
                problems.append(f"{cp}.type: unknown column type {c['type']!r}")
            if c.get("default") is not None:
                _expression(c["default"], f"{cp}.default", problems)
        for col in t.get("primaryKey", []):
            if col not in columns_of[t["name"]]:
                problems.append(f"{p}.primaryKey: unknown column {col!r}")
        for j, ix in enumerate(t.get("indexes", [])):
            ip = f"{p}.indexes[{j}]"
            claim(ix["name"], ip)
            for element in ix["columns"]:
                if element not in columns_of[t["name"]]:
                    _expression(element, f"{ip}.columns", problems, f"is neither a column of {t['name']!r} nor an expression")
            if ix.get("where"):
                _expression(ix["where"], f"{ip}.where", problems)
        for kind in ("uniques", "foreignKeys", "checks"):
            for j, con in enumerate(t.get(kind, [])):
                cp = f"{p}.{kind}[{j}]"
                claim(con["name"], cp)
                for col in con.get("columns", []):
                    if col not in columns_of[t["name"]]:
                        problems.append(f"{cp}.columns: unknown column {col!r}")
                if kind == "checks":
                    _expression(con["expression"], f"{cp}.expression", problems)
                if kind == "foreignKeys":
                    ref = con["refTable"]
                    if ref not in columns_of:
                        problems.append(f"{cp}.refTable: dangling foreign key: no table {ref!r} in this schema")
                    else:
                        for col in con["refColumns"]:
                            if col not in columns_of[ref]:
                                problems.append(f"{cp}.refColumns: table {ref!r} has no column {col!r}")
                    if len(con["refColumns"]) != len(con["columns"]):
                        problems.append(f"{cp}.refColumns: {len(con['columns'])} columns refer to {len(con['refColumns'])}")
    return problems


def _expression(text: str, where: str, problems: list[str], message: str | None = None) -> None:
    try:
        parse_expression(text)
    except ValueError as exc:
        problems.append(f"{where}: {message or 'bad SQL expression'} ({exc})")


# read ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    """A validated DataFlowSchema: what the engine needs to reconcile it."""

    name: str
    namespace: str
    schema: Schema
    policy: Policy
    secret_name: str
    secret_key: str
    promotion_after: str | None
    drift_check_seconds: float

    @property
    def owner(self) -> str:
        """The ledger owner; the CLI and the operator use the same one for the same resource."""
        return f"k8s:{self.namespace}/{self.name}"


def from_resource(doc: Mapping[str, Any]) -> Manifest:
    """A validated manifest → engine inputs; raises SchemaError naming every problem.

    Only what a manifest author writes is read: a live object's status and server-set
    metadata are ignored.
    """
    meta = doc.get("metadata") or {}
    doc = {
        "apiVersion": doc.get("apiVersion"),
        "kind": doc.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "annotations", "labels") if k in meta},
        "spec": doc.get("spec"),
    }
    problems = validate(doc)
    if problems:
        raise SchemaError(problems[0].split(":")[0], "; ".join(problems))
    meta, spec = doc["metadata"], doc["spec"]
    pol = spec.get("policy") or {}
    db = spec["database"]
    defaults = ExecutionSettings()
    execution = ExecutionSettings(
        lock_timeout_ms=duration_ms(pol.get("lockTimeout", "2s"), "spec.policy.lockTimeout"),
        statement_timeout_ms=duration_ms(pol.get("statementTimeout", "5m"), "spec.policy.statementTimeout"),
        max_attempts=defaults.max_attempts,
    )
    approved = (meta.get("annotations") or {}).get(APPROVAL_ANNOTATION)
    policy = Policy(
        max_risk_level=Risk.parse(pol.get("maxRiskLevel", "MEDIUM"), "spec.policy.maxRiskLevel"),
        include_tables=tuple(pol["includeTables"]) if pol.get("includeTables") else None,
        exclude_operations=tuple(pol.get("excludeOperations") or ()),
        dry_run=bool(pol.get("dryRun", False)),
        approved_plan=approved,
        execution=execution,
    )
    return Manifest(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        schema=Schema.from_dict({"tables": spec.get("tables") or []}, name=db.get("schema", "public")),
        policy=policy,
        secret_name=db["secretRef"]["name"],
        secret_key=db["secretRef"].get("key", DEFAULT_SECRET_KEY),
        promotion_after=(spec.get("promotion") or {}).get("after"),
        drift_check_seconds=duration_ms(pol.get("driftCheckInterval", "5m"), "spec.policy.driftCheckInterval") / 1000,
    )


def read_documents(paths: Iterable[str | Path]) -> list[tuple[str, Any]]:
    """(source, document) for every YAML document in ``paths``."""
    out = []
    for path in paths:
        text = Path(path).read_text()
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise SchemaError(str(path), f"not valid YAML: {exc}") from None
        out += [(f"{path}#{i}" if len(docs) > 1 else str(path), d) for i, d in enumerate(docs)]
    return out
