"""Label and field selectors as understood by the Kubernetes API (a practical subset)."""

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_EXPR = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split by commas, but not by the commas inside ``in (a,b)`` sets."""
    return [term for term in re.split(r",(?![^(]*\))", selector) if term.strip()]


def _label_term(term: str) -> Matcher:
    if match := _SET_EXPR.match(term):
        key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if "!=" in term:
        key, value = (s.strip() for s in term.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in term:
        key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
        return lambda labels: labels.get(key) == value
    if term.strip().startswith("!"):
        key = term.strip()[1:]
        return lambda labels: key not in labels
    key = term.strip()
    return lambda labels: key in labels


def label_matcher(selector: str | None) -> Matcher:
    """Build a predicate over an object from a ``labelSelector`` (=, ==, !=, exists, !exists, in, notin)."""
    terms = [_label_term(term) for term in _split_terms(selector or "")]
    return lambda obj: all(term(obj.get("metadata", {}).get("labels") or {}) for term in terms)


def _field_value(obj: Mapping[str, Any], path: str) -> str | None:
    value: Any = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return None if value is None else str(value)


def _field_term(term: str) -> Matcher:
    negate = "!=" in term
    path, value = (s.strip() for s in term.replace("==", "=").replace("!=", "=").split("=", 1))
    if negate:
        return lambda obj: _field_value(obj, path) != value
    return lambda obj: _field_value(obj, path) == value


def field_matcher(selector: str | None) -> Matcher:
    """Build a predicate from a ``fieldSelector`` over any dotted path (e.g. ``metadata.name``)."""
    terms = [_field_term(term) for term in _split_terms(selector or "")]
    return lambda obj: all(term(obj) for term in terms)
