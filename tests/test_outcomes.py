"""Typed outcomes and reasons, the one backoff policy, and the operator's startup settings."""

from __future__ import annotations

import ast
import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from dataflow.errors import MigrationFailed, SchemaError
from dataflow.executor import _Retrying
from dataflow.k8s.operator import OperatorConfig, drift_tick_due
from dataflow.k8s.reasons import EventType, Phase, Reason, classify
from dataflow.k8s.reconciler import reconcile_resource
from dataflow.manifest import APPROVAL_ANNOTATION, Manifest, from_resource
from dataflow.options import MigrationOptions
from dataflow.reconcile import Outcome, Refusal, reconcile
from dataflow.retry import Backoff

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "operator" / "dataflow" / "k8s"


def body(*columns: dict[str, Any], **policy: Any) -> dict[str, Any]:
    table = {
        "name": "person",
        "primaryKey": ["id"],
        "columns": [{"name": "id", "type": "BIGINT", "nullable": False, "identity": "BY DEFAULT"}, *columns],
    }
    return {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": "shop", "namespace": "prod", "generation": 1},
        "spec": {
            "database": {"secretRef": {"name": "shop-db", "key": "dsn"}},
            "policy": {"maxRiskLevel": "MEDIUM", **policy},
            "tables": [table],
        },
    }


NOTE = {"name": "note", "type": "TEXT"}


async def apply(conn: asyncpg.Connection, dsn: str, manifest: Manifest, confirm: Any = None) -> Any:
    return await reconcile(conn, dsn, manifest.schema, manifest.owner, manifest.options, confirm)


@pytest.fixture
async def with_note(conn: asyncpg.Connection, dsn: str) -> None:
    """``person`` with a populated ``note`` column: dropping it is HIGH and loses data."""
    result = await apply(conn, dsn, from_resource(body(NOTE)))
    assert result.outcome is Outcome.APPLIED, result.reason
    await conn.execute("INSERT INTO person (note) VALUES ('keep me')")


# the engine's typed results --------------------------------------------------------------------
async def test_risk_refusal_is_typed_and_names_the_plan(
    conn: asyncpg.Connection, dsn: str, with_note: None
) -> None:
    result = await apply(conn, dsn, from_resource(body()))
    assert result.outcome is Outcome.REFUSED and result.refusal is Refusal.RISK_ABOVE_POLICY
    assert (
        result.needs_approval
        and result.plan_hash == result.migration.plan_hash
        and result.approved_plan is None
    )


async def test_approval_for_another_plan_is_a_mismatch(
    conn: asyncpg.Connection, dsn: str, with_note: None
) -> None:
    manifest = from_resource(
        {
            **body(),
            "metadata": {
                "name": "shop",
                "namespace": "prod",
                "annotations": {APPROVAL_ANNOTATION: "0123456789ab"},
            },
        }
    )
    result = await apply(conn, dsn, manifest)
    assert result.refusal is Refusal.APPROVAL_MISMATCH and result.approved_plan == "0123456789ab"
    assert (
        result.needs_approval
        and "does not match" in result.reason
        and "exceeds max_risk_level" in result.reason
    )


async def test_data_loss_protection_is_its_own_kind(
    conn: asyncpg.Connection, dsn: str, with_note: None
) -> None:
    manifest = from_resource(body(maxRiskLevel="HIGH"))
    manifest = replace(manifest, options=replace(manifest.options, data_loss_protection=True))
    result = await apply(conn, dsn, manifest)
    assert result.outcome is Outcome.REFUSED and result.refusal is Refusal.DATA_LOSS_PROTECTION


async def test_plan_changed_under_a_confirmed_preview_is_typed(conn: asyncpg.Connection, dsn: str) -> None:
    await apply(conn, dsn, from_resource(body()))
    manifest = from_resource(body(NOTE))

    async def confirm_while_someone_adds_a_column(_: object) -> bool:
        await conn.execute("ALTER TABLE person ADD COLUMN note TEXT NOT NULL DEFAULT ''")
        return True

    result = await apply(conn, dsn, manifest, confirm_while_someone_adds_a_column)
    assert result.outcome is Outcome.REFUSED and result.refusal is Refusal.PLAN_CHANGED
    assert not result.needs_approval and result.approved_plan not in (None, result.plan_hash)
    assert classify(result.outcome, result.refusal) == classify(Outcome.REFUSED, Refusal.PLAN_CHANGED)
    assert classify(result.outcome, result.refusal).phase is Phase.FAILED


