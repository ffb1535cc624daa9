"""``DataFlowSchema`` manifests: generate from model code, validate, and read into engine inputs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from dataflow.crd import crd, strict_schema, validator
from dataflow.documents import (
    MAX_MANIFEST_BYTES,
    MAX_YAML_NODES,
    load_yaml,
    read_documents,
    read_text,
    shorten,
)
from dataflow.durations import duration_ms
from dataflow.errors import SchemaError
from dataflow.jsonfields import from_json
from dataflow.modelfile import load_dataflow, load_models
from dataflow.operations import Risk
from dataflow.options import MigrationOptions
from dataflow.resource import DEFAULT_SECRET_KEY, Database, DriftPolicy, PolicySpec, Promotion
from dataflow.rules import semantic_problems
from dataflow.schema import Schema, check_manifest_types

# Names other modules import from here (cli.py, k8s/*, tests) since the split by job.
__all__ = [
    "APPROVAL_ANNOTATION",
    "MAX_MANIFEST_BYTES",
    "MAX_YAML_NODES",
    "Manifest",
    "crd",
    "dump",
    "duration_ms",
    "field_path",
    "from_resource",
    "generate",
    "load_dataflow",
    "load_models",
    "load_yaml",
    "read_documents",
    "read_text",
    "semantic_problems",
    "shorten",
    "strict_schema",
    "validate",
]

API_VERSION = "dataflow.dev/v1alpha1"
KIND = "DataFlowSchema"
APPROVAL_ANNOTATION = "dataflow.dev/approved-plan"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


# generate --------------------------------------------------------------------------------------
def generate(
    schema: Schema,
    *,
    name: str,
    namespace: str,
    secret: str,
    secret_key: str = DEFAULT_SECRET_KEY,
    max_risk: str = "MEDIUM",
    promotion_after: str | None = None,
) -> dict[str, Any]:
    """A DataFlowSchema resource for ``schema`` (keys in a fixed order, so Git diffs stay small)."""
    spec: dict[str, Any] = {
        "database": {"secretRef": {"name": secret, "key": secret_key}, "schema": schema.name},
        "policy": {"maxRiskLevel": Risk.parse(max_risk, "--max-risk").name},
    }
    if promotion_after:
        spec["promotion"] = {"after": promotion_after}
    canonical = schema.to_dict()
    spec["tables"] = canonical["tables"]
    for key in (
        "extensions",
        "enums",
        "sequences",
        "views",
        "functions",
    ):  # each only when the schema has some
        if key in canonical:
            spec[key] = canonical[key]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


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
    for e in sorted(validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
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
        problems.append(
            "metadata.name: required: a lower-case DNS name (a-z, 0-9, '-', '.') of at most 253 characters"
        )
    if namespace is not None and (not isinstance(namespace, str) or not _DNS_LABEL.match(namespace)):
        problems.append(
            "metadata.namespace: must be a lower-case DNS label (a-z, 0-9, '-') of at most 63 characters"
        )
    return problems


# read ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    """A validated DataFlowSchema: what the engine needs to reconcile it."""

    name: str
    namespace: str
    schema: Schema
    options: MigrationOptions
    secret_name: str
    secret_key: str
    promotion_after: str | None
    drift_check_seconds: float
    drift_policy: DriftPolicy = DriftPolicy.REPORT
    adopt: bool = False  # spec.adopt: the first reconcile is a baseline (dataflow.baseline)

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
    doc = {
        "apiVersion": doc.get("apiVersion"),
        "kind": doc.get("kind"),
        "metadata": meta,
        "spec": doc.get("spec"),
    }
    problems = validate(doc)
    if problems:
        field, _, first = problems[0].partition(": ")
        raise SchemaError(field, "; ".join([first, *problems[1:]]))
    meta, spec = doc["metadata"], doc["spec"]
    check_manifest_types(spec.get("tables"), "spec.tables")
    pol = from_json(PolicySpec, spec.get("policy") or {})
    db = from_json(Database, spec["database"])
    options = MigrationOptions.from_policy_spec(pol, (meta.get("annotations") or {}).get(APPROVAL_ANNOTATION))
    return Manifest(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        schema=Schema.from_dict(
            {
                "tables": spec.get("tables") or [],
                "extensions": spec.get("extensions") or [],
                "enums": spec.get("enums") or [],
                "sequences": spec.get("sequences") or [],
                "views": spec.get("views") or [],
                "functions": spec.get("functions") or [],
            },
            name=db.schema,
        ),
        options=options,
        secret_name=db.secret_ref.name,
        secret_key=db.secret_ref.key,
        promotion_after=from_json(Promotion, spec.get("promotion") or {}).after,
        drift_check_seconds=duration_ms(pol.drift_check_interval, "spec.policy.driftCheckInterval") / 1000,
        drift_policy=DriftPolicy(pol.drift),
        adopt=bool(spec.get("adopt", False)),
    )
