"""The DataFlowSchema CRD (crds/dataflowschema.yaml -> operator/dataflow/resources/crd.yaml)."""

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from dataflow.manifest import strict_schema

ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "crds" / "dataflowschema.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
OPERATIONS = re.findall(
    r"\b[A-Z]+(?:_[A-Z]+)+\b", (ROOT / "docs" / "canonical-schema.md").read_text().split("Operation names")[1]
)


VALIDATOR = jsonschema.Draft7Validator(strict_schema(SCHEMA))


def errors(manifest: dict) -> list[tuple[str, str]]:
    return [(".".join(str(p) for p in e.absolute_path), e.message) for e in VALIDATOR.iter_errors(manifest)]


def sample() -> dict:
    return {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {
            "database": {"secretRef": {"name": "shop-db", "key": "dsn"}, "schema": "public"},
            "policy": {
                "maxRiskLevel": "HIGH",
                "excludeOperations": ["DROP_TABLE"],
                "dryRun": True,
                "lockTimeout": "500ms",
                "statementTimeout": "10m",
                "driftCheckInterval": "1h",
                "includeTables": ["user"],
            },
            "promotion": {"after": "shop-staging"},
            "tables": [
                {
                    "name": "user",
                    "renamedFrom": "users",
                    "columns": [
                        {"name": "id", "type": "BIGINT", "nullable": False, "identity": "BY DEFAULT"},
                        {"name": "email", "type": "VARCHAR(320)", "nullable": False, "renamedFrom": "mail"},
                        {"name": "balance", "type": "NUMERIC(12,2)", "default": "0"},
                        {"name": "tags", "type": "TEXT[]", "default": "'{}'"},
                        {"name": 'we"ird name', "type": "DOUBLE PRECISION"},
                    ],
                    "primaryKey": ["id"],
                    "indexes": [
                        {
                            "name": "user_email_idx",
                            "columns": ["lower(email)"],
                            "unique": True,
                            "method": "btree",
                            "where": "balance > 0",
                        }
                    ],
                    "uniques": [{"name": "user_email_key", "columns": ["email"]}],
                    "foreignKeys": [
                        {
                            "name": "user_self_fkey",
                            "columns": ["id"],
                            "refTable": "user",
                            "refColumns": ["id"],
                            "onDelete": "CASCADE",
                            "onUpdate": "NO ACTION",
                        }
                    ],
                    "checks": [{"name": "user_balance_check", "expression": "balance >= 0"}],
                }
            ],
        },
        "status": {
            "phase": "AwaitingApproval",
            "observedGeneration": 2,
            "schemaHash": "ab" * 32,
            "planHash": "0123456789ab",
            "maxRisk": "HIGH",
            "changes": 1,
            "changesByKind": [{"operation": "DROP_COLUMN", "count": 1}],
            "changesByRisk": [{"risk": "HIGH", "count": 1}],
            "planConfigMap": "shop-plan",
            "verdict": "needs approval",
            "approveCommand": "kubectl annotate dfs shop dataflow.dev/approve=0123456789ab",
            "lastAppliedVersion": "1",
            "appliedSchemaHash": "cd" * 32,
            "message": "",
            "drifted": "False",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "AwaitingApproval",
                    "message": "",
                    "lastTransitionTime": "2024-01-01T00:00:00Z",
                    "observedGeneration": 2,
                }
            ],
            "kopf": {"progress": {"anything": {"goes": 1}}},
        },
    }


# --- shape ---------------------------------------------------------------------------------------------