async def test_other_outcomes_carry_no_refusal(conn: asyncpg.Connection, dsn: str) -> None:
    manifest = from_resource(body())
    applied = await apply(conn, dsn, manifest)
    in_sync = await apply(conn, dsn, manifest)
    assert (applied.outcome, in_sync.outcome) == (Outcome.APPLIED, Outcome.IN_SYNC)
    assert applied.refusal is None and in_sync.refusal is None


# the Kubernetes layer --------------------------------------------------------------------------
def test_every_outcome_and_refusal_has_a_phase_and_reason() -> None:
    for outcome in Outcome:
        kinds = list(Refusal) if outcome is Outcome.REFUSED else [None]
        for kind in kinds:
            c = classify(outcome, kind)
            assert isinstance(c.phase, Phase) and isinstance(c.reason, Reason), (outcome, kind)
            assert c.event is None or isinstance(c.event, EventType)
    with pytest.raises(ValueError):
        classify(Outcome.REFUSED)
    needing_approval = [k for k in Refusal if classify(Outcome.REFUSED, k).phase is Phase.AWAITING_APPROVAL]
    assert needing_approval == [
        Refusal.RISK_ABOVE_POLICY,
        Refusal.DATA_LOSS_PROTECTION,
        Refusal.APPROVAL_MISMATCH,
    ]


def test_phases_are_the_crds_phases() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "dataflowschema.yaml").read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["phase"]["enum"]) == {p.value for p in Phase}


