"""A tiny renderer for the Go-template subset used by charts/dataflow-operator (no helm binary needed).

Supported: text with `{{ }}` actions and `{{-`/`-}}` trim markers, `{{/* comments */}}`,
`define`/`include`, `if`/`else`/`end`, `range` over lists (dot rebinds to the element, `$` is the
root context), fields `.a.b` and `$.a.b`, string/integer/bool literals, and pipelines through
`quote`, `default`, `toYaml`, `nindent`, `indent`, `join`. Anything else raises TemplateError.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class TemplateError(Exception):
    pass


ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(\|)|([^\s|"]+))')
MISSING = object()


@dataclass
class Node:
    kind: str  # text | expr | if | range
    value: str = ""
    body: list = field(default_factory=list)
    orelse: list = field(default_factory=list)


def _lex(source: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        items.append(("text", text))
        body = m.group(2).strip()
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError(f"unterminated comment: {m.group(0)!r}")
        else:
            items.append(("action", body))
        trim_next = bool(m.group(3))
        pos = m.end()
    rest = source[pos:]
    items.append(("text", rest.lstrip(" \t\r\n") if trim_next else rest))
    for kind, text in items:
        if kind == "text" and ("{{" in text or "}}" in text):
            raise TemplateError(f"unbalanced braces in {text!r}")
    return items


def parse(source: str, defines: dict[str, list]) -> list:
    """Parse a template; `define` blocks go into `defines`, the rest is returned."""
    items = _lex(source)
    pos = 0

    def block(terminators: tuple[str, ...]) -> tuple[list, str]:
        nonlocal pos
        nodes: list = []
        while pos < len(items):
            kind, text = items[pos]
            pos += 1
            if kind == "text":
                if text:
                    nodes.append(Node("text", text))
                continue
            word, _, rest = text.partition(" ")
            rest = rest.strip()
            if word in terminators and (word != "else" or not rest):
                return nodes, word
            if word in ("if", "range"):
                if not rest:
                    raise TemplateError(f"{word} without a pipeline")
                node = Node(word, rest)
                node.body, end = block(("else", "end"))
                if end == "else":
                    node.orelse, _ = block(("end",))
                nodes.append(node)
            elif word == "define":
                name = json.loads(rest)
                defines[name], _ = block(("end",))
            elif word in ("else", "end"):
                raise TemplateError(f"unexpected {{{{ {text} }}}}")
            elif word in ("with", "template", "block", "break", "continue") or ":=" in text:
                raise TemplateError(f"unsupported action {{{{ {text} }}}}")
            else:
                nodes.append(Node("expr", text))
        if terminators:
            raise TemplateError(f"missing {{{{ end }}}} (expected one of {terminators})")
        return nodes, ""

    nodes, _ = block(())
    return nodes


def _truthy(value) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, (list, dict)) and not value)


def _to_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise TemplateError(f"refusing to print {value!r} directly (use toYaml)")


def _quote(*args) -> str:
    return " ".join(json.dumps(_to_text(a)) for a in args if a is not None)


def _default(fallback, value=None):
    return value if _truthy(value) else fallback


def _join(sep, items) -> str:
    if not isinstance(items, list):
        raise TemplateError(f"join needs a list, got {items!r}")
    return str(sep).join(_to_text(i) for i in items)


def _to_yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(n, text) -> str:
    pad = " " * int(n)
    return pad + _to_text(text).replace("\n", "\n" + pad)


def _nindent(n, text) -> str:
    return "\n" + _indent(n, text)


class Renderer:
    def __init__(self, defines: dict[str, list], root: dict):
        self.defines, self.root = defines, root
        self.functions = {
            "quote": _quote,
            "default": _default,
            "toYaml": _to_yaml,
            "indent": _indent,
            "nindent": _nindent,
            "include": self._include,
            "join": _join,
        }

    def _include(self, name, dot) -> str:
        if name not in self.defines:
            raise TemplateError(f"no template {name!r}")
        return self.render(self.defines[name], dot)

    def render(self, nodes: list, dot) -> str:
        out = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.value)
            elif node.kind == "expr":
                value = self.pipeline(node.value, dot)
                if value is None:
                    raise TemplateError(f"{{{{ {node.value} }}}} has no value")
                out.append(_to_text(value))
            elif node.kind == "if":
                branch = node.body if _truthy(self.pipeline(node.value, dot)) else node.orelse
                out.append(self.render(branch, dot))
            elif node.kind == "range":
                items = self.pipeline(node.value, dot)
                if items is None:
                    items = []
                if not isinstance(items, list):
                    raise TemplateError(f"range over {type(items).__name__} is not supported")
                out.extend(self.render(node.body, item) for item in items)
                if not items:
                    out.append(self.render(node.orelse, dot))
        return "".join(out)

    def pipeline(self, text: str, dot):
        tokens = []
        pos = 0
        while pos < len(text):
            m = TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip():
                    raise TemplateError(f"cannot tokenize {text!r}")
                break
            tokens.append(m.group(1) or m.group(2) or m.group(3))
            pos = m.end()
        commands, current = [], []
        for token in tokens:
            if token == "|":
                commands.append(current)
                current = []
            else:
                if token.startswith("(") or token.endswith(")"):
                    raise TemplateError(f"parenthesised expressions are not supported: {text!r}")
                current.append(token)
        commands.append(current)
        value = MISSING
        for command in commands:
            if not command:
                raise TemplateError(f"empty command in {text!r}")
            head, args = command[0], [self.term(a, dot) for a in command[1:]]
            if value is not MISSING:
                args.append(value)
            if head in self.functions:
                try:
                    value = self.functions[head](*args)
                except TypeError as exc:
                    raise TemplateError(f"bad arguments for {head} in {text!r}: {exc}") from None
            elif not args:
                value = self.term(head, dot)
            else:
                raise TemplateError(f"unsupported function {head!r} in {text!r}")
        return value

    def term(self, token: str, dot):
        if token.startswith('"'):
            return json.loads(token)
        if re.fullmatch(r"-?[0-9]+", token):
            return int(token)
        if token in ("true", "false"):
            return token == "true"
        if token == ".":
            return dot
        if token == "$":
            return self.root
        if token.startswith("$."):
            base, path = self.root, token[2:]
        elif token.startswith("."):
            base, path = dot, token[1:]
        else:
            raise TemplateError(f"unsupported term {token!r}")
        value = base
        names = path.split(".")
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise TemplateError(f"bad field name in {token!r}")
            if not isinstance(value, dict):
                raise TemplateError(f"{token}: cannot read field {name!r} of {value!r}")
            value = value.get(name)
        return value


def load_chart(chart_dir: Path) -> tuple[dict, dict]:
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    return chart, values


def merge(base: dict, override: dict) -> dict:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def render_chart(
    chart_dir: Path, values: dict | None = None, release: str = "dataflow", namespace: str = "dataflow-system"
) -> dict[str, str]:
    """Render every templates/*.yaml like `helm template`; returns {template path: text}."""
    chart, defaults = load_chart(chart_dir)
    root = {
        "Values": merge(defaults, values or {}),
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart.get("appVersion")},
    }
    defines: dict[str, list] = {}
    parsed = {}
    for path in sorted((chart_dir / "templates").iterdir()):
        if path.suffix not in (".yaml", ".yml", ".tpl"):
            raise TemplateError(f"unexpected template file {path.name}")
        parsed[path] = parse(path.read_text(), defines)
    renderer = Renderer(defines, root)
    return {
        str(path.relative_to(chart_dir)): renderer.render(nodes, root)
        for path, nodes in parsed.items()
        if not path.name.startswith("_")
    }