def test_apiextensions_shape():
    assert (
        CRD_PATH.is_symlink()
        and CRD_PATH.resolve() == ROOT / "operator" / "dataflow" / "resources" / "crd.yaml"
    )
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1" and CRD["kind"] == "CustomResourceDefinition"
    spec = CRD["spec"]
    assert (
        CRD["metadata"]["name"]
        == f"{spec['names']['plural']}.{spec['group']}"
        == "dataflowschemas.dataflow.dev"
    )
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "DataFlowSchema",
        "listKind": "DataFlowSchemaList",
        "plural": "dataflowschemas",
        "singular": "dataflowschema",
        "shortNames": ["dfs"],
    }
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [("v1alpha1", True, True)]
    assert VERSION["subresources"] == {"status": {}}
    columns = {c["name"].upper(): (c["type"], c["jsonPath"]) for c in VERSION["additionalPrinterColumns"]}
    assert columns == {
        "PHASE": ("string", ".status.phase"),
        "RISK": ("string", ".status.maxRisk"),
        "CHANGES": ("integer", ".status.changes"),
        "PLAN": ("string", ".status.planHash"),
        "DRIFTED": ("string", ".status.drifted"),
        "AGE": ("date", ".metadata.creationTimestamp"),
    }


def _nodes(node: dict, path: str = ""):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")


def test_structural_schema():
    allowed = {
        "type",
        "description",
        "properties",
        "items",
        "required",
        "enum",
        "pattern",
        "minItems",
        "minLength",
        "maxLength",
        "minimum",
        "default",
        "format",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    }
    preserved = []
    for path, node in _nodes(SCHEMA):
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        assert set(node) <= allowed, (path, set(node) - allowed)
        assert "additionalProperties" not in node and "$ref" not in node, path
        if node["type"] == "array":
            assert "items" in node, path
        if node["type"] == "object" and path != ".metadata":
            if node.get("x-kubernetes-preserve-unknown-fields"):
                preserved.append(path)
            else:
                assert node.get("properties"), path
        for key in node.get("required", []):
            assert key in node["properties"], (path, key)
        if "default" in node:
            assert not path.startswith(".spec.tables"), f"{path}: a default would change the schema hash"
        for value in node.get("enum", []) + ([node["default"]] if "default" in node else []):
            assert isinstance(value, str if node["type"] == "string" else bool), (path, value)
        if "pattern" in node:
            re.compile(node["pattern"])
    assert preserved == [".status.kopf"]
    assert "x-kubernetes-preserve-unknown-fields" not in SCHEMA["properties"]["status"]


def test_enums_and_defaults():
    spec = SCHEMA["properties"]["spec"]["properties"]
    policy = spec["policy"]["properties"]
    assert (
        policy["maxRiskLevel"]["enum"] == ["SAFE", "MEDIUM", "HIGH"]
        and policy["maxRiskLevel"]["default"] == "MEDIUM"
    )
    assert len(OPERATIONS) == 38 and policy["excludeOperations"]["items"]["enum"] == OPERATIONS
    assert (
        policy["dryRun"]["default"],
        policy["lockTimeout"]["default"],
        policy["statementTimeout"]["default"],
        policy["driftCheckInterval"]["default"],
    ) == (False, "2s", "5m", "5m")
    db = spec["database"]["properties"]
    assert db["secretRef"]["properties"]["key"]["default"] == "dsn" and db["schema"]["default"] == "public"
    conditions = SCHEMA["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == [
        "type"
    ]
    by_kind = SCHEMA["properties"]["status"]["properties"]["changesByKind"]
    assert by_kind["x-kubernetes-list-map-keys"] == ["operation"]
    assert by_kind["items"]["properties"]["operation"]["enum"] == OPERATIONS


# --- validation ------------------------------------------------------------------------------------------


