"""
Server-side apply and ``metadata.managedFields``, as kube-apiserver's field manager does them.

A simplified structured-merge-diff over the CRD's schema (``k8s.io/apiserver/.../fieldmanager``,
``sigs.k8s.io/structured-merge-diff``):

- A field set holds the leaves of an object as ``fieldsV1`` paths (``f:spec``, ``f:tables``...).
  Maps are granular unless ``x-kubernetes-map-type: atomic``; lists are atomic unless
  ``x-kubernetes-list-type`` is ``map`` (items ``k:{...}``, owned themselves with ``.``) or ``set``
  (items ``v:...``). ``metadata`` follows ObjectMeta: finalizers a set, ownerReferences a map by uid.
- Identity and server-set fields are never owned (the strip set of ``stripmeta.go``), nor ``status``
  on the main resource of a kind with a status subresource, nor anything but ``status`` on it.
- Apply (``application/apply-patch+yaml``, ``fieldManager`` required): the applied fields are set;
  fields the manager applied before and no longer applies are removed unless someone else owns
  them; a field whose value changes while another manager owns it is a conflict (409) unless
  ``force=true``, which takes the field over. Same values are shared, without conflict.
- Every other write records the fields it added or changed for its manager (operation ``Update``,
  manager from ``fieldManager`` or the User-Agent's product name) and takes them from the others.
- The manager ``kubectl`` taking over from client-side apply: fields still as last applied do not
  conflict, and an existing last-applied annotation is kept in step (lastapplied*.go).
"""

import copy
import dataclasses
import datetime
import json
from collections.abc import Iterator, Mapping
from typing import Any

Path = tuple[str, ...]
APPLY = "Apply"
KUBECTL = "kubectl"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
UPDATE = "Update"
MAX_MANAGER_LENGTH = 128

_STRIPPED: frozenset[Path] = frozenset(
    {("f:apiVersion",), ("f:kind",)}
    | {
        ("f:metadata", f"f:{name}")
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "generation",
            "managedFields",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        )
    }
)
_METADATA_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ownerReferences": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"],
            "items": {"type": "object"},
        },
    },
}


class ApplyConflict(Exception):
    """Fields of the applied configuration owned by other managers with other values."""

    def __init__(self, conflicts: list[tuple[str, str, str]]) -> None:
        super().__init__(conflicts)
        self.conflicts = conflicts  # (manager, apiVersion, field)

    @property
    def message(self) -> str:
        """The message of ``sigs.k8s.io/structured-merge-diff/merge.Conflicts`` as the server sends it."""
        count = len(self.conflicts)
        if count == 1:
            manager, api_version, field = self.conflicts[0]
            return f'Apply failed with 1 conflict: conflict with "{manager}" using {api_version}: {field}'
        lines = "\n".join(f'- "{m}" using {v}: {f}' for m, v, f in self.conflicts)
        return f"Apply failed with {count} conflicts: conflicts with\n{lines}"

    @property
    def causes(self) -> list[dict[str, str]]:
        return [
            {"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {v}', "field": f}
            for m, v, f in self.conflicts
        ]


def manager_from_user_agent(user_agent: str) -> str:
    """The default manager of a non-apply write: the User-Agent's product (``kubectl/v1.32`` -> kubectl)."""
    return user_agent.split("/", 1)[0][:MAX_MANAGER_LENGTH] or "unknown"


# --- Field paths ----------------------------------------------------------------------------------


def _child_schema(schema: Mapping[str, Any] | None, key: str) -> Mapping[str, Any] | None:
    if schema is None:
        return None
    properties = schema.get("properties") or {}
    if key in properties:
        return properties[key]
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, Mapping) else None


def _item_key(item: Any, keys: list[str]) -> str:
    fields = {key: item.get(key) for key in sorted(keys)} if isinstance(item, Mapping) else {}
    return "k:" + json.dumps(fields, separators=(",", ":"), sort_keys=True)


