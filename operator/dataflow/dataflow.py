"""The library entry point: ``DataFlow``, ``@db.model`` and ``auto_migrate``."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import asyncpg
from rich.console import Console
from rich.text import Text

from dataflow.adoption import kept_line as kept_objects_line
from dataflow.artifacts import register_schema, write_documentation, write_sql_files
from dataflow.baseline import BaselineResult
from dataflow.baseline import baseline as run_baseline
from dataflow.conflicts import conflict_error, drift_conflicts, ownership_conflicts
from dataflow.connect import connect, validate_dsn
from dataflow.embedded import resolve_dsn
from dataflow.errors import DataFlowError, MigrationFailed, SchemaError
from dataflow.executor import run_in_transaction
from dataflow.explicit_plan import MigrationPlan, PlanReport, apply_plan
from dataflow.functions import unique_functions
from dataflow.introspect import existing_relations
from dataflow.ledger import (
    STATUS_APPLIED,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_ROLLED_BACK,
    Ledger,
    MigrationRecord,
)
from dataflow.lock import MigrationLease
from dataflow.models import (
    model_enums,
    model_extensions,
    model_functions,
    model_sequences,
    model_to_table,
    model_views,
    unique_enums,
    view_of,
)
from dataflow.monitoring import Monitor
from dataflow.operations import Risk
from dataflow.options import MigrationOptions, flag, text
from dataflow.performance import PerformanceAnalysis
from dataflow.performance import analyze as analyze_performance
from dataflow.plan import Migration
from dataflow.preview import kept_line, render_console, stdout_console
from dataflow.queue import (
    APPLIED,
    FAILED,
    FINAL,
    Entry,
    MigrationQueue,
    MigrationStatus,
    drain,
    parse_request,
)
from dataflow.reconcile import Outcome, Result, plan, reconcile
from dataflow.rules import semantic_problems
from dataflow.schema import Schema, View, checked_views
from dataflow.sqltext import identifier_problem
from dataflow.strategy import MigrationStrategy, StrategyMigration, consult
from dataflow.undo import keep, undo_losses

C = TypeVar("C", bound=type)
CONFIRM_PROMPT = "Apply these changes? [y/N]: "


IDENTITY_CHECKS = {"schema": identifier_problem, "owner": text}


def high_risk_tables(migration: Migration) -> list[str]:
    """The tables with a HIGH change, in plan order: what ``require_explicit_confirm`` asks for."""
    return list(dict.fromkeys(op.table for op in migration.operations if op.risk >= Risk.HIGH))


async def write_artifacts(migration: Migration, desired: Schema, options: MigrationOptions) -> None:
    """What the advanced auto_migrate arguments ask for after an apply (dataflow.artifacts)."""
    if options.version_control:
        write_sql_files(migration, options.version_control_dir)
    if options.generate_documentation:
        write_documentation(desired, options.documentation_path, migration.version)
    if options.schema_registry_url:
        await register_schema(options.schema_registry_url, desired, migration.version)


def check_identity(config: dict[str, Any]) -> None:
    """Raise SchemaError naming ``migration_config.<key>`` when ``schema`` or ``owner`` is wrong."""
    for key, check in IDENTITY_CHECKS.items():
        if key in config and (problem := check(config[key])):
            raise SchemaError(f"migration_config.{key}", problem)


@dataclass(frozen=True)
class RollbackAnalysis:
    """What rolling back ``version`` would do to data. ``data_removed``: data written since that the undo
    drops (a column or table the migration added); the rollback keeps it in ``dataflow_backup`` first."""

    version: str
    fully_reversible: bool
    data_loss_warning: str | None
    irreversible_operations: list[str]
    data_removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MigrationMetrics:
    total: int
    applied: int
    failed: int
    rolled_back: int
    avg_duration_ms: float
    success_rate: float
    rollback_rate: float


class DataFlow:
    """Models plus a database: ``DataFlow()`` (embedded), ``DataFlow("postgresql://...")`` or DATABASE_URL.

    ``migration_config`` keys: ``schema``, ``owner`` and those of :meth:`MigrationOptions.from_config`
    (``options``). Known keys are checked at once (SchemaError naming ``migration_config.<key>``);
    ``last_result`` is the outcome of the last ``auto_migrate``. ``drop_missing_tables=True`` says
    the registered models are the complete set: a table DataFlow created for a model no longer
    registered is then dropped; otherwise it is kept and the preview lists it. ``prune=True`` says
    the models of the tables they adopt (existing tables this owner does not hold yet) are complete:
    columns, indexes and constraints they do not declare are then dropped; otherwise they are kept,
    listed, and left alone afterwards (:mod:`dataflow.adoption`). :meth:`baseline` adopts without DDL.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        migration_config: dict[str, Any] | None = None,
        console: Console | None = None,
        drop_missing_tables: bool = False,
        migration_strategy: MigrationStrategy | None = None,
        prune: bool = False,
    ) -> None:
        if migration_config is not None and not isinstance(migration_config, dict):
            raise SchemaError("migration_config", f"must be a dict, not {type(migration_config).__name__}")
        self.config = dict(migration_config or {})
        MigrationOptions.check_config_keys(self.config, also=IDENTITY_CHECKS)
        check_identity(self.config)
        # the registered models may be a part of the application: tables they do not mention are kept
        # (and listed) unless the caller says the model set is complete
        if problem := flag(drop_missing_tables):
            raise SchemaError("drop_missing_tables", problem)
        if problem := flag(prune):
            raise SchemaError("prune", problem)
        self.options = replace(
            MigrationOptions.from_config(self.config), drop_missing_tables=drop_missing_tables, prune=prune
        )
        self.monitor = Monitor(self.options.monitoring, self.options.slow_migration_threshold_ms)
        self.database_url = database_url
        self.schema_name: str = self.config.get("schema", "public")
        self.owner: str = self.config.get("owner", f"library:{self.schema_name}")
        self.models: dict[str, type] = {}
        self.views: dict[str, View] = {}  # @db.view declarations by view name
        self.console = console or stdout_console()
        self.last_result: Result | None = None
        self._schema: tuple[tuple[Any, ...], Schema] | None = None  # (what it was built from, the schema)
        self.migration_strategy = self._bind_strategy(migration_strategy)
        self.last_plan: PlanReport | None = None  # what the last apply_migration_plan did
        self._queue_worker: asyncio.Task[list[int]] | None = None

    # models ---------------------------------------------------------------
    def model(self, cls: C) -> C:
        """Register a model class; registering a class of the same name replaces it."""
        model_to_table(cls, vars(sys.modules.get(cls.__module__, sys)))  # validate now, fail early
        self.models[cls.__name__] = cls
        if importlib.util.find_spec("kailash") is not None:  # the optional extra: generated workflow nodes
            from dataflow.nodes import register_model

            register_model(self, cls.__name__)
        return cls

    def view(self, obj: Any = None, *, name: str | None = None, materialized: bool = False) -> Any:
        """Register a view: ``@db.view`` or ``@db.view(materialized=True, name=...)`` over a class with
        ``sql = "SELECT ..."`` (or a function returning that SQL); named after it in snake_case.

        Registering a view of the same name replaces it. The object itself is returned unchanged.
        """

        def register(target: Any) -> Any:
            view = view_of(target, name, materialized)
            self.views[view.name] = view
            return target

        return register if obj is None else register(obj)

    def schema(self) -> Schema:
        """The desired schema of every registered model.

        Built once and kept until a model is registered or replaced or the schema name changes
        (building 1,000 tables costs ~0.1 s; the Schema is immutable, so sharing it is safe).
        """
        source = (
            self.schema_name,
            *((name, id(cls)) for name, cls in self.models.items()),
            *self.views.values(),
        )
        if self._schema is not None and self._schema[0] == source:
            return self._schema[1]
        schema = self._build_schema()
        self._schema = (source, schema)
        return schema

    def _build_schema(self) -> Schema:
        """The desired schema, built and checked from the model classes."""
        tables = tuple(
            model_to_table(cls, vars(sys.modules.get(cls.__module__, sys))) for cls in self.models.values()
        )
        names = [t.name for t in tables]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise DataFlowError(f"two models map to the same table: {', '.join(sorted(duplicates))}")
        for t in tables:
            if t.renamed_from in names:
                raise DataFlowError(
                    f"table {t.name!r} is renamed from {t.renamed_from!r}, "
                    f"which another model still defines; remove that model"
                )
        extensions = tuple(e for cls in self.models.values() for e in model_extensions(cls))
        enums = unique_enums(
            e
            for cls in self.models.values()
            for e in model_enums(cls, vars(sys.modules.get(cls.__module__, sys)))
        )
        sequences = tuple(q for cls in self.models.values() for q in model_sequences(cls))
        if len({q.name for q in sequences}) != len(sequences):
            raise SchemaError("__dataflow__.sequences", "two models declare the same sequence")
        views = checked_views(
            (*(v for cls in self.models.values() for v in model_views(cls)), *self.views.values()),
            tables,
            "views",
        )
        functions = unique_functions(f for cls in self.models.values() for f in model_functions(cls))
        schema = Schema(
            tables,
            self.schema_name,
            extensions=extensions,
            enums=enums,
            sequences=sequences,
            views=views,
            functions=functions,
        ).normalised()
        problems = semantic_problems(schema.to_dict()["tables"], lambda i, t: f"model table {t['name']!r}")
        if problems:
            field, _, first = problems[0].partition(": ")
            raise SchemaError(field, "; ".join([first, *problems[1:]]))
        return schema

    # connections ----------------------------------------------------------
    @property
    def database_url(self) -> str | None:
        return self._url

    @database_url.setter
    def database_url(self, url: str | None) -> None:
        """A URL given here is checked at once; DATABASE_URL and the embedded server when connecting."""
        if url is not None:
            validate_dsn(url)
        self._url: str | None = url
        self._dsn: str | None = None

    @property
    def dsn(self) -> str:
        dsn = self._dsn
        if dsn is None:
            dsn = self._dsn = resolve_dsn(self._url)
        return dsn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await connect(self.dsn, self.schema_name)
        try:
            yield conn
        finally:
            await conn.close()

    # migrations -----------------------------------------------------------
    async def initialize(self) -> bool:
        """Create the tables (and views) of models that have none yet (other differences wait for
        auto_migrate)."""
        desired = self.schema()
        async with self.connection() as conn:
            relations = [*desired.table_names, *(v.name for v in desired.views)]
            present = set(await existing_relations(conn, self.schema_name, relations))
            missing = [name for name in relations if name not in present]
            if not missing:
                return True
            options = replace(self.options, max_risk_level=Risk.SAFE, include_tables=tuple(missing))
            result = await reconcile(conn, self.dsn, desired, self.owner, options)
        if not result.success:
            raise MigrationFailed(f"initialize: {result.reason}")
        self.console.print(f"Created tables: {', '.join(missing)}", highlight=False)
        return True

    async def baseline(self) -> BaselineResult:
        """Adopt the existing tables of the models as they are: no DDL (:mod:`dataflow.baseline`).

        Records a ledger migration with no operations, claims the tables for this owner and records
        what the models do not declare as kept (with ``prune=True`` nothing is kept: those drops are
        remaining differences). Remaining differences are listed and left to the next ``auto_migrate``.
        With nothing to adopt, nothing is recorded. A table another owner holds raises
        MigrationConflictError.
        """
        async with self.connection() as conn:
            result = await run_baseline(conn, self.dsn, self.schema(), self.owner, self.options)
        for line in result.lines():
            self.console.print(line, markup=False, highlight=False)
        return result

    async def auto_migrate(
        self,
        interactive: bool | None = None,
        dry_run: bool = False,
        auto_confirm: bool = False,
        max_risk_level: str | None = None,
        include_tables: Iterable[str] | None = None,
        exclude_operations: Iterable[str] | None = None,
        show_sql: bool = True,
        show_rollback_plan: bool = False,
        safety_analysis: bool | None = None,
        data_loss_protection: bool = False,
        safety_check: bool | None = None,
        require_confirmation: bool = True,
        validate_after_migration: bool = False,
        timeout: float | None = None,
        create_backup: bool | None = None,
        backup_before_migration: bool | None = None,
        rollback_on_error: bool | None = None,
        rollback_on_failure: bool | None = None,
        require_explicit_confirm: bool = False,
        version_control: bool = False,
        schema_registry_url: str | None = None,
        generate_documentation: bool = False,
        notify_team: bool = False,
    ) -> tuple[bool, list[Migration]]:
        """Bring the database in line with the models; returns ``(success, migrations)``.

        Shows the preview, then asks ``Apply these changes? [y/N]`` unless ``auto_confirm`` or
        ``interactive=False`` (which applies what ``max_risk_level`` allows). A stdin that is
        not a terminal answers no. ``max_risk_level`` defaults to HIGH when a person confirms and
        to ``migration_config``'s (MEDIUM unless set) otherwise. ``create_backup`` (alias
        ``backup_before_migration``, default on) keeps the data a destructive change removes in the
        ``dataflow_backup`` schema, so a rollback restores it. ``rollback_on_error`` (alias
        ``rollback_on_failure``, default on) undoes the completed steps when a later, non-transactional
        step fails. Every argument maps onto :class:`MigrationOptions` in ``for_auto_migrate``; two
        aliases given different values are refused. ``interactive`` and ``safety_analysis``/``safety_check``
        left None take ``migration_config``'s ``interactive`` and ``safety_checks`` (default True).
        ``timeout`` (seconds) caps the lease wait and the apply: past it the migration is undone and
        recorded failed. ``require_explicit_confirm`` asks for the table name of each HIGH change.
        After an apply: ``version_control`` writes its up/down SQL files, ``generate_documentation`` a
        Markdown description of the schema, ``schema_registry_url`` receives the canonical schema JSON,
        ``notify_team`` posts it to the monitoring webhook (see :mod:`dataflow.artifacts`).
        """
        options = self.options.for_auto_migrate(
            interactive=interactive,
            dry_run=dry_run,
            auto_confirm=auto_confirm,
            max_risk_level=max_risk_level,
            include_tables=include_tables,
            exclude_operations=exclude_operations,
            show_sql=show_sql,
            show_rollback_plan=show_rollback_plan,
            safety_analysis=safety_analysis,
            data_loss_protection=data_loss_protection,
            safety_check=safety_check,
            require_confirmation=require_confirmation,
            validate_after_migration=validate_after_migration,
            timeout=timeout,
            create_backup=create_backup,
            backup_before_migration=backup_before_migration,
            rollback_on_error=rollback_on_error,
            rollback_on_failure=rollback_on_failure,
            require_explicit_confirm=require_explicit_confirm,
            version_control=version_control,
            schema_registry_url=schema_registry_url,
            generate_documentation=generate_documentation,
            notify_team=notify_team,
        )
        if self.migration_strategy is not None:
            options, vetoed = await self._consult_strategy(options)
            if vetoed is not None:
                return False, [vetoed]
        show = dict(
            show_sql=options.show_sql,
            show_rollback_plan=options.show_rollback_plan,
            safety_analysis=options.show_safety_analysis,
        )

        preview_shown = False

        async def preview_then_confirm(migration: Migration) -> bool:
            nonlocal preview_shown
            await refuse_drift(migration)  # nobody is asked to confirm what would be refused
            render_console(migration, self.console, **show)
            preview_shown = True
            if not options.confirm:
                return True
            return await asyncio.to_thread(self._ask, migration if options.explicit_confirm else None)

        desired = self.schema()
        async with self.connection() as conn:

            async def refuse_drift(migration: Migration) -> None:
                """Raise MigrationConflictError when the plan would overwrite a column changed by hand."""
                if drifted := await drift_conflicts(conn, self.schema_name, self.owner, migration):
                    raise conflict_error(drifted)

            result = await reconcile(
                conn, self.dsn, desired, self.owner, options, preview_then_confirm, before_apply=refuse_drift
            )
            self.last_result = result
            if result.outcome is Outcome.CONFLICT:
                raise conflict_error(ownership_conflicts(result.conflicts, self.owner))
            if result.outcome is Outcome.DRY_RUN and result.migration is not None:
                await refuse_drift(result.migration)
            if result.migration is not None and result.migration.operations and not preview_shown:
                render_console(result.migration, self.console, **show)
            elif result.migration is not None and result.migration.kept_tables and not preview_shown:
                self.console.print(kept_line(result.migration), markup=False, highlight=False)
            if result.migration is not None and result.migration.kept_objects and not preview_shown:
                self.console.print(
                    kept_objects_line(result.migration.kept_objects), markup=False, highlight=False
                )
            self._report(result)
            applied = result.migration if result.outcome is Outcome.APPLIED else None
            if applied is not None and options.validate_after_migration:
                result = await self._validate(conn, desired, options, result)
                self.last_result = result
            duration = await self._duration(conn, result)
        await self.monitor.migration_finished(
            version=result.migration.version if result.migration and result.migration.operations else None,
            outcome=result.outcome.value,
            reason=result.reason,
            duration_ms=duration,
            notify=options.notify_team,
        )
        if applied is not None:
            await write_artifacts(applied, desired, options)
        migrations = [result.migration] if result.migration and result.migration.operations else []
        return result.success, migrations

    async def _validate(
        self, conn: asyncpg.Connection, desired: Schema, options: MigrationOptions, result: Result
    ) -> Result:
        """Plan again (no shortcut) under the same options: anything left is a failed result, reported."""
        again, _ = await plan(conn, desired, self.owner, options, fast=False)
        if not again.operations:
            return result
        version = result.migration.version if result.migration else "the migration"
        failed = replace(
            result,
            outcome=Outcome.FAILED,
            reason=f"validation after {version}: the database still differs: {again.description}",
        )
        self._report(failed)
        return failed

    async def _duration(self, conn: asyncpg.Connection, result: Result) -> float | None:
        """The ledger's duration of the migration ``result`` is about (None when nothing ran)."""
        if result.migration is None or not result.migration.operations:
            return None
        record = await Ledger(self.schema_name).get(conn, result.migration.version)
        return record.duration_ms if record is not None else None

    def _ask(self, explicit: Migration | None = None) -> bool:
        """The person's answer; with ``explicit`` (require_explicit_confirm), each table with a HIGH
        change must also be typed back exactly."""
        if not sys.stdin or not sys.stdin.isatty():
            self.console.print(
                f"{CONFIRM_PROMPT}stdin is not a terminal, answering no "
                "(use auto_confirm=True to apply without asking)",
                markup=False,
            )
            return False
        answer = self.console.input(Text(CONFIRM_PROMPT))  # Text: "[y/N]" is not markup
        if answer.strip().lower() not in ("y", "yes"):
            return False
        for table in high_risk_tables(explicit) if explicit is not None else []:
            typed = self.console.input(
                Text(f"{table!r} has a HIGH risk change; type the table name to confirm: ")
            )
            if typed.strip() != table:
                self.console.print(f"{typed.strip()!r} is not {table!r}: nothing applied", markup=False)
                return False
        return True

    def _report(self, result: Result) -> None:
        colour = "green" if result.success else "red"
        self.console.print(f"[{colour}]{result.outcome.value}[/{colour}]: {result.reason}", highlight=False)

    async def get_pending_migrations(self) -> list[Migration]:
        async with self.connection() as conn:
            migration, _ = await plan(conn, self.schema(), self.owner, self.options, dsn=self.dsn)
        return [migration] if migration.operations else []

    async def get_migration_history(self, limit: int = 10) -> list[MigrationRecord]:
        async with self.connection() as conn:
            return await Ledger(self.schema_name).history(conn, limit)

    async def get_migration_metrics(self) -> MigrationMetrics:
        records = await self.get_migration_history(limit=10_000)
        done = [
            r
            for r in records
            if r.status in (STATUS_APPLIED, STATUS_FAILED, STATUS_INTERRUPTED, STATUS_ROLLED_BACK)
        ]
        applied = [r for r in done if r.status in (STATUS_APPLIED, STATUS_ROLLED_BACK)]
        failed = sum(r.status in (STATUS_FAILED, STATUS_INTERRUPTED) for r in done)
        rolled = sum(r.status == STATUS_ROLLED_BACK for r in done)
        durations = [r.duration_ms for r in applied if r.duration_ms is not None]
        return MigrationMetrics(
            total=len(done),
            applied=len(applied),
            failed=failed,
            rolled_back=rolled,
            avg_duration_ms=sum(durations) / len(durations) if durations else 0.0,
            success_rate=100.0 * len(applied) / len(done) if done else 100.0,
            rollback_rate=100.0 * rolled / len(applied) if applied else 0.0,
        )

    # rollback ----------------------------------------------------------------
    async def analyze_rollback(self, version: str) -> RollbackAnalysis:
        async with self.connection() as conn:
            record = await self._record(conn, version)
            losses = (
                await undo_losses(conn, self.schema_name, record) if record.status == STATUS_APPLIED else []
            )
        irreversible = [
            f"{op['operation']} {op['table']}.{op['details']}"
            for op in record.operations
            if op.get("irreversible")
        ]
        removed = [loss.describe() for loss in losses]
        warnings = []
        if irreversible:
            warnings.append(
                "rolling back recreates the structure but not the data removed by: " + "; ".join(irreversible)
            )
        if removed:
            warnings.append(
                "rolling back removes data written since the migration: "
                + "; ".join(removed)
                + f" (the rollback first copies it to {', '.join(loss.backup for loss in losses)})"
            )
        warning = "; ".join(warnings) or None
        # the undo itself cannot keep that data in place: listed with the operations it undoes
        irreversible += [f"UNDO_{loss.undone} {loss.describe()}" for loss in losses]
        return RollbackAnalysis(version, not irreversible, warning, irreversible, removed)

    async def rollback_migration(self, version: str) -> bool:
        """Undo one applied migration in a single transaction; the ledger marks it rolled back.

        False, with the reason printed, when ``version`` is unknown, not applied, or its undo fails
        (then nothing changed). Data written since into a column or table the migration added is
        copied to ``dataflow_backup`` before the undo drops it; the message says how to put it back.
        With monitoring's ``alert_on_rollback``, the webhook hears of it (after the commit).
        """
        done = await self._undo_migration(version)
        await self.monitor.rolled_back(version, done, "rolled back" if done else "rollback failed")
        return done

    async def _undo_migration(self, version: str) -> bool:
        async with self.connection() as conn:
            ledger = Ledger(self.schema_name)
            record = await ledger.get(conn, version)
            if record is None or record.status != STATUS_APPLIED:
                problem = (
                    "unknown migration version" if record is None else f"it is {record.status}, not applied"
                )
                self.console.print(f"[red]rollback of {version} refused:[/red] {problem}", highlight=False)
                return False
            lease = MigrationLease(ledger, f"schema:{self.schema_name}")
            async with lease.hold(conn, heartbeat_dsn=self.dsn):
                try:
                    async with conn.transaction():
                        kept = await undo_losses(conn, self.schema_name, record)
                        for loss in kept:
                            await keep(conn, loss)
                        await run_in_transaction(conn, self.schema_name, record.sql_down, self.options)
                        await conn.execute(
                            f"UPDATE {ledger.table} SET status = $2 WHERE version = $1",
                            version,
                            STATUS_ROLLED_BACK,
                        )
                except asyncpg.PostgresError as exc:
                    self.console.print(f"[red]rollback of {version} failed, nothing changed:[/red] {exc}")
                    return False
        for loss in kept:
            self.console.print(
                loss.kept_message(),
                markup=False,
                highlight=False,
                soft_wrap=True,  # one line: the SQL can be copied as it is
            )
        return True

    async def rollback_last_migration(self) -> bool:
        applied = [r for r in await self.get_migration_history(limit=1000) if r.status == STATUS_APPLIED]
        return await self.rollback_migration(applied[0].version) if applied else False

    async def rollback_to_version(self, version: str) -> bool:
        """Roll back every applied migration newer than ``version``, newest first.

        False, with a message, when ``version`` is unknown (nothing is rolled back) or a rollback fails.
        """
        records = [r for r in await self.get_migration_history(limit=10_000)]
        newer: list[MigrationRecord] = []
        for r in records:
            if r.version == version:
                break
            if r.status == STATUS_APPLIED:
                newer.append(r)
        else:
            self.console.print(
                f"[red]rollback to {version} refused:[/red] unknown migration version", highlight=False
            )
            return False
        for r in newer:
            if not await self.rollback_migration(r.version):
                return False
        return True

    async def _record(self, conn: asyncpg.Connection, version: str) -> MigrationRecord:
        record = await Ledger(self.schema_name).get(conn, version)
        if record is None:
            raise DataFlowError(f"unknown migration version {version!r}")
        return record

    @asynccontextmanager
    async def migration_lock(
        self, name: str = "default", timeout: float = 300.0
    ) -> AsyncIterator[MigrationLease]:
        """Hold a named lease (not the schema's apply lease) across processes while the block runs."""
        async with self.connection() as conn:
            ledger = Ledger(self.schema_name)
            await ledger.ensure(conn)
            lease = MigrationLease(ledger, f"user:{name}")
            async with lease.hold(conn, timeout=timeout, heartbeat_dsn=self.dsn):
                yield lease

    # monitoring (dataflow.monitoring, dataflow.performance) -----------------------------------
    async def analyze_migration_performance(
        self, threshold_ms: float | None = None, limit: int = 10, history: int = 100
    ) -> PerformanceAnalysis:
        """The slowest measured steps of the last ``history`` migrations, each with a suggestion.

        ``threshold_ms`` defaults to ``slow_migration_threshold`` (0 when unset: the slowest steps).
        """
        records = await self.get_migration_history(limit=history)
        if threshold_ms is None:
            threshold_ms = self.options.slow_migration_threshold_ms or 0.0
        return analyze_performance(records, threshold_ms, limit)

    # strategies (dataflow.strategy) --------------------------------------------------------------
    def _bind_strategy(self, strategy: MigrationStrategy | None) -> MigrationStrategy | None:
        if strategy is None:
            return None
        if not isinstance(strategy, MigrationStrategy):
            raise SchemaError(
                "migration_strategy", f"must be a MigrationStrategy, not {type(strategy).__name__}"
            )
        strategy.approver = self._approve_by_person
        return strategy

    def _approve_by_person(self, migration: StrategyMigration) -> bool:
        self.console.print(
            f"The migration strategy asks for manual approval of {migration.description}"
            f" (risk {migration.risk_level}, largest table {migration.table_size} rows)",
            markup=False,
            highlight=False,
        )
        return self._ask()

    async def _consult_strategy(self, options: MigrationOptions) -> tuple[MigrationOptions, Migration | None]:
        """The strategy's options for this run, or the migration it vetoed (then nothing is applied)."""
        assert self.migration_strategy is not None
        async with self.connection() as conn:
            migration, _ = await plan(conn, self.schema(), self.owner, options, dsn=self.dsn)
            if not migration.operations:
                return options, None
            ok, options, _ = await consult(
                self.migration_strategy, conn, migration, self.schema_name, options
            )
        if ok:
            return options, None
        self.last_result = Result(
            Outcome.DECLINED, migration, f"the migration strategy declined it: {migration.description}"
        )
        self._report(self.last_result)
        return options, migration

    # explicit plans (dataflow.explicit_plan) -------------------------------------------------------
    async def apply_migration_plan(
        self, migration_plan: MigrationPlan, *, max_risk_level: str = "HIGH", dry_run: bool = False
    ) -> bool:
        """Apply an explicit plan as one ledger migration (``rollback_migration`` undoes it).

        Every step is checked first; a bad one raises SchemaError naming it and nothing runs. An
        explicit plan is a decision already made, so HIGH risk is allowed unless ``max_risk_level``
        says otherwise; destructive steps keep their data in ``dataflow_backup``. The configured
        strategy may veto the plan or change its batch size. ``last_plan`` tells what happened.
        """
        options = replace(
            self.options,
            max_risk_level=Risk.parse(max_risk_level),
            dry_run=bool(dry_run),
            include_tables=None,
            exclude_operations=(),
            drop_missing_tables=True,  # a drop_table step says so explicitly
        )
        async with self.connection() as conn:
            if self.migration_strategy is not None:
                from dataflow.explicit_plan import check_plan
                from dataflow.introspect import introspect

                checked = await check_plan(
                    conn, await introspect(conn, self.schema_name), migration_plan, options
                )
                ok, options, _ = await consult(
                    self.migration_strategy, conn, checked.migration, self.schema_name, options
                )
                if not ok:
                    self.last_plan = PlanReport(
                        None, False, "the migration strategy declined the plan", migration=checked.migration
                    )
                    self.console.print(f"[red]Declined[/red]: {self.last_plan.reason}", highlight=False)
                    return False
            report = await apply_plan(
                conn, self.dsn, self.schema_name, self.owner, migration_plan, options, self.console
            )
        self.last_plan = report
        colour = "green" if report.success else "red"
        self.console.print(f"[{colour}]{report.reason}[/{colour}]", highlight=False, markup=True)
        return report.success

    # the queue (dataflow.queue) --------------------------------------------------------------------
    async def queue_migration(self, request: dict[str, Any], *, process: bool = True) -> int:
        """Queue a migration to ``target_schema`` (default: the models' schema); returns its id.

        ``priority`` (higher first, then first come) and ``timeout`` (seconds it may wait before it is
        ``timed_out``; default ``migration_timeout``). The queue is a table next to the ledger, so every
        process sharing the database shares it. With ``process`` a worker task of this process runs the
        queue in the background unless another process's worker is at it.
        """
        target = request.get("target_schema") if isinstance(request, dict) else None
        if isinstance(target, (list, tuple)) and target and all(isinstance(m, type) for m in target):
            request = {**request, "target_schema": self._models_schema(target)}  # model classes
        checked = parse_request(request, self.schema, self.options.migration_timeout_s)
        async with self.connection() as conn:
            entry_id = await MigrationQueue(self.schema_name).enqueue(conn, self.owner, checked)
        if process and (self._queue_worker is None or self._queue_worker.done()):
            self._queue_worker = asyncio.create_task(self.process_migration_queue())
        return entry_id

    def _models_schema(self, classes: Iterable[type]) -> Schema:
        """The desired schema of these model classes (not registered on this instance)."""
        tables = tuple(model_to_table(c, vars(sys.modules.get(c.__module__, sys))) for c in classes)
        return Schema(tables, self.schema_name).normalised()

    async def get_migration_status(self, migration_id: int) -> MigrationStatus:
        """``.status`` (queued, running, applied, failed, timed_out, cancelled) and ``.position``."""
        async with self.connection() as conn:
            status = await MigrationQueue(self.schema_name).status(conn, migration_id)
        if status is None:
            raise DataFlowError(f"unknown queued migration {migration_id!r}")
        return status

    async def cancel_migration(self, migration_id: int) -> bool:
        """Cancel a queued migration; False once it has started or finished."""
        async with self.connection() as conn:
            return await MigrationQueue(self.schema_name).cancel(conn, migration_id)

    async def process_migration_queue(self) -> list[int]:
        """Run queued migrations (this process's and others') until the queue is empty; the ids run.

        Returns at once when another process's worker holds the queue.
        """
        async with self.connection() as conn:
            return await drain(conn, MigrationQueue(self.schema_name), self.dsn, self._run_queued)

    async def wait_for_migration(self, migration_id: int, timeout: float = 300.0) -> MigrationStatus:
        """Poll until the queued migration is final (applied, failed, timed_out, cancelled).

        Then this instance's worker task, if it is still running, is given the rest of ``timeout`` to
        finish, so nothing of it outlives the caller's use of the database.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.get_migration_status(migration_id)
            if status.status in FINAL or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        worker = self._queue_worker
        if worker is not None and not worker.done():
            await asyncio.wait({worker}, timeout=max(deadline - loop.time(), 0))
        return status

    async def _run_queued(self, entry: Entry) -> tuple[str, str | None, str | None]:
        desired = Schema.from_dict(entry.target, self.schema_name)
        options = replace(
            self.options,
            max_risk_level=Risk.parse(entry.max_risk_level)
            if entry.max_risk_level
            else self.options.max_risk_level,
            lease_timeout_s=entry.remaining_s,
            confirm=False,
            dry_run=False,
        )
        async with self.connection() as conn:
            if self.migration_strategy is not None:
                pending, _ = await plan(conn, desired, entry.owner, options, dsn=self.dsn)
                if pending.operations:
                    ok, options, _ = await consult(
                        self.migration_strategy, conn, pending, self.schema_name, options
                    )
                    if not ok:
                        return FAILED, None, f"the migration strategy declined it: {pending.description}"
            result = await reconcile(conn, self.dsn, desired, entry.owner, options)
        version = result.migration.version if result.migration and result.migration.operations else None
        return (APPLIED, version, None) if result.success else (FAILED, version, result.reason)

    # the configured system (dataflow.migrations.AutoMigrationSystem) ------------------------------
    @property
    def migration_system(self) -> Any:
        """This instance's :class:`dataflow.migrations.AutoMigrationSystem`."""
        from dataflow.migrations import AutoMigrationSystem

        return AutoMigrationSystem(dataflow=self)