def test_sample_validates():
    assert errors(sample()) == []


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_example_manifests_validate(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "DataFlowSchema":
            assert errors(doc) == []


def _broken(mutate) -> list[tuple[str, str]]:
    manifest = sample()
    mutate(manifest)
    return errors(manifest)


def test_dsn_field_is_rejected():
    errs = _broken(lambda m: m["spec"]["database"].update(dsn="postgresql://app:secret@db/shop"))
    assert len(errs) == 1 and errs[0][0] == "spec.database" and "'dsn'" in errs[0][1]
    errs = _broken(lambda m: m["spec"].update(databaseUrl="postgresql://db/shop"))
    assert len(errs) == 1 and errs[0][0] == "spec" and "'databaseUrl'" in errs[0][1]


def test_bad_max_risk_level_is_rejected():
    errs = _broken(lambda m: m["spec"]["policy"].update(maxRiskLevel="EXTREME"))
    assert [p for p, _ in errs] == ["spec.policy.maxRiskLevel"] and "EXTREME" in errs[0][1]


@pytest.mark.parametrize(
    "bad",
    [
        "Varchar(10)",
        "VARCHAR",
        "VARCHAR(0)",
        "NUMERIC(10, 2)",
        "INT",
        "TEXT[][]x",
        "TIMESTAMP WITH TIME ZONE",
        "SERIAL",
        "",
        "TEXT; DROP TABLE x",
    ],
)
def test_bad_column_type_is_rejected(bad):
    errs = _broken(lambda m: m["spec"]["tables"][0]["columns"][1].update(type=bad))
    assert [p for p, _ in errs] == ["spec.tables.0.columns.1.type"]


@pytest.mark.parametrize(
    "good",
    [
        "TEXT",
        "VARCHAR(255)",
        "CHAR(2)",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "REAL",
        "DOUBLE PRECISION",
        "NUMERIC(10,2)",
        "NUMERIC",
        "BOOLEAN",
        "DATE",
        "TIMESTAMP",
        "TIMESTAMPTZ",
        "TIME",
        "INTERVAL",
        "JSON",
        "JSONB",
        "BYTEA",
        "UUID",
        "UUID[]",
        "NUMERIC(10,2)[]",
        "VARCHAR(20)[]",
    ],
)
def test_canonical_column_types_are_accepted(good):
    assert _broken(lambda m: m["spec"]["tables"][0]["columns"][1].update(type=good)) == []


def test_missing_secret_ref_name_is_rejected():
    errs = _broken(lambda m: m["spec"]["database"]["secretRef"].pop("name"))
    assert errs == [("spec.database.secretRef", "'name' is a required property")]


def test_identifiers_are_quoted_names():
    for name in ["order", "user", 'a "quoted" name', "Ünïcode", "x" * 63]:
        assert _broken(lambda m, name=name: m["spec"]["tables"][0].update(name=name)) == [], name
    for name in ["", "x" * 64, "nul\x00byte"]:
        assert {p for p, _ in _broken(lambda m, name=name: m["spec"]["tables"][0].update(name=name))} == {
            "spec.tables.0.name"
        }


@pytest.mark.parametrize(
    "path,value",
    [
        (("spec", "policy", "lockTimeout"), "2 seconds"),
        (("spec", "policy", "excludeOperations"), ["TRUNCATE"]),
        (("spec", "tables", 0, "indexes", 0, "method"), "bitmap"),
        (("spec", "tables", 0, "foreignKeys", 0, "onDelete"), "DELETE"),
        (("spec", "tables", 0, "columns", 0, "identity"), "SOMETIMES"),
        (("spec", "tables", 0, "columns"), []),
        (("status", "phase"), "Done"),
        (("status", "planHash"), "not-a-hash"),
        (("status", "conditions", 0, "status"), "Maybe"),
        (("status", "unknownField"), 1),
    ],
)
def test_invalid_values_are_rejected(path, value):
    manifest = sample()
    target = manifest
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errs = errors(manifest)
    assert errs, path
    expected = ".".join(str(p) for p in path if p != "unknownField")
    assert all(p.startswith(expected) for p, _ in errs), errs


def test_missing_tables_and_database_are_rejected():
    manifest = sample()
    del manifest["spec"]["tables"], manifest["spec"]["database"]
    assert sorted(m for p, m in errors(manifest) if p == "spec") == [
        "'database' is a required property",
        "'tables' is a required property",
    ]
