"""Reading manifest files: bounded size, UTF-8, YAML without alias bombs; every fault one SchemaError."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dataflow.errors import SchemaError

MAX_MANIFEST_BYTES = 3 * 512 * 1024  # 1.5 MiB: the largest object the Kubernetes API server stores
MAX_YAML_NODES = 200_000  # nodes after alias expansion: bounds "billion laughs" documents


def shorten(text: str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters (values in messages may be huge or multi-line)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_documents(paths: Iterable[str | Path]) -> list[tuple[str, Any]]:
    """(source, document) for every YAML document in ``paths``; SchemaError naming the file otherwise."""
    out = []
    for path in paths:
        docs = load_yaml(read_text(path), str(path))
        out += [(f"{path}#{i}" if len(docs) > 1 else str(path), d) for i, d in enumerate(docs)]
    return out


def read_text(path: str | Path) -> str:
    """A manifest file's text: at most MAX_MANIFEST_BYTES of UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise SchemaError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise SchemaError(str(path), f"larger than {MAX_MANIFEST_BYTES} bytes (the Kubernetes object limit)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(str(path), f"not UTF-8 text (invalid byte at offset {exc.start})") from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader; documents are checked by :func:`_check_expansion` before construction."""


def load_yaml(text: str, source: str) -> list[Any]:
    """Every non-empty YAML document of ``text``, refusing alias bombs and recursive aliases."""
    loader = _BoundedLoader(text)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            _check_expansion(node, source)
            doc = loader.construct_document(node)
            if doc is not None:
                docs.append(doc)
        return docs
    except yaml.YAMLError as exc:
        raise SchemaError(source, f"not valid YAML: {shorten(str(exc))}") from None
    except RecursionError:
        raise SchemaError(source, "YAML nested too deeply") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_NODES nodes, or refer to themselves."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_YAML_NODES:
                raise SchemaError(source, f"YAML expands to more than {MAX_YAML_NODES} nodes (aliases)")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise SchemaError(source, "YAML alias refers to itself")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
