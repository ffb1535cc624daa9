"""CREATE_EXTENSION: an extension a model asks for (``__dataflow__ = {"extensions": [...]}``), created first.

``CREATE EXTENSION IF NOT EXISTS`` into the target schema, so its types are visible on the engine's
pinned ``search_path`` and introspection names them as the models do. The undo drops it again: it is
planned only when the extension was missing, so nothing else of the database relied on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, tx
from dataflow.sqltext import quote_ident

CREATE_EXTENSION = "CREATE_EXTENSION"


@dataclass(frozen=True)
class Extension:
    """An extension the server offers (pg_available_extensions) and has not installed yet."""

    name: str
    version: str
    superuser: bool = True  # its install script needs a superuser (not marked trusted)


@register
class CreateExtension(Kind):
    name = CREATE_EXTENSION
    order = 45  # before every kind that creates or alters a column, whose type it may provide
    reads_table = False  # a database object, not a table: no rows to measure

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        ext: Extension = change.new
        who = "needs a superuser" if ext.superuser else "trusted: the database owner may create it"
        return Assessment(
            Risk.SAFE,
            f"new extension {ext.name} {ext.version} ({who}); no existing table is touched",
            "none on existing tables",
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        ext: Extension = change.new
        name, schema = quote_ident(ext.name), quote_ident(options.schema)
        return Rendered(
            tx(f"CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema};"),
            (f"DROP EXTENSION IF EXISTS {name};",),
            f"{ext.name} {ext.version}",
        )