def _set_key(item: Any) -> str:
    return "v:" + json.dumps(item, separators=(",", ":"), sort_keys=True)


def _walk(value: Any, schema: Mapping[str, Any] | None, path: Path) -> Iterator[tuple[Path, Any]]:
    """Yield the owned paths of a value with their values: leaves, atomics, and list-map items."""
    schema = schema or {}
    if isinstance(value, dict) and value and schema.get("x-kubernetes-map-type") != "atomic":
        for key, child in value.items():
            yield from _walk(child, _child_schema(schema, key), (*path, f"f:{key}"))
    elif isinstance(value, list) and value and schema.get("x-kubernetes-list-type") == "map":
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else None
        keys = list(schema.get("x-kubernetes-list-map-keys") or ())
        for item in value:
            item_path = (*path, _item_key(item, keys))
            yield item_path, json.loads(item_path[-1][2:])  # membership: its value is its key
            yield from _walk(item, items, item_path)
    elif isinstance(value, list) and value and schema.get("x-kubernetes-list-type") == "set":
        for item in value:
            yield (*path, _set_key(item)), item
    else:
        yield path, value


def _root_schema(schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
    properties = dict((schema or {}).get("properties") or {})
    properties["metadata"] = _METADATA_SCHEMA
    return {**(schema or {}), "properties": properties}


def _owned(path: Path, subresource: str | None, has_status: bool) -> bool:
    if path in _STRIPPED or path == ("f:metadata",):
        return False
    in_status = path[:1] == ("f:status",)
    if subresource == "status":
        return in_status
    return not (in_status and has_status)


def field_values(
    obj: Mapping[str, Any], schema: Mapping[str, Any] | None, subresource: str | None, has_status: bool
) -> dict[Path, Any]:
    """The ownable paths of an object (as a manager of this endpoint would own them) with their values."""
    return {
        path: value
        for path, value in _walk(dict(obj), _root_schema(schema), ())
        if path and _owned(path, subresource, has_status)
    }


def _covers(owner: Path, path: Path) -> bool:
    """Whether owning ``owner`` means owning ``path`` (the same path or an atomic ancestor)."""
    return path[: len(owner)] == owner


def display(path: Path) -> str:
    """A path as the server prints it in conflicts: ``.spec.tables``, ``.status.conditions[type="Ready"]``."""
    out = ""
    for element in path:
        kind, text = element[:2], element[2:]
        if kind == "f:":
            out += f".{text}"
        elif kind == "k:":
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(text).items()) + "]"
        else:
            out += f"[={text}]"
    return out


# --- managedFields encoding -------------------------------------------------------------------------