def _reason_text_matches(source: str) -> list[str]:
    """`x in <...reason...>` / `== <...reason...>` comparisons against a string: deciding by message text."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        for op, right in zip(node.ops, node.comparators, strict=True):
            sides = (node.left, right)
            textual = any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides)
            about_reason = any("reason" in ast.unparse(s).lower() for s in sides)
            if textual and about_reason and isinstance(op, (ast.In, ast.NotIn, ast.Eq, ast.NotEq)):
                found.append(ast.unparse(node))
    return found


def test_the_kubernetes_layer_never_decides_by_reason_text() -> None:
    assert _reason_text_matches(
        'if result.outcome is X and "changed since this plan" not in result.reason: pass'
    )
    for path in sorted(K8S.glob("*.py")):
        source = path.read_text()
        assert _reason_text_matches(source) == [], path.name
        assert "in result.reason" not in source and "in reason" not in source, path.name


async def test_reaction_uses_the_typed_constants(conn: asyncpg.Connection, dsn: str, with_note: None) -> None:
    async def secret(*_: str) -> str:
        return dsn

    stale = body()
    stale["metadata"]["annotations"] = {APPROVAL_ANNOTATION: "0123456789ab"}
    reaction = await reconcile_resource(stale, read_secret=secret)
    assert reaction.status["phase"] == Phase.AWAITING_APPROVAL and not reaction.retry
    assert {c["reason"] for c in reaction.status["conditions"]} == {Reason.APPROVAL_REQUIRED}
    assert "exceed maxRiskLevel MEDIUM" in reaction.status["verdict"]
    assert "The approval for plan 0123456789ab does not match this plan." in reaction.status["verdict"]
    kind, reason, message = reaction.event
    assert (kind, reason) == (EventType.WARNING, Reason.APPROVAL_REQUIRED) and "kubectl annotate" in message


# one backoff policy ----------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_ceiling_with_jitter_in_bounds() -> None:
    policy = Backoff(base_s=0.1, max_s=1.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.delay(3, rand=lambda: 0.0) == pytest.approx(0.2)  # lowest: half the ceiling
    assert policy.delay(3, rand=lambda: 0.999) == pytest.approx(0.6, rel=1e-2)  # highest: 1.5 times
    assert policy.delay(10_000, rand=lambda: 0.5) == pytest.approx(
        1.0
    )  # huge attempt numbers do not overflow
    rolls = iter([0.1, 0.9, 0.5])
    delays = [policy.delay(2, rand=lambda: next(rolls)) for _ in range(3)]
    assert len(set(delays)) == 3 and all(0.1 <= d < 0.3 for d in delays)  # jitter spreads colliding appliers
    with pytest.raises(ValueError):
        Backoff(base_s=0, max_s=1)


async def test_lock_timeouts_retry_with_cleanup_until_attempts_run_out() -> None:
    retrying = _Retrying(MigrationOptions(max_attempts=4, backoff_base_s=0.001, backoff_max_s=0.002))
    calls: list[str] = []

    async def action() -> None:
        calls.append("try")
        raise asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout")

    async def cleanup() -> None:
        calls.append("cleanup")

    with pytest.raises(MigrationFailed, match="lock timeout after 4 attempts: canceling statement"):
        await retrying.run("step 1/1", action, cleanup)
    assert calls == ["try", "cleanup"] * 3 + ["try"] and retrying.attempts == 4


async def test_other_errors_clean_up_once_and_are_not_retried() -> None:
    retrying = _Retrying(MigrationOptions(max_attempts=4, backoff_base_s=0.001))
    calls: list[str] = []

    async def action() -> None:
        calls.append("try")
        raise asyncpg.exceptions.UndefinedTableError("relation does not exist")

    async def cleanup() -> None:
        calls.append("cleanup")

    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
        await retrying.run("step 1/1", action, cleanup)
    assert calls == ["try", "cleanup"]


# the operator's settings -----------------------------------------------------------------------
def test_operator_settings_are_read_from_the_environment_given() -> None:
    assert OperatorConfig.from_env({}) == OperatorConfig()
    config = OperatorConfig.from_env(
        {"DATAFLOW_DRIFT_TICK": "0.5", "DATAFLOW_RETRY_BASE": "0.3", "DATAFLOW_LOG_LEVEL": "debug"}
    )
    assert config.drift_tick_s == 0.5 and config.retry.base_s == 0.3 and config.log_level == "DEBUG"
    assert config.retry.ceiling(1) == 0.3 and config.retry.ceiling(20) == 300.0
    sized = OperatorConfig.from_env({"DATAFLOW_POOL_MAX": "3", "DATAFLOW_METRICS_PORT": "0"})
    assert sized.pool_max == 3 and sized.metrics_port == 0
    for name, value in [
        ("DATAFLOW_POOL_MAX", "0"),
        ("DATAFLOW_POOL_MAX", "five"),
        ("DATAFLOW_METRICS_PORT", "65536"),
        ("DATAFLOW_METRICS_PORT", "-1"),
        ("DATAFLOW_DRIFT_TICK", "soon"),
        ("DATAFLOW_RETRY_BASE", "0"),
        ("DATAFLOW_RETRY_BASE", "nan"),
        ("DATAFLOW_DRIFT_TICK", "-1"),
        ("DATAFLOW_LOG_LEVEL", "LOUD"),
    ]:
        with pytest.raises(SchemaError) as error:
            OperatorConfig.from_env({name: value})
        assert error.value.field == name


def test_drift_tick_is_kept_per_resource_memo() -> None:
    memo: dict[str, float] = {}
    assert drift_tick_due(memo, 30.0, now=100.0)  # the first tick acts
    assert not drift_tick_due(memo, 30.0, now=120.0)  # too soon
    assert drift_tick_due(memo, 30.0, now=130.0)
    assert drift_tick_due(memo, 0.0, now=130.0)  # a zero tick acts on every timer wake-up


def test_operator_module_reads_no_environment_at_import() -> None:
    tree = ast.parse((K8S / "operator.py").read_text())
    top_level = [
        n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    assert not any("os.environ" in ast.unparse(n) for n in top_level)
    assert asyncio.iscoroutinefunction(reconcile_resource)
