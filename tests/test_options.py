"""One options type: every source maps onto ``MigrationOptions`` in one place, and it reaches the executor."""

from __future__ import annotations

import asyncio
import inspect
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dataflow import DataFlow
from dataflow.dataflow import IDENTITY_CHECKS
from dataflow.errors import SchemaError
from dataflow.executor import execute_migration
from dataflow.ledger import Ledger
from dataflow.manifest import from_resource
from dataflow.operations import Assessment, Change, Operation, Risk, Step
from dataflow.options import MigrationOptions
from dataflow.plan import Migration
from tests.helpers import dataflow
from tests.test_concurrency import ticket_gaining_a_column

README = Path(__file__).resolve().parents[1] / "README.md"
URL = "postgresql://u@127.0.0.1:1/d"  # never connected to


def auto_migrate_defaults(**given: Any) -> dict[str, Any]:
    """``auto_migrate``'s keyword arguments: its own defaults (the contract), overridden by ``given``."""
    params = inspect.signature(DataFlow.auto_migrate).parameters
    return {name: p.default for name, p in params.items() if name != "self"} | given


def for_auto_migrate(config: dict[str, Any] | None = None, **given: Any) -> MigrationOptions:
    return MigrationOptions.from_config(config or {}).for_auto_migrate(**auto_migrate_defaults(**given))


def manifest_options(policy: dict[str, Any], annotations: dict[str, str] | None = None) -> MigrationOptions:
    doc = {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": "shop", "namespace": "prod", "annotations": annotations or {}},
        "spec": {
            "database": {"secretRef": {"name": "shop-db"}},
            "policy": policy,
            "tables": [{"name": "item", "primaryKey": ["id"], "columns": [{"name": "id", "type": "BIGINT"}]}],
        },
    }
    return from_resource(doc).options


# each source maps onto the one type -------------------------------------------------------------
def test_readme_lists_exactly_the_config_keys() -> None:
    text = README.read_text()
    sentence = re.search(r"`migration_config` keys:(.*?)\. Each is", text, re.DOTALL)
    assert sentence is not None, "README.md no longer lists the migration_config keys"
    documented = set(re.findall(r"`(\w+)`", sentence.group(1)))
    assert documented == set(MigrationOptions.config_keys()) | set(IDENTITY_CHECKS)


def test_auto_migrate_arguments_are_exactly_those_for_auto_migrate_maps() -> None:
    library = [n for n in inspect.signature(DataFlow.auto_migrate).parameters if n != "self"]
    mapped = [n for n in inspect.signature(MigrationOptions.for_auto_migrate).parameters if n != "self"]
    assert library == mapped and len(library) == 23


def test_the_same_intent_gives_the_same_options_from_every_source() -> None:
    config = MigrationOptions.from_config(
        {"max_risk_level": "high", "lock_timeout_ms": 2000, "allowed_functions": ["dblink"]}
    )
    manifest = manifest_options({"maxRiskLevel": "HIGH", "lockTimeout": "2s", "allowedFunctions": ["dblink"]})
    library = for_auto_migrate(
        {"lock_timeout_ms": 2000, "allowed_functions": ["dblink"]}, interactive=False, max_risk_level="HIGH"
    )
    assert config == manifest == library
    assert config.max_risk_level is Risk.HIGH and config.allowed_functions == frozenset({"dblink"})


def test_migration_timeout_bounds_both_the_retries_and_the_lease_wait() -> None:
    options = MigrationOptions.from_config({"migration_timeout": 7})
    assert (options.migration_timeout_s, options.lease_timeout_s) == (7.0, 7.0)
    assert for_auto_migrate({"migration_timeout": 7}, timeout=2).lease_timeout_s == 2.0
    assert for_auto_migrate({"migration_timeout": 7}, timeout=0).lease_timeout_s == 0.0  # 0 means do not wait


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"create_backup": False}, {"backup": False}),
        ({"backup_before_migration": False}, {"backup": False}),
        ({"create_backup": True, "backup_before_migration": True}, {"backup": True}),
        ({"rollback_on_error": False}, {"rollback_on_error": False}),
        ({"rollback_on_failure": False}, {"rollback_on_error": False}),
        ({"safety_analysis": False}, {"show_safety_analysis": False}),
        ({"safety_check": False}, {"show_safety_analysis": False}),
    ],
)
def test_aliases_name_one_option(given: dict[str, Any], expected: dict[str, Any]) -> None:
    options = for_auto_migrate(interactive=False, **given)
    assert {k: getattr(options, k) for k in expected} == expected
    assert options == replace(for_auto_migrate(interactive=False), **expected)


