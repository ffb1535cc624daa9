"""Issue 10, the config the docs show is read and honoured; ``timeout``, ``validate_after_migration`` with
``include_tables`` and ``require_explicit_confirm`` do what the docs say, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import textwrap
import time
from typing import Any

import asyncpg
import pytest

from dataflow import DataFlow
from dataflow.errors import SchemaError
from dataflow.ledger import Ledger
from dataflow.lock import MigrationLease
from dataflow.operations import Risk
from dataflow.reconcile import Outcome
from tests.helpers import dataflow, output
from tests.terminal import converse
from tests.test_options import for_auto_migrate

URL = "postgresql://u@127.0.0.1:1/d"  # never connected to
DOCS_CONFIG = {  # the docs' "Migration System Configuration" block, verbatim
    "dialect": "postgresql",
    "interactive": True,
    "safety_checks": True,
    "max_risk_level": "MEDIUM",
    "backup_before_migration": True,
    "rollback_on_error": True,
    "concurrent_access_protection": True,
    "migration_timeout": 300,
    "batch_size": 1000,
}


def gadget_model(db: DataFlow, *, with_note: bool) -> None:
    if with_note:

        class Gadget:
            name: str
            note: str | None = None

    else:

        class Gadget:  # type: ignore[no-redef]
            name: str

    db.model(Gadget)


async def create_gadget_with_rows(dsn: str) -> None:
    db = dataflow(dsn)
    gadget_model(db, with_note=True)
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO gadget (name, note) VALUES ('a', 'kept'), ('b', NULL)")
    finally:
        await conn.close()


async def columns(dsn: str, table: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            f"public.{table}",
        )
        return [r["attname"] for r in rows]
    finally:
        await conn.close()


# keys ------------------------------------------------------------------------------------------------
def test_the_docs_configuration_is_accepted_as_written() -> None:
    db = DataFlow(URL, migration_config=DOCS_CONFIG)
    assert db.options.dialect == "postgresql"
    assert db.options.max_risk_level is Risk.MEDIUM and db.options.confirm_ceiling is Risk.MEDIUM
    assert db.options.lease_timeout_s == 300.0 and db.options.concurrent_access_protection


@pytest.mark.parametrize("key", ["dialect_name", "monitor", "safety_check", "timeout"])
def test_an_unknown_key_is_an_error_naming_it(key: str) -> None:
    with pytest.raises(SchemaError) as info:
        DataFlow(URL, migration_config={**DOCS_CONFIG, key: True})
    assert info.value.field == f"migration_config.{key}"
    assert "unknown key" in str(info.value)


@pytest.mark.parametrize("dialect", ["mysql", "sqlite", "", 5])
def test_a_dialect_other_than_postgresql_is_an_error(dialect: Any) -> None:
    with pytest.raises(SchemaError) as info:
        DataFlow(URL, migration_config={"dialect": dialect})
    assert info.value.field == "migration_config.dialect"
    assert "postgresql" in str(info.value)


@pytest.mark.parametrize(
    "key", ["interactive", "safety_checks", "concurrent_access_protection", "performance_tracking"]
)
def test_flags_must_be_booleans(key: str) -> None:
    with pytest.raises(SchemaError) as info:
        DataFlow(URL, migration_config={key: "yes"})
    assert info.value.field == f"migration_config.{key}"


# interactive, safety_checks ----------------------------------------------------------------------------
async def test_config_interactive_false_applies_without_asking(dsn: str) -> None:
    db = dataflow(dsn, interactive=False)
    gadget_model(db, with_note=False)
    ok, applied = await db.auto_migrate()  # the docs' default call; nobody is asked
    assert ok and len(applied) == 1
    assert "Apply these changes?" not in output(db)
    assert await columns(dsn, "gadget") == ["id", "name"]


async def test_config_interactive_true_asks_and_a_non_terminal_answers_no(dsn: str) -> None:
    db = dataflow(dsn, interactive=True)
    gadget_model(db, with_note=False)
    ok, _ = await db.auto_migrate()
    assert not ok and db.last_result is not None and db.last_result.outcome is Outcome.DECLINED
    assert "stdin is not a terminal" in output(db)
    assert await columns(dsn, "gadget") == []


async def test_an_argument_overrides_the_config_interactive(dsn: str) -> None:
    db = dataflow(dsn, interactive=True)
    gadget_model(db, with_note=False)
    ok, _ = await db.auto_migrate(interactive=False)
    assert ok and await columns(dsn, "gadget") == ["id", "name"]


async def test_safety_checks_false_leaves_the_analysis_out_of_the_preview_but_policy_still_applies(
    dsn: str,
) -> None:
    await create_gadget_with_rows(dsn)
    quiet = dataflow(dsn, safety_checks=False, interactive=False)
    gadget_model(quiet, with_note=False)  # drops a column holding data: HIGH
    ok, _ = await quiet.auto_migrate()
    assert "Migration Safety Assessment" not in output(quiet)
    assert not ok and quiet.last_result is not None and quiet.last_result.outcome is Outcome.REFUSED
    assert await columns(dsn, "gadget") == ["id", "name", "note"]
    shown = dataflow(dsn, safety_checks=True, interactive=False)
    gadget_model(shown, with_note=False)
    await shown.auto_migrate(dry_run=True)
    assert "Migration Safety Assessment" in output(shown)


def test_safety_checks_is_the_default_of_both_argument_aliases() -> None:
    assert not for_auto_migrate({"safety_checks": False}).show_safety_analysis
    assert for_auto_migrate({"safety_checks": False}, safety_check=True).show_safety_analysis
    assert not for_auto_migrate({"safety_checks": True}, safety_analysis=False).show_safety_analysis


# max_risk_level caps the prompt ----------------------------------------------------------------------------
def test_the_config_max_risk_level_is_what_a_person_may_confirm() -> None:
    assert for_auto_migrate({}).max_risk_level is Risk.HIGH  # nothing configured: the person decides
    assert for_auto_migrate({"max_risk_level": "MEDIUM"}).max_risk_level is Risk.MEDIUM
    assert for_auto_migrate({"max_risk_level": "SAFE"}, auto_confirm=True).max_risk_level is Risk.SAFE
    assert for_auto_migrate({"max_risk_level": "MEDIUM"}, max_risk_level="HIGH").max_risk_level is Risk.HIGH


async def test_a_high_change_is_refused_before_the_prompt_when_the_config_says_medium(dsn: str) -> None:
    await create_gadget_with_rows(dsn)
    db = dataflow(dsn, max_risk_level="MEDIUM")
    gadget_model(db, with_note=False)
    ok, _ = await db.auto_migrate()  # interactive: but a person may not confirm HIGH
    assert not ok and db.last_result is not None and db.last_result.outcome is Outcome.REFUSED
    assert "exceeds max_risk_level MEDIUM" in db.last_result.reason
    assert "Apply these changes?" not in output(db)
    assert await columns(dsn, "gadget") == ["id", "name", "note"]


# concurrent_access_protection -------------------------------------------------------------------------------
async def _while_another_migrates(dsn: str, db: DataFlow, **kwargs: Any) -> tuple[bool, float]:
    """Run ``db.auto_migrate`` while another process holds the schema's migration lease."""
    holder = await asyncpg.connect(dsn)
    try:
        ledger = Ledger("public")
        await ledger.ensure(holder)
        async with MigrationLease(ledger, "schema:public", holder="another-process").hold(holder):
            started = time.monotonic()
            ok, _ = await db.auto_migrate(auto_confirm=True, **kwargs)
            return ok, time.monotonic() - started
    finally:
        await holder.close()


