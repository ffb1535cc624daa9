"""A generated 1,000-table x 15-column DataFlowSchema end to end against the API server's real limits.

`dataflow manifest generate` writes it from models (bench/plan_speed.py's deterministic schema),
real kubectl applies it server-side to the emulator (which enforces the 1.5 MiB object, 256 KiB
annotation and 3 MiB request limits), real Kopf reconciles it onto real PostgreSQL. Then the stored
object must still fit with room to spare: Kopf keeps no copy of the spec, and status is a summary.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from kopf.testing import KopfRunner

from dataflow import manifest_size
from tests.kube import limits
from tests.kube.emulator import ApiServer, run_api_server
from tests.test_cli import dataflow_cli

ROOT = Path(__file__).resolve().parent.parent
NS = "prod"
NAME = "big"
RESOURCE = "dataflow.dev/v1alpha1/dataflowschemas"
TABLES, COLUMNS = 1000, 15
STATUS_BUDGET = 16 * 1024  # a summary, counts and hashes: not the plan, not the SQL
ANNOTATIONS_BUDGET = 16 * 1024  # the approval and Kopf's small markers: no copy of the spec


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ApiServer]:
    async with run_api_server(tmp_path / "kubeconfig") as server:
        server.load_crd(ROOT / "crds" / "dataflowschema.yaml")
        server.create("v1/namespaces", {"metadata": {"name": NS}})
        monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))
        yield server


@pytest.fixture
async def operator(api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KopfRunner]:
    """Real Kopf, as in tests/test_operator.py (entered and left in a worker thread)."""
    monkeypatch.setenv("DATAFLOW_DRIFT_TICK", "0")
    monkeypatch.setenv("DATAFLOW_RETRY_BASE", "0.3")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    runner = KopfRunner(["run", "--standalone", "--namespace", NS, "-m", "dataflow.k8s.operator"], timeout=60)
    await asyncio.to_thread(runner.__enter__)
    try:
        yield runner
    finally:
        leaving = asyncio.create_task(asyncio.to_thread(runner.__exit__, None, None, None))
        await asyncio.sleep(0.1)
        api.close_watches()
        await leaving
        root.handlers[:] = handlers
        root.setLevel(level)
    assert runner.exit_code == 0, runner.output


async def kubectl(api: ApiServer, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        *args,
        env={**os.environ, "KUBECONFIG": str(api.kubeconfig)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import sys

            sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "bench")!r}]
            from bench.plan_speed import build_spec, dataflow_models
            from dataflow import DataFlow

            db = DataFlow()
            for model in dataflow_models(build_spec({TABLES})):
                db.model(model)
            """
        )
    )
    return path


async def wait_for_phase(api: ApiServer, phase: str, timeout: float) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        obj = api.get(RESOURCE, NS, NAME) or {}
        if (obj.get("status") or {}).get("phase") == phase:
            return obj
        if asyncio.get_running_loop().time() > deadline:
            status = json.dumps(obj.get("status"))[:2000]
            refused = sorted(set(api.refusals))
            raise AssertionError(
                f"{NAME} never reached {phase}; the API server refused {refused}; status: {status}"
            )
        await asyncio.sleep(0.5)


async def test_a_generated_1000_table_spec_applies_within_the_api_server_limits(
    api: ApiServer, operator: KopfRunner, dsn: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "big.yaml"
    code, out = await dataflow_cli(
        "manifest", "generate", str(models_file(tmp_path)), "--name", NAME, "--namespace", NS,
        "--secret", "big-db", "-o", str(manifest),
    )  # fmt: skip
    assert code == 0, out
    assert "apply it with `kubectl apply --server-side`" in out  # too big for the last-applied copy
    doc = yaml.safe_load(manifest.read_text())
    tables = doc["spec"]["tables"]
    # every table has the generator's COLUMNS; some also an enum column and a commented one (bench breadth)
    assert len(tables) == TABLES and min(len(t["columns"]) for t in tables) == COLUMNS
    all_columns = sum(len(t["columns"]) for t in tables)
    assert TABLES * COLUMNS < all_columns <= TABLES * (COLUMNS + 2)
    spec_bytes = manifest_size.stored_bytes(doc)
    assert limits.TOTAL_ANNOTATION_SIZE_LIMIT < spec_bytes <= manifest_size.DEFAULT_MAX_BYTES

    api.create(
        "v1/secrets",
        {"metadata": {"name": "big-db"}, "data": {"dsn": base64.b64encode(dsn.encode()).decode()}},
        namespace=NS,
    )
    applied = await kubectl(api, "apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert "serverside-applied" in applied

    stored = await wait_for_phase(api, "Applied", timeout=240)

    conn = await asyncpg.connect(dsn)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'bench_t%'"
        )
        columns = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns c JOIN pg_tables t"
            " ON t.schemaname = c.table_schema AND t.tablename = c.table_name"  # tables, not the bench's views
            " WHERE c.table_schema = 'public' AND c.table_name LIKE 'bench_t%'"
        )
    finally:
        await conn.close()
    assert (count, columns) == (TABLES, all_columns)

    await asyncio.sleep(2)  # let the operator's follow-up writes (conditions, Kopf markers) land
    stored = api.get(RESOURCE, NS, NAME) or {}
    status_bytes = limits.stored_size({"status": stored.get("status")})
    annotations = (stored.get("metadata") or {}).get("annotations") or {}
    report = {
        "object": limits.stored_size(stored),
        "spec": spec_bytes,
        "annotations": limits.annotations_size(stored),
        "annotation keys": sorted(annotations),
        "status": status_bytes,
        "status keys": sorted(stored.get("status") or {}),
    }
    print(json.dumps(report))
    assert limits.stored_size(stored) <= limits.MAX_STORED_OBJECT_BYTES, report
    assert limits.annotations_size(stored) <= ANNOTATIONS_BUDGET, report  # Kopf keeps no copy of the spec
    assert status_bytes <= STATUS_BUDGET, report  # a summary, not the plan's SQL
    assert api.warnings == []  # the operator writes no field the CRD does not declare

    # The spec is owned by its applier alone: applying again (as Flux does) is a no-op, not a conflict.
    owners = {(e["manager"], e["operation"]) for e in stored["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in owners
    again = await kubectl(api, "apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert "serverside-applied" in again
    after = api.get(RESOURCE, NS, NAME) or {}
    assert after["metadata"]["generation"] == stored["metadata"]["generation"]