def encode_fields(paths: set[Path]) -> dict[str, Any]:
    """A set of paths as ``fieldsV1``: nested ``{"f:x": {...}}``, with ``"."`` for owned inner nodes."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        if any(len(other) > len(path) and other[: len(path)] == path for other in paths):
            node["."] = {}
    return tree


def decode_fields(tree: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    """``fieldsV1`` back into a set of paths."""
    paths: set[Path] = set()
    for key, child in tree.items():
        if key == ".":
            paths.add(prefix)
        elif isinstance(child, Mapping) and child:
            paths |= decode_fields(child, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


@dataclasses.dataclass
class Entry:
    """One ``managedFields`` entry: what one manager owns through one operation and endpoint."""

    manager: str
    operation: str
    api_version: str
    subresource: str | None
    fields: set[Path]
    time: str

    @property
    def key(self) -> tuple[str, str, str | None]:
        return self.manager, self.operation, self.subresource

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def decode_managed(obj: Mapping[str, Any]) -> list[Entry]:
    """The ``metadata.managedFields`` of an object, decoded."""
    return [
        Entry(
            manager=raw.get("manager", ""),
            operation=raw.get("operation", UPDATE),
            api_version=raw.get("apiVersion", ""),
            subresource=raw.get("subresource") or None,
            fields=decode_fields(raw.get("fieldsV1") or {}),
            time=raw.get("time", ""),
        )
        for raw in (obj.get("metadata") or {}).get("managedFields") or []
        if isinstance(raw, Mapping)
    ]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def store_managed(obj: dict[str, Any], entries: list[Entry]) -> None:
    """Write the entries that still own something into ``metadata.managedFields`` (or drop it)."""
    kept = [entry.to_json() for entry in entries if entry.fields]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)


def _entry(entries: list[Entry], key: tuple[str, str, str | None], api_version: str) -> Entry:
    for entry in entries:
        if entry.key == key:
            entry.api_version = api_version
            return entry
    entry = Entry(key[0], key[1], api_version, key[2], set(), _now())
    entries.append(entry)
    return entry


# --- Non-apply writes -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a write goes: the resource's schema and version, and the subresource if any."""

    schema: Mapping[str, Any] | None
    api_version: str
    has_status: bool
    subresource: str | None = None

    def values(
        self, obj: Mapping[str, Any] | None, subresource: str | None | bool = False
    ) -> dict[Path, Any]:
        sub = self.subresource if subresource is False else subresource
        return field_values(obj or {}, self.schema, sub, self.has_status)  # type: ignore[arg-type]


def record_update(
    endpoint: Endpoint, old: Mapping[str, Any] | None, new: dict[str, Any], manager: str, entries: list[Entry]
) -> None:
    """Give ``manager`` (operation Update) the fields this write added or changed; store managedFields."""
    before = {**endpoint.values(old, None), **endpoint.values(old, "status")} if old else {}
    after = {**endpoint.values(new, None), **endpoint.values(new, "status")}
    changed = {path for path, value in after.items() if path not in before or before[path] != value}
    gone = set(before) - set(after)
    if changed:
        entry = _entry(entries, (manager, UPDATE, endpoint.subresource), endpoint.api_version)
        entry.time = _now()
        for other in entries:
            if other is not entry:
                other.fields -= changed
        entry.fields |= changed
    for entry in entries:
        entry.fields = {path for path in entry.fields if path in after and path not in gone}
    store_managed(new, entries)


# --- Apply ----------------------------------------------------------------------------------------


def _get(obj: Any, path: Path) -> tuple[bool, Any]:
    node = obj
    for element in path:
        kind, text = element[:2], element[2:]
        if kind == "f:" and isinstance(node, dict) and text in node:
            node = node[text]
        elif kind == "k:" and isinstance(node, list):
            found = [item for item in node if isinstance(item, dict) and _matches(item, json.loads(text))]
            if not found:
                return False, None
            node = found[0]
        elif kind == "v:" and isinstance(node, list) and json.loads(text) in node:
            node = json.loads(text)
        else:
            return False, None
    return True, node


def _matches(item: Mapping[str, Any], key: Mapping[str, Any]) -> bool:
    return all(item.get(name) == value for name, value in key.items())


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = obj
    for index, element in enumerate(path):
        kind, text = element[:2], element[2:]
        last = index == len(path) - 1
        if kind == "f:":
            if last:
                node[text] = copy.deepcopy(value)
                return
            following = path[index + 1][:2]
            if not isinstance(node.get(text), dict if following == "f:" else list):
                node[text] = {} if following == "f:" else []
            node = node[text]
        elif kind == "k:":
            key = json.loads(text)
            found = [item for item in node if isinstance(item, dict) and _matches(item, key)]
            if not found:
                node.append(copy.deepcopy(value) if last else dict(key))
                found = [node[-1]]
            if last:
                found[0].update(copy.deepcopy(value))
                return
            node = found[0]
        else:  # v: a set member
            member = json.loads(text)
            if member not in node:
                node.append(member)
            return