async def test_without_concurrent_access_protection_a_held_lock_fails_at_once(dsn: str) -> None:
    db = dataflow(dsn, concurrent_access_protection=False, migration_timeout=30)
    gadget_model(db, with_note=False)
    ok, took = await _while_another_migrates(dsn, db)
    assert not ok and db.last_result is not None and db.last_result.outcome is Outcome.FAILED
    assert took < 5.0, took  # not the 30 s the lease wait would allow
    assert await columns(dsn, "gadget") == []


async def test_with_protection_it_waits_for_the_lock_up_to_the_timeout(dsn: str) -> None:
    db = dataflow(dsn, concurrent_access_protection=True)
    gadget_model(db, with_note=False)
    ok, took = await _while_another_migrates(dsn, db, timeout=1.5)
    assert not ok and took >= 1.4, took
    assert await columns(dsn, "gadget") == []


# timeout caps the whole migration ---------------------------------------------------------------------------
async def reading_with_a_slow_index_to_build(dsn: str) -> DataFlow:
    """A ``reading`` table of 1,000,000 rows and a model that adds a column and an index over them: the
    index takes about 1.5 s to build (measured), in one transaction with the new column."""
    db = dataflow(dsn, strategy="transactional")

    class Reading:
        value: str

    db.model(Reading)
    ok, _ = await db.auto_migrate(auto_confirm=True)
    assert ok, db.last_result
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO reading (value) SELECT md5(g::text) FROM generate_series(1, 1000000) g"
        )
        await conn.execute("ANALYZE reading")
    finally:
        await conn.close()

    class Reading:  # type: ignore[no-redef]
        value: str
        checked: str = "no"
        __dataflow__ = {"indexes": [{"name": "reading_value_checked_idx", "fields": ["value", "checked"]}]}

    db.model(Reading)
    return db


