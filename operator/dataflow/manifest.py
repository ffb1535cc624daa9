"""``DataFlowSchema`` manifests: generate from model code, validate, and read into engine inputs."""

from __future__ import annotations

import copy
import dataclasses
import importlib.machinery
import importlib.util
import re
import sys
import traceback
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import jsonschema
import yaml

from dataflow.errors import DataFlowError, SchemaError
from dataflow.executor import ExecutionSettings
from dataflow.operations import Risk
from dataflow.plan import PlanOptions
from dataflow.reconcile import Policy
from dataflow.rules import semantic_problems
from dataflow.schema import Schema

if TYPE_CHECKING:
    from dataflow.dataflow import DataFlow

API_VERSION = "dataflow.dev/v1alpha1"
KIND = "DataFlowSchema"
APPROVAL_ANNOTATION = "dataflow.dev/approved-plan"
DEFAULT_SECRET_KEY = "dsn"
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_MANIFEST_BYTES = 3 * 512 * 1024  # 1.5 MiB: the largest object the Kubernetes API server stores
MAX_YAML_NODES = 200_000  # nodes after alias expansion: bounds "billion laughs" documents


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
    """Import a models file and return its ``DataFlow`` instance (the one holding the models).

    Whatever goes wrong while importing (a syntax error, a failed import, an exception in the
    file) becomes one SchemaError naming the file and line.
    """
    from dataflow.dataflow import DataFlow

    path = Path(path)
    if not path.is_file():
        raise SchemaError(str(path), "no such models file")
    name = f"dataflow_models_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_loader(name, importlib.machinery.SourceFileLoader(name, str(path)))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise SchemaError(f"{path}:{exc.lineno or 0}", f"syntax error: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - anything a user's file raises is a bad input
        sys.modules.pop(name, None)
        raise SchemaError(_where_raised(path, exc), _one_line(exc)) from None
    instances = [v for v in vars(module).values() if isinstance(v, DataFlow)]
    if len(instances) != 1:
        raise SchemaError(str(path), f"must define exactly one DataFlow instance with @db.model classes, found {len(instances)}")
    return instances[0]


def _where_raised(path: Path, exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc`` that is in the models file."""
    line = 0
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename) == path:
            line = lineno
    return f"{path}:{line}" if line else str(path)


def _one_line(exc: BaseException) -> str:
    """An exception as one line: our own errors as they are, others with their type."""
    text = str(exc) if isinstance(exc, DataFlowError) else f"{type(exc).__name__}: {exc}"
    return shorten(text)


def shorten(text: str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters (values in messages may be huge or multi-line)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        return [f"(document): must be a mapping, not a YAML {_yaml_kind(doc)}"]
    problems = []
    for e in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = field_path(e.absolute_path)
        problems.append(f"{where}: {shorten(e.message)}")
    problems += _metadata_problems(doc.get("metadata"))
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        problems.append(f"apiVersion/kind: must be {API_VERSION} {KIND}")
    if problems:
        return problems
    return semantic_problems(doc["spec"].get("tables") or [])


def _yaml_kind(value: Any) -> str:
    return "list" if isinstance(value, list) else "scalar"


def _metadata_problems(meta: Any) -> list[str]:
    """The CRD schema may not constrain metadata (the API server does); we check what we read from it."""
    if not isinstance(meta, Mapping):
        return ["metadata: must be a mapping with a name"]
    problems = []
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        problems.append("metadata.name: required: a lower-case DNS name (a-z, 0-9, '-', '.') of at most 253 characters")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS_LABEL.match(namespace)):
        problems.append("metadata.namespace: must be a lower-case DNS label (a-z, 0-9, '-') of at most 63 characters")
    return problems


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
    if not isinstance(doc, Mapping):
        raise SchemaError("(document)", f"must be a mapping, not a YAML {_yaml_kind(doc)}")
    meta = doc.get("metadata")
    if isinstance(meta, Mapping):
        meta = {k: meta[k] for k in ("name", "namespace", "annotations", "labels") if k in meta}
    doc = {"apiVersion": doc.get("apiVersion"), "kind": doc.get("kind"), "metadata": meta, "spec": doc.get("spec")}
    problems = validate(doc)
    if problems:
        field, _, first = problems[0].partition(": ")
        raise SchemaError(field, "; ".join([first, *problems[1:]]))
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
        planning=PlanOptions(**_allowed_functions(pol.get("allowedFunctions") or ())),
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


def _allowed_functions(names: Iterable[str]) -> dict[str, frozenset[str]]:
    """``allowed_functions`` for PlanOptions, when this engine's PlanOptions has that field."""
    if not any(f.name == "allowed_functions" for f in dataclasses.fields(PlanOptions)):
        return {}
    return {"allowed_functions": frozenset(names)}


def read_documents(paths: Iterable[str | Path]) -> list[tuple[str, Any]]:
    """(source, document) for every YAML document in ``paths``; SchemaError naming the file otherwise."""
    out = []
    for path in paths:
        docs = load_yaml(read_text(path), str(path))
        out += [(f"{path}#{i}" if len(docs) > 1 else str(path), d) for i, d in enumerate(docs)]
    return out


def read_text(path: str | Path) -> str:
    """A manifest file's text: at most MAX_MANIFEST_BYTES of UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise SchemaError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise SchemaError(str(path), f"larger than {MAX_MANIFEST_BYTES} bytes (the Kubernetes object limit)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(str(path), f"not UTF-8 text (invalid byte at offset {exc.start})") from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader; documents are checked by :func:`_check_expansion` before construction."""


def load_yaml(text: str, source: str) -> list[Any]:
    """Every non-empty YAML document of ``text``, refusing alias bombs and recursive aliases."""
    loader = _BoundedLoader(text)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            _check_expansion(node, source)
            doc = loader.construct_document(node)
            if doc is not None:
                docs.append(doc)
        return docs
    except yaml.YAMLError as exc:
        raise SchemaError(source, f"not valid YAML: {shorten(str(exc))}") from None
    except RecursionError:
        raise SchemaError(source, "YAML nested too deeply") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_NODES nodes, or refer to themselves."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_YAML_NODES:
                raise SchemaError(source, f"YAML expands to more than {MAX_YAML_NODES} nodes (aliases)")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise SchemaError(source, "YAML alias refers to itself")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