def test_config_values_hold_unless_an_argument_overrides_them() -> None:
    config = {"backup_before_migration": False, "rollback_on_error": False}
    assert (for_auto_migrate(config).backup, for_auto_migrate(config).rollback_on_error) == (False, False)
    assert for_auto_migrate(config, create_backup=True, rollback_on_failure=True).backup is True
    assert for_auto_migrate(config, create_backup=True, rollback_on_failure=True).rollback_on_error is True


@pytest.mark.parametrize(
    ("given", "confirm", "risk"),
    [
        ({}, True, Risk.HIGH),  # a person confirms: they decide
        ({"auto_confirm": True}, False, Risk.SAFE),  # unattended: the config's level
        ({"interactive": False}, False, Risk.SAFE),
        ({"require_confirmation": False}, False, Risk.SAFE),
        ({"dry_run": True}, False, Risk.SAFE),
        ({"max_risk_level": "medium"}, True, Risk.MEDIUM),  # an explicit level always wins
        ({"auto_confirm": True, "max_risk_level": "HIGH"}, False, Risk.HIGH),
    ],
)
def test_who_confirms_sets_the_default_risk(given: dict[str, Any], confirm: bool, risk: Risk) -> None:
    options = for_auto_migrate({"max_risk_level": "SAFE"}, **given)
    assert (options.confirm, options.max_risk_level) == (confirm, risk)


def test_without_config_an_unattended_run_allows_medium() -> None:
    assert for_auto_migrate(auto_confirm=True).max_risk_level is Risk.MEDIUM


def test_manifest_policy_and_cli_overrides() -> None:
    options = manifest_options(
        {
            "maxRiskLevel": "SAFE",
            "includeTables": ["item"],
            "excludeOperations": ["DROP_TABLE"],
            "dryRun": True,
            "statementTimeout": "1m",
        },
        {"dataflow.dev/approved-plan": "abc123def456"},
    )
    assert options == MigrationOptions(
        max_risk_level=Risk.SAFE,
        include_tables=("item",),
        exclude_operations=("DROP_TABLE",),
        dry_run=True,
        approved_plan="abc123def456",
        lock_timeout_ms=2000,
        statement_timeout_ms=60_000,
    )
    overridden = options.with_cli_overrides("HIGH", "0123456789ab")
    assert (overridden.max_risk_level, overridden.approved_plan) == (Risk.HIGH, "0123456789ab")
    assert options.with_cli_overrides(None, None) == options
    assert manifest_options({"includeTables": []}).include_tables is None  # empty: every table