async def assert_timed_out_and_untouched(dsn: str, db: DataFlow, timeout: float) -> None:
    assert db.last_result is not None and db.last_result.outcome is Outcome.FAILED
    assert "timed out" in db.last_result.reason and f"timeout={timeout:g}s" in db.last_result.reason
    assert await columns(dsn, "reading") == ["id", "value"]  # left as it was
    version = db.last_result.migration.version  # type: ignore[union-attr]
    [record] = [r for r in await db.get_migration_history() if r.version == version]
    assert record.status == "failed" and "timed out" in (record.error or "")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.reading_value_checked_idx')") is None
    finally:
        await conn.close()


async def test_timeout_caps_the_apply_and_leaves_the_database_as_it_was(dsn: str) -> None:
    db = await reading_with_a_slow_index_to_build(dsn)
    started = time.monotonic()
    ok, _ = await db.auto_migrate(auto_confirm=True, max_risk_level="HIGH", timeout=0.3)
    took = time.monotonic() - started
    assert not ok and took < 1.2, took  # the index alone takes about 1.5 s
    await assert_timed_out_and_untouched(dsn, db, 0.3)


async def test_the_lease_wait_counts_against_the_same_timeout(dsn: str) -> None:
    """Another migration holds the lease for 0.7 s: with timeout=1.2, 0.5 s is left for the 1.5 s index."""
    db = await reading_with_a_slow_index_to_build(dsn)
    holder = await asyncpg.connect(dsn)
    try:
        lease = MigrationLease(Ledger("public"), "schema:public", holder="another-process")
        async with lease.hold(holder):
            started = time.monotonic()
            migrating = asyncio.create_task(
                db.auto_migrate(auto_confirm=True, max_risk_level="HIGH", timeout=1.2)
            )
            await asyncio.sleep(0.7)
        ok, _ = await migrating
        took = time.monotonic() - started
    finally:
        await holder.close()
    assert not ok and 0.7 <= took < 1.9, took  # not 0.7 + 1.2 s, nor 0.7 + 1.5 s
    await assert_timed_out_and_untouched(dsn, db, 1.2)


def test_timeout_bounds_every_wait_of_the_migration() -> None:
    options = for_auto_migrate({"migration_timeout": 300, "statement_timeout_ms": 60_000}, timeout=2)
    assert options.deadline_s == 2.0 and options.lease_timeout_s == 2.0
    assert options.migration_timeout_s == 2.0 and options.statement_timeout_ms == 2000
    assert for_auto_migrate({"statement_timeout_ms": 0}, timeout=3).statement_timeout_ms == 3000
    assert for_auto_migrate({}).deadline_s is None


# validate_after_migration with include_tables ---------------------------------------------------------------
async def test_validation_after_migration_looks_only_at_the_included_tables(dsn: str) -> None:
    db = dataflow(dsn)

    class Alpha:
        name: str

    class Beta:
        name: str

    db.model(Alpha)
    db.model(Beta)
    ok, applied = await db.auto_migrate(
        auto_confirm=True, include_tables=["alpha"], validate_after_migration=True
    )
    assert ok and len(applied) == 1, db.last_result
    assert await columns(dsn, "alpha") == ["id", "name"] and await columns(dsn, "beta") == []
    assert db.last_result is not None and db.last_result.outcome is Outcome.APPLIED
    pending = await db.get_pending_migrations()  # beta still differs: it was not included
    assert [op.table for m in pending for op in m.operations] == ["beta"]


# require_explicit_confirm, in a real (pseudo-)terminal ----------------------------------------------------
EXPLICIT = textwrap.dedent(
    """
    import asyncio, sys
    from dataflow import DataFlow

    db = DataFlow(sys.argv[1])

    @db.model
    class Gadget:
        name: str

    async def main() -> None:
        ok, applied = await db.auto_migrate(require_explicit_confirm=True)
        print("RESULT", ok, len(applied))

    asyncio.run(main())
    """
)


def _converse(dsn: str, answers: list[tuple[bytes, bytes]]) -> str:
    """Run EXPLICIT in a pseudo-terminal; type each answer once its prompt shows."""
    return converse(EXPLICIT, [dsn], answers)


async def test_explicit_confirm_applies_a_high_change_once_the_table_name_is_typed(dsn: str) -> None:
    await create_gadget_with_rows(dsn)
    shown = await asyncio.to_thread(
        _converse, dsn, [(b"[y/N]:", b"y\n"), (b"type the table name to confirm:", b"gadget\n")]
    )
    assert "'gadget' has a HIGH risk change" in shown, shown
    assert "RESULT True 1" in shown, shown
    assert await columns(dsn, "gadget") == ["id", "name"]


async def test_explicit_confirm_refuses_a_wrong_table_name(dsn: str) -> None:
    await create_gadget_with_rows(dsn)
    shown = await asyncio.to_thread(
        _converse, dsn, [(b"[y/N]:", b"y\n"), (b"type the table name to confirm:", b"gadgets\n")]
    )
    assert "'gadgets' is not 'gadget': nothing applied" in shown, shown
    assert "RESULT False 1" in shown, shown
    assert await columns(dsn, "gadget") == ["id", "name", "note"]
