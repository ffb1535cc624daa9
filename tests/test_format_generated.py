"""One source for the format: the CRD and the docs' field tables are generated from the Python types."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from dataflow import crdgen
from dataflow.crd import strict_schema
from dataflow.k8s.reasons import Phase
from dataflow.manifest import from_resource, generate, load_models, validate
from dataflow.operations import OPERATION_KINDS, Risk
from dataflow.resource import PolicySpec
from dataflow.rules import semantic_problems
from dataflow.schema import FK_ACTIONS, IDENTITY_KINDS, INDEX_METHODS, Schema

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop" / "models.py"


def committed_schema() -> dict:
    crd = yaml.safe_load((ROOT / "crds" / "dataflowschema.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_generation_is_deterministic_across_processes():
    """Byte-stable output: the same text in this process and in one with another hash seed."""
    script = "from dataflow import crdgen; import sys; sys.stdout.write(crdgen.crd_yaml() + crdgen.generated_docs())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert crdgen.crd_yaml() == crdgen.crd_yaml()
    assert other == crdgen.crd_yaml() + crdgen.generated_docs()


def test_committed_crd_chart_copy_and_docs_equal_what_is_generated():
    """Changing a type without `make generate` fails here (run it and commit the result)."""
    for path, text in crdgen.expected_files(ROOT).items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run `make generate`"
    crds = ROOT / "crds" / "dataflowschema.yaml"
    assert (
        crds.read_bytes()
        == (ROOT / crdgen.CRD_FILES[0]).read_bytes()
        == (ROOT / crdgen.CRD_FILES[1]).read_bytes()
    )


def test_generate_check_reports_and_then_repairs_stale_files(tmp_path: Path):
    for name in (*crdgen.CRD_FILES, crdgen.DOCS_FILE):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    chart = tmp_path / crdgen.CRD_FILES[1]
    chart.write_text(chart.read_text().replace("maxLength: 63", "maxLength: 64", 1))
    docs = tmp_path / crdgen.DOCS_FILE
    docs.write_text(
        docs.read_text().replace("| `nullable` | boolean | default `true`", "| `nullable` | bool | yes")
    )
    assert crdgen.main(["--root", str(tmp_path), "--check"]) == 1
    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert crdgen.main(["--root", str(tmp_path), "--check"]) == 0
    assert chart.read_text() == crdgen.crd_yaml() and "prose" not in crdgen.generated_docs()
    assert docs.read_text().startswith("# The canonical schema form")  # the prose around the markers is kept


def test_every_enum_in_the_crd_is_the_python_closed_list():
    schema = committed_schema()
    spec, status = schema["properties"]["spec"]["properties"], schema["properties"]["status"]["properties"]
    table = spec["tables"]["items"]["properties"]
    risks = [r.name for r in Risk]
    assert table["columns"]["items"]["properties"]["identity"]["enum"] == list(IDENTITY_KINDS)
    assert table["indexes"]["items"]["properties"]["method"]["enum"] == list(INDEX_METHODS)
    fk = table["foreignKeys"]["items"]["properties"]
    assert fk["onDelete"]["enum"] == fk["onUpdate"]["enum"] == list(FK_ACTIONS)
    assert spec["policy"]["properties"]["maxRiskLevel"]["enum"] == risks
    assert spec["policy"]["properties"]["excludeOperations"]["items"]["enum"] == list(OPERATION_KINDS)
    assert status["changesByKind"]["items"]["properties"]["operation"]["enum"] == list(OPERATION_KINDS)
    assert status["changesByRisk"]["items"]["properties"]["risk"]["enum"] == risks
    assert status["maxRisk"]["enum"] == [*risks, ""]
    assert status["phase"]["enum"] == [p.value for p in Phase]


def test_published_defaults_are_the_types_defaults_and_from_resource_reads_them():
    policy = committed_schema()["properties"]["spec"]["properties"]["policy"]["properties"]
    defaults = PolicySpec()
    assert (
        policy["lockTimeout"]["default"],
        policy["driftCheckInterval"]["default"],
        policy["dryRun"]["default"],
    ) == (defaults.lock_timeout, defaults.drift_check_interval, defaults.dry_run)
    doc = generate(Schema(), name="x", namespace="ns", secret="db")
    del doc["spec"]["policy"]
    manifest = from_resource(doc)
    assert manifest.options.lock_timeout_ms == 2000 and manifest.drift_check_seconds == 300
    assert manifest.options.max_risk_level is Risk.MEDIUM and manifest.secret_key == "dsn"


def test_shop_manifest_validates_against_the_generated_schema():
    doc = generate(
        load_models(SHOP), name="shop", namespace="shop", secret="shop-db", promotion_after="shop-staging"
    )
    generated = jsonschema.Draft7Validator(strict_schema(crdgen.open_api_schema()))
    assert [e.message for e in generated.iter_errors(doc)] == []
    assert validate(doc) == []


def test_every_type_a_model_may_use_is_a_type_a_manifest_may_carry(tmp_path: Path):
    """The CRD's type pattern is generated from dataflow.types; it used to omit INET, CIDR, TIMETZ, TSVECTOR."""
    models = tmp_path / "models.py"
    models.write_text(
        "from dataflow import DataFlow, Field\ndb = DataFlow()\n\n@db.model\nclass Host:\n"
        "    addr: str = Field(db_type='inet')\n    net: str = Field(db_type='cidr')\n"
        "    seen: str = Field(db_type='time with time zone')\n"
        "    doc: str = Field(db_type='tsvector')\n"
    )
    doc = generate(load_models(models), name="hosts", namespace="default", secret="db")
    assert validate(doc) == []
    assert {c["type"] for c in doc["spec"]["tables"][0]["columns"]} >= {"INET", "CIDR", "TIMETZ", "TSVECTOR"}


def test_semantic_problems_leaves_what_the_schema_says_to_the_schema():
    """An unknown type is the CRD pattern's finding (one message), not also a semantic one."""
    table = {"name": "t", "columns": [{"name": "a", "type": "SERIAL"}]}
    assert semantic_problems([table]) == []
    doc = generate(Schema(), name="x", namespace="ns", secret="db")
    doc["spec"]["tables"] = [table]
    problems = validate(doc)
    assert len(problems) == 1 and problems[0].startswith(
        "spec.tables[0].columns[0].type: 'SERIAL' does not match"
    )


def test_docs_example_is_a_valid_canonical_schema():
    text = (ROOT / "docs" / "canonical-schema.md").read_text()
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    doc = generate(Schema(), name="x", namespace="ns", secret="db")
    doc["spec"]["tables"] = example["tables"]
    assert validate(doc) == []
    assert Schema.from_dict(example).table("user").column("id").identity == "BY DEFAULT"
