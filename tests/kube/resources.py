"""Resource definitions served by the emulator: built-in kinds and CRD-declared ones."""

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    """What the API server knows about one resource in one group-version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    schema: Mapping[str, Any] | None = None
    printer_columns: tuple[Mapping[str, Any], ...] = ()

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` of objects of this resource: ``group/version`` or ``v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        """The identity of the resource: (group, version, plural)."""
        return self.group, self.version, self.plural

    def discovery(self) -> Iterator[dict[str, Any]]:
        """Yield the APIResource entries of this resource and its subresources."""
        yield {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
            "shortNames": list(self.short_names),
            "categories": list(self.categories),
        }
        if self.status_subresource:
            yield {
                "name": f"{self.plural}/status",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": list(SUBRESOURCE_VERBS),
            }


def _core(
    plural: str, kind: str, namespaced: bool = True, short: tuple[str, ...] = (), status: bool = False
) -> ResourceSpec:
    return ResourceSpec(
        "", "v1", plural, kind, namespaced=namespaced, short_names=short, status_subresource=status
    )


BUILTIN_RESOURCES: tuple[ResourceSpec, ...] = (
    _core("namespaces", "Namespace", namespaced=False, short=("ns",), status=True),
    _core("secrets", "Secret"),
    _core("configmaps", "ConfigMap", short=("cm",)),
    _core("events", "Event", short=("ev",)),
    _core("pods", "Pod", short=("po",), status=True),
    _core("services", "Service", short=("svc",), status=True),
    _core("serviceaccounts", "ServiceAccount", short=("sa",)),
    ResourceSpec("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceSpec(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        status_subresource=True,
    ),
    ResourceSpec("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
    ResourceSpec("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
)


def specs_from_crd(crd: Mapping[str, Any]) -> list[ResourceSpec]:
    """Build one resource spec per served version of a CustomResourceDefinition."""
    spec = crd["spec"]
    names = spec["names"]
    return [
        ResourceSpec(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular", ""),
            short_names=tuple(names.get("shortNames", ())),
            categories=tuple(names.get("categories", ())),
            status_subresource="status" in (version.get("subresources") or {}),
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=tuple(version.get("additionalPrinterColumns", ())),
        )
        for version in spec["versions"]
        if version.get("served", True)
    ]


def apply_defaults(obj: Any, schema: Mapping[str, Any]) -> None:
    """Fill in the ``default`` values of the schema's properties absent in the object (in place)."""
    if isinstance(obj, dict):
        for name, subschema in (schema.get("properties") or {}).items():
            if name not in obj and "default" in subschema:
                obj[name] = copy.deepcopy(subschema["default"])
            if name in obj:
                apply_defaults(obj[name], subschema)
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for item in obj:
            apply_defaults(item, schema["items"])


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One schema violation, addressed by a dotted field path (as in ``kubectl`` messages)."""

    field: str
    message: str


def _field_of(error: jsonschema.ValidationError) -> str:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [name for name in error.validator_value if name not in error.instance]
        path += missing[:1]
    return ".".join(path) or "<root>"


def validate(obj: Mapping[str, Any], schema: Mapping[str, Any]) -> list[FieldViolation]:
    """Validate an object against an openAPIV3Schema; return the violations (empty if valid)."""
    validator = jsonschema.Draft7Validator(schema)
    return [
        FieldViolation(_field_of(error), error.message)
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
