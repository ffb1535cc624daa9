"""Every user-facing migration setting, declared once: :class:`MigrationOptions`.

One frozen object flows from the entry point (library, CLI, operator) through planning and policy
to the executor. Each field carries its default and its check; each source of settings maps onto
the type in exactly one constructor here: :meth:`MigrationOptions.from_config` (the library's
``migration_config``), :meth:`MigrationOptions.for_auto_migrate` (its keyword arguments),
:meth:`MigrationOptions.from_policy_spec` (a manifest's ``spec.policy``) and
:meth:`MigrationOptions.with_cli_overrides` (``--max-risk`` / ``--approve``). A wrong value raises
:class:`SchemaError` naming the field as that source spells it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataflow.durations import duration_ms
from dataflow.errors import SchemaError
from dataflow.monitoring import Monitoring, monitoring_problem, to_monitoring
from dataflow.operations import Risk
from dataflow.ops import kind_names

if TYPE_CHECKING:
    from dataflow.resource import PolicySpec

Check = Callable[[Any], "str | None"]


# checks: each returns what is wrong with a value, or None ---------------------------------------
def whole_number(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, not {type(value).__name__} {value!r}"
        return None if value >= minimum else f"must be at least {minimum}, not {value}"

    return check


def seconds(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number of seconds, not {type(value).__name__} {value!r}"
    return None if value >= 0 else f"must not be negative, not {value}"


def positive_seconds(value: Any) -> str | None:
    return seconds(value) or (None if value > 0 else f"must be more than 0, not {value}")


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be True or False, not {type(value).__name__} {value!r}"


def optional_flag(value: Any) -> str | None:
    return None if value is None else flag(value)


def text(value: Any) -> str | None:
    if isinstance(value, str) and value and "\x00" not in value:
        return None
    return f"must be a non-empty string without NUL, not {value!r}"


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def risk(value: Any) -> str | None:
    if isinstance(value, Risk) or (isinstance(value, str) and value.upper() in Risk.__members__):
        return None
    return f"must be SAFE, MEDIUM or HIGH, not {value!r}"


def dialect_name(value: Any) -> str | None:
    """DataFlow speaks PostgreSQL only; naming another dialect is a mistake worth one clear line."""
    if isinstance(value, str) and value.lower() in ("postgresql", "postgres"):
        return None
    return f"must be 'postgresql' (the only dialect DataFlow supports), not {value!r}"


def _postgresql(value: str) -> str:
    return "postgresql"


def optional_risk(value: Any) -> str | None:
    return None if value is None else risk(value)


def _optional_risk(value: Any) -> Risk | None:
    return None if value is None else Risk.parse(value)


def optional_milliseconds(value: Any) -> str | None:
    return None if value is None else seconds(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def optional_url(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.startswith(("http://", "https://")) and "\x00" not in value:
        return None
    return f"must be an http:// or https:// URL, not {value!r}"


def strategy_name(value: Any) -> str | None:
    return (
        None
        if value in ("online", "transactional")
        else f"must be 'online' or 'transactional', not {value!r}"
    )


def names(value: Any) -> str | None:
    """A list of names; a bare string is refused (it would read as a list of letters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return f"must be a list of names, not {type(value).__name__} {value!r}"
    bad = [v for v in value if text(v)]
    return f"must hold non-empty strings only, not {bad[0]!r}" if bad else None


def optional_names(value: Any) -> str | None:
    return None if value is None else names(value)


def operation_kinds(value: Any) -> str | None:
    if problem := names(value):
        return problem
    known = kind_names()
    unknown = [v for v in value if v not in known]
    return f"unknown operation {unknown[0]!r}; known: {', '.join(known)}" if unknown else None


def _same(value: Any) -> Any:
    return value


def _optional_tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _option(
    default: Any,
    check: Check,
    convert: Callable[[Any], Any] = _same,
    config: str | None = None,
    compare: bool = True,
) -> Any:
    """A field: its default, its check, how a checked value becomes the field's type, its migration_config key.

    ``compare=False``: a field only the library's prompt reads, left out of comparing two options.
    """
    return dataclasses.field(
        default=default, compare=compare, metadata={"check": check, "convert": convert, "config": config}
    )


@dataclass(frozen=True)
class MigrationOptions:
    """How one migration is planned, gated, applied and shown; built by the constructors below."""

    # policy: what may be applied without a person
    max_risk_level: Risk = _option(Risk.MEDIUM, risk, Risk.parse, "max_risk_level")  # noqa: RUF009  # highest unasked
    confirm_ceiling: Risk | None = _option(
        None, optional_risk, _optional_risk, "max_risk_level", compare=False
    )  # highest a person may confirm at the prompt (None: any); the config's max_risk_level sets it
    include_tables: tuple[str, ...] | None = _option(
        None, optional_names, _optional_tuple
    )  # None: all tables
    exclude_operations: tuple[str, ...] = _option((), operation_kinds, tuple)  # operation kinds never planned
    dry_run: bool = _option(False, flag)  # plan and report only
    approved_plan: str | None = _option(None, optional_text)  # plan hash applied whatever its risk
    data_loss_protection: bool = _option(False, flag)  # refuse any change that loses data
    # planning
    strategy: str = _option(
        "online", strategy_name, config="strategy"
    )  # "online": lock-friendly where rows are
    backup: bool | None = _option(
        None, optional_flag, config="backup_before_migration"
    )  # None/True: keep lost data
    batch_size: int = _option(1000, whole_number(1), config="batch_size")  # rows per backfill batch
    allowed_functions: frozenset[str] = _option(
        frozenset(), names, frozenset, "allowed_functions"
    )  # not denied
    drop_missing_tables: bool = _option(
        True, flag
    )  # the schema is the whole model set: drop owned tables it no longer names (a manifest; the library asks)
    prune: bool = _option(
        False, flag
    )  # the models are complete for the tables they adopt: drop what they do not declare (dataflow.adoption)
    # execution
    lock_timeout_ms: int = _option(500, whole_number(0), config="lock_timeout_ms")  # PostgreSQL lock_timeout
    statement_timeout_ms: int = _option(
        300_000, whole_number(0), config="statement_timeout_ms"
    )  # statement_timeout
    max_attempts: int = _option(
        50, whole_number(1), config="max_attempts"
    )  # lock-timeout attempts per migration
    migration_timeout_s: float = _option(
        300.0, seconds, float, "migration_timeout"
    )  # deadline for those retries
    backoff_base_s: float = _option(0.1, positive_seconds, float)  # first wait after a lock timeout
    backoff_max_s: float = _option(10.0, positive_seconds, float)  # longest wait between attempts
    rollback_on_error: bool = _option(
        True, flag, config="rollback_on_error"
    )  # undo done steps when a later fails
    # the apply lease
    lease_timeout_s: float = _option(
        300.0, seconds, float, "migration_timeout"
    )  # how long to wait for the lease
    lease_ttl_s: float = _option(
        30.0, positive_seconds, float
    )  # a holder that stops heart-beating loses it after
    concurrent_access_protection: bool = _option(
        True, flag, config="concurrent_access_protection"
    )  # False: never wait for another applier's lease (fail at once); the lease is always taken
    deadline_s: float | None = _option(
        None, optional_milliseconds, _optional_float
    )  # the whole migration (lease wait, plan, every step) within this many seconds; None: no cap
    deadline_from: float | None = _option(
        None, optional_milliseconds, _optional_float, compare=False
    )  # time.monotonic() when that budget started (auto_migrate's call); None: when the apply starts
    dialect: str = _option("postgresql", dialect_name, _postgresql, "dialect")  # the only one there is
    # presentation (the library's auto_migrate)
    interactive: bool = _option(True, flag, config="interactive")  # auto_migrate's default for interactive
    confirm: bool = _option(False, flag)  # a person confirms the preview before anything applies
    explicit_confirm: bool = _option(False, flag)  # a HIGH change needs its table name typed back
    show_sql: bool = _option(True, flag)  # the preview shows the SQL
    show_rollback_plan: bool = _option(False, flag)  # the preview shows the rollback SQL
    show_safety_analysis: bool = _option(
        True, flag, config="safety_checks"
    )  # the preview shows each change's risk and reason
    validate_after_migration: bool = _option(
        False, flag
    )  # plan again after applying; a difference is an error
    # monitoring (dataflow.monitoring)
    monitoring: Monitoring = _option(Monitoring(), monitoring_problem, to_monitoring, "monitoring")  # noqa: RUF009
    performance_tracking: bool = _option(
        True, flag, config="performance_tracking"
    )  # the ledger records each step's duration
    slow_migration_threshold_ms: float | None = _option(
        None, optional_milliseconds, _optional_float, "slow_migration_threshold"
    )  # a migration slower than this logs a warning
    # artifacts written after an apply (dataflow.artifacts), set by auto_migrate's arguments
    version_control: bool = _option(False, flag)  # write the migration's up/down SQL files
    version_control_dir: str = _option(
        "migrations", text, config="version_control_dir"
    )  # where those files go
    generate_documentation: bool = _option(False, flag)  # write a Markdown description of the schema
    documentation_path: str = _option(
        "SCHEMA.md", text, config="documentation_path"
    )  # where that description goes
    schema_registry_url: str | None = _option(None, optional_url)  # POST the canonical schema JSON here
    notify_team: bool = _option(False, flag)  # post every applied migration to the monitoring webhook

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _checked(f.name, getattr(self, f.name), f.name))
        if not self.concurrent_access_protection:  # another applier holds the lease: fail, do not wait
            object.__setattr__(self, "lease_timeout_s", 0.0)

    @classmethod
    def check_config_keys(cls, config: Mapping[str, Any], also: Iterable[str] = ()) -> None:
        """Raise SchemaError naming the first key of ``config`` that no option (nor ``also``) reads."""
        known = {*cls.config_keys(), *also}
        for key in config:
            if key not in known:
                raise SchemaError(
                    f"migration_config.{key}", f"unknown key; known keys: {', '.join(sorted(known))}"
                )

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """The ``migration_config`` keys that set options (``schema`` and ``owner`` name where, not how)."""
        return tuple(
            dict.fromkeys(f.metadata["config"] for f in dataclasses.fields(cls) if f.metadata["config"])
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MigrationOptions:
        """The options a library ``migration_config`` sets; unknown keys are left alone."""
        return cls(
            **{
                f.name: _checked(f.name, config[key], f"migration_config.{key}")
                for f in dataclasses.fields(cls)
                if (key := f.metadata["config"]) and key in config
            }
        )

    @classmethod
    def from_policy_spec(cls, policy: PolicySpec, approved_plan: str | None = None) -> MigrationOptions:
        """The options a manifest's ``spec.policy`` sets; ``approved_plan`` comes from its approval annotation."""
        return cls(
            max_risk_level=Risk.parse(policy.max_risk_level, "spec.policy.maxRiskLevel"),
            include_tables=policy.include_tables or None,
            exclude_operations=policy.exclude_operations,
            dry_run=policy.dry_run,
            approved_plan=approved_plan,
            lock_timeout_ms=duration_ms(policy.lock_timeout, "spec.policy.lockTimeout"),
            statement_timeout_ms=duration_ms(policy.statement_timeout, "spec.policy.statementTimeout"),
            allowed_functions=frozenset(policy.allowed_functions),
            prune=policy.prune,
        )

    def with_cli_overrides(self, max_risk: str | None, approve: str | None) -> MigrationOptions:
        """The CLI's ``--max-risk`` and ``--approve`` over a manifest's options."""
        changes: dict[str, Any] = {}
        if max_risk:
            changes["max_risk_level"] = _checked("max_risk_level", max_risk, "--max-risk")
        if approve:
            changes["approved_plan"] = _checked("approved_plan", approve, "--approve")
        return dataclasses.replace(self, **changes)

    def for_auto_migrate(
        self,
        *,
        interactive: bool | None,
        dry_run: bool,
        auto_confirm: bool,
        max_risk_level: str | None,
        include_tables: Iterable[str] | None,
        exclude_operations: Iterable[str] | None,
        show_sql: bool,
        show_rollback_plan: bool,
        safety_analysis: bool | None,
        data_loss_protection: bool,
        safety_check: bool | None,
        require_confirmation: bool,
        validate_after_migration: bool,
        timeout: float | None,
        create_backup: bool | None,
        backup_before_migration: bool | None,
        rollback_on_error: bool | None,
        rollback_on_failure: bool | None,
        require_explicit_confirm: bool,
        version_control: bool,
        schema_registry_url: str | None,
        generate_documentation: bool,
        notify_team: bool,
    ) -> MigrationOptions:
        """``DataFlow.auto_migrate``'s keyword arguments over these (the ``migration_config``) options.

        Aliases name one option twice (``create_backup``/``backup_before_migration``,
        ``rollback_on_error``/``rollback_on_failure``, ``safety_analysis``/``safety_check``); a person
        confirms unless ``interactive=False``, ``auto_confirm``, ``require_confirmation=False`` or a dry
        run, and ``max_risk_level`` then defaults to the config's ``max_risk_level`` when it set one
        (a person may confirm no more than that), else HIGH (the person decides); otherwise to this
        one's. ``interactive``, ``safety_analysis`` and ``safety_check`` left None take the config's
        ``interactive`` and ``safety_checks``. ``timeout`` caps the whole migration: the lease wait,
        the lock retries, each statement (``statement_timeout``) and a deadline checked between steps.
        """
        asks = all(
            [
                self.interactive if interactive is None else _flag("interactive", interactive),
                not _flag("auto_confirm", auto_confirm),
                _flag("require_confirmation", require_confirmation),
                not _flag("dry_run", dry_run),
            ]
        )
        return dataclasses.replace(
            self,
            max_risk_level=((self.confirm_ceiling or Risk.HIGH) if asks else self.max_risk_level)
            if max_risk_level is None
            else _checked("max_risk_level", max_risk_level, "max_risk_level"),
            include_tables=_checked("include_tables", include_tables, "include_tables"),
            exclude_operations=()
            if exclude_operations is None
            else _checked("exclude_operations", exclude_operations, "exclude_operations"),
            dry_run=dry_run,
            data_loss_protection=_checked(
                "data_loss_protection", data_loss_protection, "data_loss_protection"
            ),
            backup=_either(
                "backup",
                self.backup,
                create_backup=create_backup,
                backup_before_migration=backup_before_migration,
            ),
            rollback_on_error=_either(
                "rollback_on_error",
                self.rollback_on_error,
                rollback_on_error=rollback_on_error,
                rollback_on_failure=rollback_on_failure,
            ),
            **self._capped(timeout),
            confirm=asks,
            explicit_confirm=_flag("require_explicit_confirm", require_explicit_confirm),
            show_sql=_checked("show_sql", show_sql, "show_sql"),
            show_rollback_plan=_checked("show_rollback_plan", show_rollback_plan, "show_rollback_plan"),
            show_safety_analysis=self._shows_analysis(safety_analysis, safety_check),
            validate_after_migration=_checked(
                "validate_after_migration", validate_after_migration, "validate_after_migration"
            ),
            version_control=_flag("version_control", version_control),
            schema_registry_url=_checked("schema_registry_url", schema_registry_url, "schema_registry_url"),
            generate_documentation=_flag("generate_documentation", generate_documentation),
            notify_team=_flag("notify_team", notify_team),
        )

    def _shows_analysis(self, safety_analysis: bool | None, safety_check: bool | None) -> bool:
        """Both aliases given: both must say yes; one given: it decides; none: the config's ``safety_checks``."""
        given = [
            _flag(where, value)
            for where, value in (("safety_analysis", safety_analysis), ("safety_check", safety_check))
            if value is not None
        ]
        return all(given) if given else self.show_safety_analysis

    def _capped(self, timeout: float | None) -> dict[str, Any]:
        """The fields ``auto_migrate(timeout=...)`` bounds: every wait of the migration fits in it."""
        if timeout is None:
            return {}
        limit = _checked("lease_timeout_s", timeout, "timeout")
        limit_ms = max(1, int(limit * 1000))  # statement_timeout 0 would mean no limit at all
        return {
            "lease_timeout_s": limit,  # 0 anyway without concurrent_access_protection (__post_init__)
            "migration_timeout_s": min(self.migration_timeout_s, limit),
            "statement_timeout_ms": min(self.statement_timeout_ms or limit_ms, limit_ms),
            "deadline_s": limit,
            "deadline_from": time.monotonic(),
        }


_FIELDS = {f.name: f for f in dataclasses.fields(MigrationOptions)}


def _checked(name: str, value: Any, where: str) -> Any:
    """``value`` for field ``name`` as the field's type; a wrong value is a SchemaError naming ``where``."""
    meta = _FIELDS[name].metadata
    if problem := meta["check"](value):
        raise SchemaError(where, problem)
    return meta["convert"](value)


def _flag(where: str, value: Any) -> bool:
    if problem := flag(value):
        raise SchemaError(where, problem)
    return bool(value)


def _either(name: str, otherwise: Any, **given: Any) -> Any:
    """One option given under two names (None: not given): the value given, or ``otherwise``.

    Two different values for the same option are refused rather than one silently winning.
    """
    values = {where: _checked(name, value, where) for where, value in given.items() if value is not None}
    if len(set(values.values())) > 1:
        (first, a), (second, b) = values.items()
        raise SchemaError(second, f"is {b!r} but its alias {first} is {a!r}; give one of the two")
    return next(iter(values.values()), otherwise)
