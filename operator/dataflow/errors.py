"""Exceptions raised by DataFlow."""

from __future__ import annotations

from dataclasses import dataclass, field


class DataFlowError(Exception):
    """Base class of every DataFlow error."""


class SchemaError(DataFlowError):
    """Bad schema or model input; names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class MigrationFailed(DataFlowError):
    """Applying a migration failed; the database was rolled back."""


class LockTimeout(DataFlowError):
    """The migration lease could not be acquired in time."""


@dataclass(frozen=True)
class Conflict:
    """One object two sources disagree on: its table, what happened, and what a person can do about it."""

    table: str
    description: str
    resolution_options: list[str] = field(default_factory=list)
    column: str | None = None


class MigrationConflictError(DataFlowError):
    """The plan would overwrite what someone else decided: a column changed by hand since DataFlow last
    applied it, or a table another owner holds. ``conflicts`` lists each, with ways to resolve it."""

    def __init__(self, message: str, conflicts: list[Conflict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.conflicts: list[Conflict] = list(conflicts or [])


class InvalidDatabaseURL(DataFlowError):
    """A DSN that cannot be parsed; the message says what is wrong and never quotes the DSN."""

    def __init__(self, problem: str, source: str = "database URL") -> None:
        super().__init__(f"{source}: {problem}")
        self.problem = problem


class DatabaseUnavailable(DataFlowError):
    """A session could not be opened; the message is redacted of every credential."""