# invalid values name the field as their source spells it ----------------------------------------
@pytest.mark.parametrize(
    ("build", "field"),
    [
        (
            lambda: MigrationOptions.from_config({"lock_timeout_ms": "500"}),
            "migration_config.lock_timeout_ms",
        ),
        (
            lambda: MigrationOptions.from_config({"migration_timeout": -1}),
            "migration_config.migration_timeout",
        ),
        (
            lambda: MigrationOptions.from_config({"allowed_functions": "dblink"}),
            "migration_config.allowed_functions",
        ),
        (lambda: for_auto_migrate(timeout=-5), "timeout"),
        (lambda: for_auto_migrate(create_backup="yes"), "create_backup"),
        (lambda: for_auto_migrate(rollback_on_failure=0), "rollback_on_failure"),
        (lambda: for_auto_migrate(max_risk_level="EXTREME"), "max_risk_level"),
        (lambda: for_auto_migrate(auto_confirm="yes"), "auto_confirm"),
        (lambda: for_auto_migrate(safety_check="yes"), "safety_check"),
        (lambda: for_auto_migrate(show_sql="no"), "show_sql"),
        (lambda: for_auto_migrate(include_tables="item"), "include_tables"),
        (lambda: for_auto_migrate(exclude_operations=["DROP_EVERYTHING"]), "exclude_operations"),
        (
            lambda: for_auto_migrate(create_backup=True, backup_before_migration=False),
            "backup_before_migration",
        ),
        (lambda: for_auto_migrate(rollback_on_error=True, rollback_on_failure=False), "rollback_on_failure"),
        (lambda: MigrationOptions().with_cli_overrides("EXTREME", None), "--max-risk"),
        (lambda: MigrationOptions(lock_timeout_ms=-1), "lock_timeout_ms"),
        (lambda: MigrationOptions(batch_size=0), "batch_size"),
        (lambda: MigrationOptions(backoff_base_s=0), "backoff_base_s"),
        (lambda: MigrationOptions(lease_ttl_s=0.0), "lease_ttl_s"),
        (lambda: MigrationOptions(strategy="fast"), "strategy"),
        (lambda: MigrationOptions(allowed_functions=frozenset({""})), "allowed_functions"),
    ],
)
def test_invalid_values_name_the_field(build: Any, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        build()
    assert info.value.field == field
    assert "\n" not in str(info.value)


async def test_contradicting_aliases_stop_auto_migrate_before_anything_runs(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = dataflow(dsn)

    @db.model
    class Item:
        name: str

    with pytest.raises(SchemaError) as info:
        await db.auto_migrate(auto_confirm=True, create_backup=False, backup_before_migration=True)
    assert info.value.field == "backup_before_migration" and "create_backup" in str(info.value)
    assert await conn.fetchval("SELECT to_regclass('public.item')") is None


# the options reach the executor ------------------------------------------------------------------
def settings_seen(*transactional: bool) -> Migration:
    """A hand-built migration whose steps record the session's timeouts as the executor set them."""
    steps = [Step("CREATE TABLE seen (step int, lock_timeout text, statement_timeout text)")]
    steps += [
        Step(
            f"INSERT INTO seen VALUES ({i}, current_setting('lock_timeout'), "
            f"current_setting('statement_timeout'))",
            transactional=t,
        )
        for i, t in enumerate(transactional)
    ]
    op = Operation(Change("ADD_COLUMN", "seen"), Assessment(Risk.SAFE, "test", "none", 0), steps, ())
    return Migration("migration_20250101_000000", "hand-built", [op], "schema-hash", "c")


async def test_config_timeouts_are_the_ones_the_executor_sets(conn: asyncpg.Connection) -> None:
    db = DataFlow(URL, migration_config={"lock_timeout_ms": 1234, "statement_timeout_ms": 45_678})
    ledger = Ledger("public")
    await ledger.ensure(conn)
    await execute_migration(
        conn, ledger, settings_seen(True, False), "test", "tester", db.options, claim=[], release=[]
    )
    rows = await conn.fetch("SELECT lock_timeout, statement_timeout FROM seen ORDER BY step")
    assert [tuple(r) for r in rows] == [("1234ms", "45678ms")] * 2  # in a transaction and on its own
    assert await conn.fetchval("SHOW lock_timeout") == "0"  # and the session is reset afterwards


async def test_config_attempts_and_lock_timeout_bound_a_blocked_auto_migrate(
    dsn: str, conn: asyncpg.Connection
) -> None:
    db = await ticket_gaining_a_column(dsn, lock_timeout_ms=50, max_attempts=2)
    blocker = await asyncpg.connect(dsn)
    try:
        await blocker.execute("BEGIN")
        await blocker.execute("LOCK TABLE ticket IN ACCESS SHARE MODE")
        success, _ = await asyncio.wait_for(db.auto_migrate(auto_confirm=True), timeout=20)
    finally:
        await blocker.close()
    assert not success
    assert "lock timeout after 2 attempts" in db.last_result.reason, db.last_result.reason
    assert await conn.fetchval("SELECT attempts FROM dataflow_migrations WHERE status = 'failed'") == 2