def _remove(obj: dict[str, Any], path: Path) -> None:
    found, parent = _get(obj, path[:-1])
    if not found:
        return
    kind, text = path[-1][:2], path[-1][2:]
    if kind == "f:" and isinstance(parent, dict):
        parent.pop(text, None)
    elif kind == "k:" and isinstance(parent, list):
        parent[:] = [
            item for item in parent if not (isinstance(item, dict) and _matches(item, json.loads(text)))
        ]
    elif kind == "v:" and isinstance(parent, list):
        parent[:] = [item for item in parent if item != json.loads(text)]


def apply(
    endpoint: Endpoint,
    live: dict[str, Any] | None,
    applied: Mapping[str, Any],
    manager: str,
    force: bool,
) -> dict[str, Any]:
    """
    The object after ``manager`` applies ``applied`` to ``live`` (``None``: create), managedFields
    included; raise :class:`ApplyConflict` for fields others own with other values (unless forced).
    """
    entries = decode_managed(live or {})
    before = {entry.key: set(entry.fields) for entry in entries}
    wanted = endpoint.values(applied)
    current = endpoint.values(live) if live else {}
    key = (manager, APPLY, endpoint.subresource)
    others = [entry for entry in entries if entry.key != key]

    conflicts: list[tuple[str, str, Path]] = []
    for entry in others:
        for owned in sorted(entry.fields):
            for path, value in wanted.items():
                if (
                    (_covers(owned, path) or _covers(path, owned))
                    and path in current
                    and current[path] != value
                ):
                    conflicts.append((entry.manager, entry.api_version, owned))
                    break
    if conflicts and not force:
        # lastappliedmanager.go: kubectl taking over from its client-side apply may override the
        # fields of the last-applied annotation that still have their last-applied values.
        allowed = _client_side_applied(endpoint, live) if manager == KUBECTL else set()
        if not {path for _, _, path in conflicts} <= allowed:
            raise ApplyConflict([(m, v, display(path)) for m, v, path in conflicts if path not in allowed])
        force = True

    new = copy.deepcopy(live) if live else {"metadata": {}}
    for path in sorted(wanted, key=len):
        _set(new, path, wanted[path])
    mine = _entry(entries, key, endpoint.api_version)
    for path in sorted(mine.fields - set(wanted), key=len, reverse=True):
        if not any(
            _covers(owned, path) or _covers(path, owned) for entry in others for owned in entry.fields
        ):
            _remove(new, path)
    if force:
        for entry in others:
            entry.fields = {
                owned
                for owned in entry.fields
                if not any(_covers(path, owned) or _covers(owned, path) for path in wanted)
            }
    mine.fields = set(wanted)
    present = {**endpoint.values(new, None), **endpoint.values(new, "status")}
    for entry in entries:
        entry.fields = {path for path in entry.fields if path in present}
        if entry.fields != before.get(entry.key) or (entry is mine and new != live):
            entry.time = _now()  # a no-op apply changes nothing, not even a timestamp
    store_managed(new, entries)
    annotations = new.get("metadata", {}).get("annotations") or {}
    if manager == KUBECTL and LAST_APPLIED in annotations:
        # lastappliedupdater.go: keep the annotation in step, so that kubectl can switch back.
        config = copy.deepcopy(dict(applied))
        config_annotations = (config.get("metadata") or {}).get("annotations") or {}
        config_annotations.pop(LAST_APPLIED, None)
        annotations[LAST_APPLIED] = json.dumps(config, separators=(",", ":"))
    return new


def _client_side_applied(endpoint: Endpoint, live: Mapping[str, Any] | None) -> set[Path]:
    """The fields of the last-applied annotation whose values are still the live ones."""
    text = ((live or {}).get("metadata") or {}).get("annotations", {}).get(LAST_APPLIED)
    try:
        last = json.loads(text) if text else None
    except ValueError:
        return set()
    if not isinstance(last, dict):
        return set()
    current = endpoint.values(live)
    return {path for path, value in endpoint.values(last).items() if current.get(path) == value}
