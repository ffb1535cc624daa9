"""`dataflow manifest generate` against the API server's limits: refuse, warn, or split (dataflow.manifest_size)."""

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataflow import manifest_size
from dataflow.errors import DataFlowError
from dataflow.manifest import validate
from tests.kube import limits
from tests.test_cli import dataflow_cli

ROOT = Path(__file__).resolve().parent.parent


def linked_models(tmp_path: Path, groups: int, note_length: int = 0) -> Path:
    """``groups`` pairs of tables, each child referencing its parent; no links between pairs."""
    path = tmp_path / "linked.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from dataflow import DataFlow, Field

            db = DataFlow()
            for i in range({groups}):
                db.model(type(f"Parent{{i}}", (), {{
                    "__module__": __name__,
                    "__annotations__": {{"name": str, "notes": str}},
                    "notes": Field(default="{"n" * note_length}"),
                    "__dataflow__": {{"table": f"parent_{{i:03d}}"}},
                }}))
                db.model(type(f"Child{{i}}", (), {{
                    "__module__": __name__,
                    "__annotations__": {{"parent_id": int}},
                    "parent_id": Field(references=f"parent_{{i:03d}}.id"),
                    "__dataflow__": {{"table": f"child_{{i:03d}}"}},
                }}))
            """
        )
    )
    return path


def generate_args(models: Path, *extra: str) -> list[str]:
    return [
        "manifest",
        "generate",
        str(models),
        "--name",
        "shop",
        "--namespace",
        "prod",
        "--secret",
        "db",
        *extra,
    ]


def table(name: str, ref: str | None = None, pad: int = 0) -> dict[str, Any]:
    columns = [{"name": "id", "type": "BIGINT"}, {"name": "x" * max(pad, 1), "type": "TEXT"}]
    fks = [{"name": f"{name}_fk", "columns": ["id"], "refTable": ref, "refColumns": ["id"]}] if ref else []
    return {"name": name, "columns": columns, **({"foreignKeys": fks} if fks else {})}


# --- the rules ------------------------------------------------------------------------------------


def test_limits_agree_with_the_emulated_api_server() -> None:
    assert manifest_size.MAX_OBJECT_BYTES == limits.MAX_STORED_OBJECT_BYTES == 1_572_864
    assert manifest_size.MAX_ANNOTATIONS_BYTES == limits.TOTAL_ANNOTATION_SIZE_LIMIT
    assert manifest_size.DEFAULT_MAX_BYTES == 1_572_864 - 65_536


def test_check_fits_names_the_size_and_the_limit() -> None:
    doc = {"metadata": {"name": "shop", "namespace": "prod"}, "spec": {"tables": ["x" * 1000]}}
    manifest_size.check_fits(doc, manifest_size.stored_bytes(doc))
    with pytest.raises(DataFlowError) as error:
        manifest_size.check_fits(doc, manifest_size.stored_bytes(doc) - 1)
    assert str(error.value).startswith(
        f"DataFlowSchema prod/shop is {manifest_size.stored_bytes(doc):,} bytes"
    )
    assert "--split" in str(error.value)


def test_client_side_apply_warning_at_the_annotation_limit() -> None:
    doc: dict[str, Any] = {"metadata": {"name": "shop"}, "spec": {"notes": ""}}
    room = manifest_size.MAX_ANNOTATIONS_BYTES - manifest_size.client_side_apply_bytes(doc)
    doc["spec"]["notes"] = "x" * room
    assert manifest_size.client_side_apply_warning(doc) is None
    doc["spec"]["notes"] += "x"
    warning = manifest_size.client_side_apply_warning(doc)
    assert warning is not None and "kubectl apply --server-side" in warning and "262,144" in warning


def test_split_keeps_linked_tables_together_in_order() -> None:
    tables = [table("a"), table("b"), table("c", ref="a"), table("d", pad=50), table("e", ref="d")]

    def part_bytes(part: list[Any]) -> int:
        return manifest_size.stored_bytes({"spec": {"tables": part}})

    parts = manifest_size.split_tables(tables, part_bytes, part_bytes(tables[:3]) + 2)
    names = [[t["name"] for t in part] for part in parts]
    assert names == [["a", "b", "c"], ["d", "e"]]
    assert all(part_bytes(part) <= part_bytes(tables[:3]) + 2 for part in parts)
    with pytest.raises(DataFlowError, match=r"cannot split: 2 tables linked by foreign keys \(d, e\)"):
        manifest_size.split_tables(tables, part_bytes, part_bytes(tables[3:]) - 1)


# --- the command ------------------------------------------------------------------------------------


async def test_generate_refuses_what_cannot_fit(tmp_path: Path) -> None:
    models = linked_models(tmp_path, groups=4, note_length=2000)
    code, out = await dataflow_cli(*generate_args(models, "--max-bytes", "10000"))
    [line] = out.strip().splitlines()
    assert code == 2 and line.startswith("error: DataFlowSchema prod/shop is ")
    assert "bytes as stored, over the limit of 10,000 (--max-bytes); use --split" in line
    code, out = await dataflow_cli(*generate_args(models, "--max-bytes", "2000000"))
    assert code == 2 and "--max-bytes: at most 1,572,864" in out


async def test_generate_refuses_at_the_real_limit(tmp_path: Path) -> None:
    models = linked_models(tmp_path, groups=800, note_length=2000)
    code, out = await dataflow_cli(*generate_args(models, "-o", str(tmp_path / "out.yaml")))
    assert code == 2 and not (tmp_path / "out.yaml").exists()
    assert (
        "over the limit of 1,507,328 (the API server's 1,572,864 less 65,536 for status and metadata)" in out
    )


async def test_generate_warns_when_only_server_side_apply_can_store_it(tmp_path: Path) -> None:
    models = linked_models(tmp_path, groups=150, note_length=2000)
    out_file = tmp_path / "shop.yaml"
    code, out = await dataflow_cli(*generate_args(models, "-o", str(out_file)))
    assert code == 0 and "warning: DataFlowSchema prod/shop needs" in out
    [warning] = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warning.endswith(
        "apply it with `kubectl apply --server-side` (Flux and Argo CD: server-side apply)"
    )
    doc = yaml.safe_load(out_file.read_text())
    assert validate(doc) == [] and len(doc["spec"]["tables"]) == 300
    small = linked_models(tmp_path, groups=2)
    code, out = await dataflow_cli(*generate_args(small))
    assert code == 0 and "warning" not in out


async def test_generate_split_spreads_tables_and_keeps_foreign_keys_whole(tmp_path: Path) -> None:
    models = linked_models(tmp_path, groups=12, note_length=1000)
    code, out = await dataflow_cli(
        *generate_args(models, "--max-bytes", "12000", "--split", "--promotion-after", "shop-staging")
    )
    assert code == 0, out
    docs = list(yaml.safe_load_all(out))
    assert len(docs) > 1
    assert [doc["metadata"]["name"] for doc in docs] == [f"shop-{i}" for i in range(1, len(docs) + 1)]
    assert [doc["spec"]["promotion"]["after"] for doc in docs] == [
        f"shop-staging-{i}" for i in range(1, len(docs) + 1)
    ]
    names = [t["name"] for doc in docs for t in doc["spec"]["tables"]]
    assert sorted(names) == sorted(
        [f"parent_{i:03d}" for i in range(12)] + [f"child_{i:03d}" for i in range(12)]
    )
    for doc in docs:
        assert validate(doc) == []  # no dangling foreign key: each child is with its parent
        assert manifest_size.stored_bytes(doc) <= 12000
        assert len(json.dumps(doc, separators=(",", ":"))) <= 12000
    whole = await dataflow_cli(*generate_args(models, "--split"))  # fits: one resource, its own name
    assert whole[0] == 0 and [d["metadata"]["name"] for d in yaml.safe_load_all(whole[1])] == ["shop"]
