"""The `dataflow` command: manifests, plan, apply, history; exit codes 0 / 1 / 2."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop" / "models.py"


async def dataflow_cli(*args: str, stdin: bytes | None = None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    env.pop("DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dataflow.cli",
        *args,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate(stdin or b"")
    return proc.returncode, out.decode()


def models_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "models.py"
    path.write_text(
        "from datetime import datetime\nfrom dataflow import DataFlow, Field\n\ndb = DataFlow()\n\n"
        + textwrap.dedent(body)
    )
    return path


async def test_plan_and_apply_a_models_file(dsn: str, conn: asyncpg.Connection, tmp_path: Path) -> None:
    models = models_file(
        tmp_path,
        """
        @db.model
        class User:
            name: str
            email: str = Field(unique=True)
    """,
    )
    code, out = await dataflow_cli("plan", str(models), "--database-url", dsn)
    assert code == 0 and "CREATE_TABLE" in out and 'CREATE TABLE "public"."user"' in out
    assert await conn.fetchval("SELECT to_regclass('public.user')") is None

    code, out = await dataflow_cli("apply", str(models), "--database-url", dsn)  # stdin is no terminal: "no"
    assert code == 1 and "answering no" in out

    code, out = await dataflow_cli("apply", str(models), "--auto-confirm", "--database-url", dsn)
    assert code == 0 and "Applied" in out
    code, out = await dataflow_cli("apply", str(models), "--auto-confirm", "--database-url", dsn)
    assert code == 0 and "InSync" in out

    models.write_text(models.read_text().replace("    email: str = Field(unique=True)\n", ""))
    code, out = await dataflow_cli(
        "apply", str(models), "--auto-confirm", "--max-risk", "MEDIUM", "--database-url", dsn
    )
    assert code == 1 and "exceeds max_risk_level MEDIUM" in out
    code, out = await dataflow_cli("history", "--database-url", dsn)
    assert code == 0 and "refused" in out and "applied" in out


async def test_bad_database_url_is_exit_2_without_the_password(tmp_path: Path) -> None:
    models = models_file(
        tmp_path,
        """
        @db.model
        class User:
            name: str
    """,
    )
    code, out = await dataflow_cli(
        "plan", str(models), "--database-url", "postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere"
    )
    assert code == 2 and "error" in out and "s3cret-pw" not in out


async def test_manifest_generate_validate_and_apply(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    target = tmp_path / "shop.yaml"
    code, out = await dataflow_cli(
        "manifest",
        "generate",
        str(SHOP),
        "--name",
        "shop",
        "--namespace",
        "prod",
        "--secret",
        "shop-db",
        "-o",
        str(target),
    )
    assert code == 0, out
    doc = yaml.safe_load(target.read_text())
    assert doc["kind"] == "DataFlowSchema" and doc["spec"]["database"]["secretRef"] == {
        "name": "shop-db",
        "key": "dsn",
    }
    assert [t["name"] for t in doc["spec"]["tables"]] == ["order", "user"]
    assert "postgresql://" not in target.read_text()
    again = tmp_path / "again.yaml"
    await dataflow_cli(
        "manifest",
        "generate",
        str(SHOP),
        "--name",
        "shop",
        "--namespace",
        "prod",
        "--secret",
        "shop-db",
        "-o",
        str(again),
    )
    assert again.read_text() == target.read_text()  # stable output: minimal Git diffs

    code, out = await dataflow_cli("manifest", "validate", str(target))
    assert code == 0 and "valid" in out

    code, out = await dataflow_cli("plan", "-f", str(target), "--format", "markdown", "--database-url", dsn)
    assert (
        code == 0
        and out.startswith("### DataFlow plan for prod/shop: SAFE")
        and "| order | CREATE_TABLE |" in out
    )
    code, out = await dataflow_cli("plan", "-f", str(target), "--format", "json", "--database-url", dsn)
    plan = json.loads(out)
    assert plan["safetyLevel"] == "SAFE" and len(plan["planHash"]) == 12

    code, out = await dataflow_cli("apply", "-f", str(target), "--database-url", dsn)
    assert code == 0 and "Applied" in out
    assert (
        await conn.fetchval("SELECT owner FROM dataflow_owned_tables WHERE table_name = 'order'")
        == "k8s:prod/shop"
    )

    # a HIGH change is refused until that exact plan is approved
    doc["spec"]["tables"][0]["columns"] = [
        c for c in doc["spec"]["tables"][0]["columns"] if c["name"] != "metadata"
    ]
    order = doc["spec"]["tables"][0]
    order["indexes"] = [i for i in order["indexes"] if "metadata" not in i["columns"]]
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, out = await dataflow_cli("apply", "-f", str(target), "--database-url", dsn)
    assert code == 1 and "approve this exact plan with" in out
    plan_hash = out.split("--approve ")[1].split()[0]
    code, out = await dataflow_cli("apply", "-f", str(target), "--approve", "0" * 12, "--database-url", dsn)
    assert code == 1
    code, out = await dataflow_cli("apply", "-f", str(target), "--approve", plan_hash, "--database-url", dsn)
    assert code == 0 and "Applied" in out


async def test_manifest_validate_names_fields(tmp_path: Path) -> None:
    bad = {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": "x", "namespace": "n"},
        "spec": {
            "database": {"secretRef": {"name": "s"}},
            "tables": [
                {
                    "name": "a",
                    "columns": [{"name": "id", "type": "BIGINT"}, {"name": "id", "type": "BIGINT"}],
                    "foreignKeys": [
                        {"name": "a_b_fkey", "columns": ["id"], "refTable": "b", "refColumns": ["id"]}
                    ],
                    "indexes": [{"name": "a_idx", "columns": ["id"], "where": "1; DROP TABLE a"}],
                },
            ],
        },
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    code, out = await dataflow_cli("manifest", "validate", str(path))
    assert code == 2
    assert "spec.tables[0].columns[1].name: duplicate column 'id'" in out
    assert "spec.tables[0].foreignKeys[0].refTable: dangling foreign key: no table 'b'" in out
    assert "spec.tables[0].indexes[0].where: bad SQL expression" in out

    bad["spec"]["tables"][0]["columns"] = [{"name": "id", "type": "BIGNUM"}]
    bad["spec"]["database"]["dsn"] = "postgresql://u:p@h/d"
    path.write_text(yaml.safe_dump(bad))
    code, out = await dataflow_cli("manifest", "validate", str(path))
    assert code == 2 and "spec.database: Additional properties are not allowed ('dsn' was unexpected)" in out
    assert "spec.tables[0].columns[0].type" in out


def test_committed_gitops_manifests_match_the_models() -> None:
    """examples/gitops/manifests are `dataflow manifest generate` output of examples/shop/models.py."""
    from dataflow.manifest import dump, generate, load_models

    schema = load_models(SHOP)
    base = ROOT / "examples" / "gitops" / "manifests"
    staging = generate(schema, name="shop-staging", namespace="shop", secret="shop-staging-db")
    production = generate(
        schema,
        name="shop-production",
        namespace="shop",
        secret="shop-production-db",
        promotion_after="shop-staging",
    )
    assert (base / "staging" / "shop.yaml").read_text() == dump(staging)
    assert (base / "production" / "shop.yaml").read_text() == dump(production)
