"""Running a models file (Python with ``@db.model`` classes) to get its DataFlow and schema."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from dataflow.documents import shorten
from dataflow.errors import DataFlowError, SchemaError
from dataflow.schema import Schema

if TYPE_CHECKING:
    from dataflow.dataflow import DataFlow


def load_dataflow(path: str | Path) -> DataFlow:
    """Import a models file and return its ``DataFlow`` instance (the one holding the models).

    Whatever goes wrong while importing (a syntax error, a failed import, an exception in the
    file) becomes one SchemaError naming the file and line.
    """
    from dataflow.dataflow import DataFlow

    path = Path(path)
    if not path.is_file():
        raise SchemaError(str(path), "no such models file")
    name = f"dataflow_models_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_loader(name, importlib.machinery.SourceFileLoader(name, str(path)))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise SchemaError(f"{path}:{exc.lineno or 0}", f"syntax error: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - anything a user's file raises is a bad input
        sys.modules.pop(name, None)
        raise SchemaError(_where_raised(path, exc), _one_line(exc)) from None
    instances = [v for v in vars(module).values() if isinstance(v, DataFlow)]
    if len(instances) != 1:
        raise SchemaError(
            str(path),
            f"must define exactly one DataFlow instance with @db.model classes, found {len(instances)}",
        )
    return instances[0]


def _where_raised(path: Path, exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc`` that is in the models file."""
    line = 0
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename) == path:
            line = lineno
    return f"{path}:{line}" if line else str(path)


def _one_line(exc: BaseException) -> str:
    """An exception as one line: our own errors as they are, others with their type."""
    text = str(exc) if isinstance(exc, DataFlowError) else f"{type(exc).__name__}: {exc}"
    return shorten(text)


def load_models(path: str | Path) -> Schema:
    """The desired schema of a models file."""
    return load_dataflow(path).schema()
