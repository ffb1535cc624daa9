"""
A Kubernetes API-server emulator for the operator tests, built on kmock's scaffold.

kmock's ``KubernetesEmulator`` stores objects as plain JSON and merges patches naively.
:class:`ApiServer` keeps kmock's machinery (the HTTP server, the request log, the DSL
for overriding reactions, the ``Status`` error rendering) but serves the API itself
as a catch-all fallback reaction with the semantics of a real API server:
uid/creationTimestamp/resourceVersion/generation, 409 on stale resourceVersions,
the status subresource, finalizers & deletionTimestamp, list kinds & selectors,
watch streams with history replay and ``timeoutSeconds``, ``generateName``,
merge/JSON/strategic patches and PUT, server-side apply with ``managedFields`` and conflicts
(tests/kube/fieldmanager.py), discovery, CRD registration with pruning of unknown fields
(tests/kube/pruning.py; ``fieldValidation`` Strict/Warn/Ignore), schema validation & defaults,
the real size limits (tests/kube/limits.py: 3 MiB requests, 256 KiB of annotations, 1.5 MiB
stored objects), and the server-side Table printing for ``kubectl get``.

Usage in tests::

    async with run_api_server(tmp_path / 'kubeconfig') as api:
        api.load_crd('crds/widgets.yaml')                       # preload a CRD (path or dict)
        api.create('v1/secrets', {'metadata': {'name': 's'}, 'data': {}}, namespace='default')
        # kubectl must run without blocking the loop that serves it (no plain subprocess.run):
        await asyncio.create_subprocess_exec('kubectl', 'get', 'widgets', env={'KUBECONFIG': ...})
        assert api.get('test.dataflow.dev/v1/widgets', 'default', 'w1')['status'] == ...
        assert api.objects['v1/secrets', 'default', 's'].history  # kmock's versioned view

Kopf connects via a login handler (not via kubeconfig, to avoid depending on
the process-global ``KUBECONFIG`` and the ``kubernetes``/``pykube`` client libraries)::

    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return api.connection_info()

    await kopf.operator(registry=registry, standalone=True, namespaces=['default'], stop_flag=...)

kubectl connects via the written kubeconfig: ``KUBECONFIG=api.kubeconfig`` (plain http, no auth).
Kopf's ``login_with_kubeconfig`` would work with the same file, but reads the global ``KUBECONFIG``.

Limitations: objects are stored per group/version (no conversion between CRD versions);
namespaces are not required to exist; no RBAC, no admission webhooks, no dry runs; strategic merge
patches merge like JSON merge patches; server-side apply merges by the CRD's schema only (built-in
kinds are treated as schemaless, except ObjectMeta).
"""

import asyncio
import contextlib
import copy
import datetime
import json
import pathlib
import secrets
import string
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
import kopf
import yaml

from tests.kube import fieldmanager, limits, patches, pruning, resources, selectors, tables
from tests.kube.paths import ApiPath, parse_api_path
from tests.kube.resources import ResourceSpec
from tests.kube.store import ObjectStore

CRD_KEY = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
DEFAULT_WATCH_TIMEOUT = 3600.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """A Kubernetes ``Status`` failure, rendered by kmock as the response body."""
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


def _header(request: kmock.Request, name: str) -> str:
    return next((value for key, value in request.headers.items() if key.lower() == name.lower()), "")


def _status_response(status: int, reason: str, message: str, details: Any = None) -> aiohttp.web.Response:
    """A ``Status`` failure as the API server sends it (an empty reason is omitted, as in Go)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "code": status,
    }
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    return aiohttp.web.json_response(body, status=status)


def _kmock_parsable(raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.BaseRequest:
    """
    Work around kmock 0.8's path parser, which crashes on ``/api/v1/namespaces`` exactly.

    The path gets an empty segment, which kmock tolerates and our own parser ignores.
    """
    if raw_request.path.rstrip("/") != "/api/v1/namespaces":
        return raw_request
    rel_url = raw_request.rel_url.with_path("/api/v1//namespaces").with_query(raw_request.rel_url.query)
    return raw_request.clone(rel_url=rel_url)


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that bumps the generation: all but metadata & status."""
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesScaffold):
    """An in-memory Kubernetes API server; see the module docstring."""

    kubeconfig: pathlib.Path | None = None
    _store: ObjectStore = attrs.field(factory=ObjectStore, init=False)
    _specs: dict[tuple[str, str, str], ResourceSpec] = attrs.field(factory=dict, init=False)
    # The request being served: routing is synchronous, so one request at a time sets these.
    _field_validation: str = attrs.field(default="Ignore", init=False)
    _warnings: list[str] = attrs.field(factory=list, init=False)
    warnings: list[str] = attrs.field(factory=list, init=False)  # every warning sent, for assertions
    refusals: list[str] = attrs.field(factory=list, init=False)  # every error answered: "422 Invalid: ..."

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        (self.fallback**1) << self._serve  # above kmock's own fallbacks, below any test reactions
        for spec in resources.BUILTIN_RESOURCES:
            self._specs[spec.key] = spec
        self.create("v1/namespaces", {"metadata": {"name": "default"}})

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # Read the body under the API server's limit (aiohttp's own default would be 1 MiB).
        raw_request = _kmock_parsable(raw_request).clone(client_max_size=limits.MAX_REQUEST_BODY_BYTES)
        try:
            await raw_request.read()
        except aiohttp.web.HTTPRequestEntityTooLarge:
            return _status_response(413, "RequestEntityTooLarge", limits.REQUEST_TOO_LARGE_MESSAGE)
        return await super().__call__(raw_request)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            self.refusals.append(f"{exc.status} {exc.reason or ''}: {(exc.message or '')[:300]}")
            return _status_response(exc.status, exc.reason or "", exc.message or "", exc.details)
        return await super()._render_error(exc)

    # --- Public helpers for tests -------------------------------------------------------------

    @property
    def objects(self) -> kmock.ObjectsArray:
        """All objects with their version histories: ``objects['v1/secrets', 'ns', 'name']``."""
        return self._store.objects

    @property
    def events(self) -> list[dict[str, Any]]:
        """All watch events ever emitted, oldest first."""
        return [event.payload() for event in self._store.events]

    def spec_of(self, resource: str) -> ResourceSpec:
        """Look up a served resource by ``group/version/plural`` or ``v1/plural``."""
        ref = kmock.resource(resource)
        try:
            return self._specs[(ref.group or "", ref.version or "", ref.plural or "")]
        except KeyError:
            raise LookupError(f"Resource {resource!r} is not served.") from None

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The current state of an object (a copy), or ``None`` if it does not exist."""
        return self._store.get(self.spec_of(resource), namespace, name)

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The current objects of a resource (copies), in one namespace or in all (``None``)."""
        return self._store.list(self.spec_of(resource), namespace)

    def create(self, resource: str, obj: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create an object as if POSTed (validated, defaulted, with all metadata assigned)."""
        self._field_validation, self._warnings = "Ignore", []
        return self._create(self.spec_of(resource), namespace, obj, manager="kube-emulator")

    def load_crd(self, crd: str | pathlib.Path | Mapping[str, Any]) -> dict[str, Any]:
        """Register a CustomResourceDefinition from a YAML file or a dict; return the stored CRD."""
        if not isinstance(crd, Mapping):
            crd = yaml.safe_load(pathlib.Path(crd).read_text())
        self._field_validation, self._warnings = "Ignore", []
        return self._create(self._specs[CRD_KEY], None, crd, manager="kube-emulator")

    def connection_info(self) -> kopf.ConnectionInfo:
        """Credentials for Kopf's ``@kopf.on.login`` handler."""
        return kopf.ConnectionInfo(
            server=str(self.url).rstrip("/"), insecure=True, default_namespace="default"
        )

    def write_kubeconfig(self, path: pathlib.Path) -> pathlib.Path:
        """Write a kubeconfig for kubectl (plain http, no auth) and remember it as ``.kubeconfig``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "emulator",
            "preferences": {},
            "clusters": [{"name": "emulator", "cluster": {"server": str(self.url).rstrip("/")}}],
            "users": [{"name": "emulator", "user": {}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": "default"},
                }
            ],
        }
        path.write_text(yaml.safe_dump(config))
        self.kubeconfig = path
        return path

    def close_watches(self) -> None:
        """End all watch streams, so that the HTTP server can shut down promptly."""
        self._store.close()

    # --- Request routing ----------------------------------------------------------------------

    async def _serve(self, request: kmock.Request) -> kmock.Response:
        """
        Serve any request not intercepted by the tests' own reactions.

        The status is always explicit: kmock keeps the status of a nested response
        in the reaction, so a 201 would otherwise leak into the following responses.
        """
        self._field_validation = request.params.get("fieldValidation") or "Warn"
        self._warnings = []
        result = self._route(request)
        response = (
            result if isinstance(result, kmock.Response) else kmock.Response(status=200, payload=result)
        )
        if self._warnings:  # one header, comma-separated warn-values (RFC 7234), as kubectl parses them
            text = ", ".join(f"299 - {json.dumps(warning)}" for warning in self._warnings)
            response = attrs.evolve(response, headers={**(response.headers or {}), "Warning": text})
        return response

    def _route(self, request: kmock.Request) -> kmock.Payload:
        path = request.url.path
        api = parse_api_path(path)
        if api is None:
            return self._discover_non_resource(path)
        if api.plural is None:
            return self._discover_version(api.group, api.version)
        spec = self._specs.get((api.group, api.version, api.plural))
        if spec is None:
            raise _error(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace = api.namespace if spec.namespaced else None
        method = request.method.value.upper()
        if api.name is None:
            return self._serve_collection(spec, namespace, request, method)
        if api.subresource not in (None, "status") or (api.subresource and not spec.status_subresource):
            raise _error(404, "NotFound", f"the server could not find the requested resource ({path})")
        return self._serve_object(spec, api, namespace, request, method)

    def _serve_collection(
        self, spec: ResourceSpec, namespace: str | None, request: kmock.Request, method: str
    ) -> kmock.Payload:
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return self._watch(spec, namespace, request.params)
        if method == "GET":
            return self._list(spec, namespace, request)
        if method == "POST":
            return kmock.Response(
                status=201, payload=self._create(spec, namespace, request.data, manager=_manager(request))
            )
        raise _error(405, "MethodNotAllowed", f"{method} is not supported on a collection")

    def _serve_object(
        self, spec: ResourceSpec, api: ApiPath, namespace: str | None, request: kmock.Request, method: str
    ) -> kmock.Payload:
        assert api.name is not None
        current = self._store.get(spec, namespace, api.name)
        content_type = _header(request, "Content-Type")
        if method == "PATCH":
            self._check_patch_options(request, content_type)
            if content_type.startswith(patches.APPLY_PATCH) and (current is not None or not api.subresource):
                return self._apply(spec, api, namespace, request, current)
        if current is None:
            raise _error(
                404,
                "NotFound",
                f'{spec.plural}.{spec.group} "{api.name}" not found',
                name=api.name,
                group=spec.group,
                kind=spec.plural,
            )
        if method == "GET":
            return (
                self._render(spec, [current], request)
                if tables.wants_table(_header(request, "Accept"))
                else current
            )
        if method == "DELETE":
            return self._delete(spec, current)
        status_only = api.subresource == "status"
        if method == "PUT":
            return self._update(
                spec, current, request.data, status_only=status_only, manager=_manager(request)
            )
        if method == "PATCH":
            try:
                candidate = patches.apply_patch(current, request.data, content_type)
            except patches.PatchError as e:
                raise _error(422, "Invalid", str(e)) from e
            return self._update(spec, current, candidate, status_only=status_only, manager=_manager(request))
        raise _error(405, "MethodNotAllowed", f"{method} is not supported on an object")

    # --- Discovery ----------------------------------------------------------------------------

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for group, version, _ in self._specs:
            if group and version not in groups.setdefault(group, []):
                groups[group].append(version)
        return groups

    @staticmethod
    def _api_group(name: str, versions: list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{name}/{version}", "version": version} for version in versions]
        return {"name": name, "versions": entries, "preferredVersion": entries[0]}

    def _discover_non_resource(self, path: str) -> dict[str, Any]:
        parts = [part for part in path.split("/") if part]
        groups = self._groups()
        if parts == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.host}],
            }
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._api_group(name, versions) for name, versions in groups.items()],
            }
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
            return {"kind": "APIGroup", "apiVersion": "v1", **self._api_group(parts[1], groups[parts[1]])}
        if parts == ["version"]:
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-emulator", "platform": "linux/amd64"}
        raise _error(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _discover_version(self, group: str, version: str) -> dict[str, Any]:
        served = [spec for spec in self._specs.values() if (spec.group, spec.version) == (group, version)]
        if not served:
            raise _error(
                404, "NotFound", f"the server could not find the requested resource ({group}/{version})"
            )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": served[0].api_version,
            "resources": [entry for spec in served for entry in spec.discovery()],
        }

    # --- Reading ------------------------------------------------------------------------------

    def _select(
        self, spec: ResourceSpec, namespace: str | None, params: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        by_labels = selectors.label_matcher(params.get("labelSelector"))
        by_fields = selectors.field_matcher(params.get("fieldSelector"))
        objs = [obj for obj in self._store.list(spec, namespace) if by_labels(obj) and by_fields(obj)]
        return sorted(objs, key=lambda obj: (obj["metadata"].get("namespace") or "", obj["metadata"]["name"]))

    def _render(
        self, spec: ResourceSpec, objs: list[dict[str, Any]], request: kmock.Request
    ) -> dict[str, Any]:
        include = request.params.get("includeObject", "Metadata")
        return tables.render_table(spec, objs, self._store.resource_version, include)

    def _list(self, spec: ResourceSpec, namespace: str | None, request: kmock.Request) -> dict[str, Any]:
        objs = self._select(spec, namespace, request.params)
        if tables.wants_table(_header(request, "Accept")):
            return self._render(spec, objs, request)
        return {
            "kind": f"{spec.kind}List",
            "apiVersion": spec.api_version,
            "metadata": {"resourceVersion": self._store.resource_version},
            "items": objs,
        }

    async def _watch(
        self, spec: ResourceSpec, namespace: str | None, params: Mapping[str, str]
    ) -> AsyncIterator[kmock.Payload]:
        """Stream the initial state (if no resourceVersion given) and then the changes."""
        yield b""  # send the headers at once, even if nothing happens (as kmock does)
        deadline = asyncio.get_running_loop().time() + float(
            params.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT
        )
        since = params.get("resourceVersion") or "0"
        cursor = int(since) if since != "0" else int(self._store.resource_version)
        if since == "0":
            for obj in self._select(spec, namespace, params):
                yield {"type": "ADDED", "object": obj}
        by_labels = selectors.label_matcher(params.get("labelSelector"))
        by_fields = selectors.field_matcher(params.get("fieldSelector"))
        while True:
            for event in list(self._store.events_after(cursor)):
                cursor = event.rv
                obj_namespace = event.object["metadata"].get("namespace")
                if event.resource == spec.key and namespace in (None, obj_namespace):
                    if by_labels(event.object) and by_fields(event.object):
                        yield event.payload()
            if not await self._store.wait(deadline - asyncio.get_running_loop().time()):
                return

    # --- Writing ------------------------------------------------------------------------------

    def _generate_name(self, spec: ResourceSpec, namespace: str | None, prefix: str) -> str:
        alphabet = string.ascii_lowercase + string.digits
        while True:
            name = prefix + "".join(secrets.choice(alphabet) for _ in range(5))
            if self._store.get(spec, namespace, name) is None:
                return name

    def _admit(self, spec: ResourceSpec, obj: dict[str, Any]) -> None:
        """Prune unknown fields, apply the schema defaults and validate; 400/422 naming the fields."""
        self._unknown_fields(spec, pruning.prune(obj, spec.schema))
        causes = []
        if spec.schema is not None:
            resources.apply_defaults(obj, spec.schema)
            causes = [
                {"reason": "FieldValueInvalid", "field": v.field, "message": f"{v.field}: {v.message}"}
                for v in resources.validate(obj, spec.schema)
            ]
        if limits.annotations_size(obj) > limits.TOTAL_ANNOTATION_SIZE_LIMIT:
            field = "metadata.annotations"
            message = f"{field}: {limits.ANNOTATIONS_TOO_LONG_MESSAGE}"
            causes.append({"reason": "FieldValueTooLong", "field": field, "message": message})
        if causes:
            name = obj["metadata"]["name"]
            message = f'{_qualified_kind(spec)} "{name}" is invalid: ' + "; ".join(
                c["message"] for c in causes
            )
            raise _error(422, "Invalid", message, name=name, group=spec.group, kind=spec.kind, causes=causes)

    def _unknown_fields(self, spec: ResourceSpec, dropped: list[str]) -> None:
        """``fieldValidation``: Strict refuses unknown fields (400), Warn (the default) warns, Ignore not."""
        if not dropped or self._field_validation == "Ignore":
            return
        unknown = [f"unknown field {json.dumps(path)}" for path in dropped]
        if self._field_validation == "Strict":
            raise _error(
                400,
                "BadRequest",
                f'{spec.kind} in version "{spec.version}" cannot be handled as a {spec.kind}: '
                "strict decoding error: " + ", ".join(unknown),
            )
        self._warnings += unknown
        self.warnings += unknown

    @staticmethod
    def _check_stored_size(obj: Mapping[str, Any]) -> None:
        """What etcd refuses (see tests/kube/limits.py for the exact response)."""
        if limits.stored_size(obj) > limits.MAX_STORED_OBJECT_BYTES:
            raise _error(500, "", limits.ETCD_TOO_LARGE_MESSAGE)

    @staticmethod
    def _check_patch_options(request: kmock.Request, content_type: str) -> None:
        """``ValidatePatchOptions``: apply needs a fieldManager; only apply may force."""
        apply = content_type.startswith(patches.APPLY_PATCH)
        problem = None
        if apply and not request.params.get("fieldManager"):
            problem = "fieldManager: Required value: is required for apply patch"
        elif not apply and "force" in request.params:
            problem = "force: Forbidden: may not be specified for non-apply patch"
        if problem:
            raise _error(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: {problem}')

    def _create(
        self, spec: ResourceSpec, namespace: str | None, body: Any, manager: str | None
    ) -> dict[str, Any]:
        """Store a new object; ``manager`` owns its fields (``None``: managedFields are set already)."""
        if not isinstance(body, Mapping):
            raise _error(400, "BadRequest", "the body of the request must be a JSON object")
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        namespace = (namespace or meta.get("namespace") or "default") if spec.namespaced else None
        if namespace is not None:
            meta["namespace"] = namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(spec, namespace, meta["generateName"])
        if not meta.get("name"):
            raise _error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        if self._store.get(spec, namespace, meta["name"]) is not None:
            raise _error(
                409,
                "AlreadyExists",
                f'{spec.plural}.{spec.group} "{meta["name"]}" already exists',
                name=meta["name"],
                group=spec.group,
                kind=spec.plural,
            )
        if spec.status_subresource:
            obj.pop("status", None)
        obj.update(apiVersion=spec.api_version, kind=spec.kind)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        for field in ("resourceVersion", "deletionTimestamp"):
            meta.pop(field, None)
        if manager is not None:
            meta.pop("managedFields", None)
        self._admit(spec, obj)
        if manager is not None:
            fieldmanager.record_update(_endpoint(spec, None), None, obj, manager, [])
        self._on_stored(spec, obj)
        self._check_stored_size(obj)
        return self._store.save(spec, obj, "ADDED")

    def _update(
        self,
        spec: ResourceSpec,
        current: dict[str, Any],
        candidate: Any,
        status_only: bool,
        manager: str | None,
    ) -> dict[str, Any]:
        """Store a new version; ``manager`` gets the fields it changed (``None``: an apply did that)."""
        if not isinstance(candidate, Mapping):
            raise _error(400, "BadRequest", "the resulting object must be a JSON object")
        meta = current["metadata"]
        stale = (candidate.get("metadata") or {}).get("resourceVersion")
        if stale and stale != meta["resourceVersion"]:
            raise _error(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {spec.plural}.{spec.group} "
                f'"{meta["name"]}": the object has been modified; please apply your changes '
                f"to the latest version and try again",
                name=meta["name"],
                kind=spec.plural,
            )
        new = self._merge_write(spec, current, dict(candidate), status_only)
        # managedFields written by the client are honoured (kubectl's client-side-apply upgrade does
        # that); a write without them keeps the stored ones.
        written = (candidate.get("metadata") or {}).get("managedFields")
        if not (manager is None or (written and isinstance(written, list) and not status_only)):
            written = meta.get("managedFields")
        new["metadata"].pop("managedFields", None)
        if written:
            new["metadata"]["managedFields"] = written
        self._admit(spec, new)
        if new == current:
            return current  # a no-op: no new resourceVersion, no watch event
        if manager is not None:
            endpoint = _endpoint(spec, "status" if status_only else None)
            entries = fieldmanager.decode_managed(new)
            fieldmanager.record_update(endpoint, current, new, manager, entries)
        if _spec_part(new) != _spec_part(current):
            new["metadata"]["generation"] = meta.get("generation", 1) + 1
        self._on_stored(spec, new)
        self._check_stored_size(new)
        saved = self._store.save(spec, new, "MODIFIED")
        if saved["metadata"].get("deletionTimestamp") and not saved["metadata"].get("finalizers"):
            return self._store.remove(spec, saved)
        return saved

    @staticmethod
    def _merge_write(
        spec: ResourceSpec, current: dict[str, Any], candidate: dict[str, Any], status_only: bool
    ) -> dict[str, Any]:
        """Combine the stored object with the written one as per the subresource rules."""
        if status_only:
            new = copy.deepcopy(current)
            source: Mapping[str, Any] = candidate
        else:
            new = copy.deepcopy(candidate)
            source = current if spec.status_subresource else candidate
        new.pop("status", None)
        if source.get("status") is not None:
            new["status"] = copy.deepcopy(source["status"])
        meta = new.setdefault("metadata", {})
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "resourceVersion",
        ):
            meta.pop(field, None)
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        new.update(apiVersion=spec.api_version, kind=spec.kind)
        return new

    def _apply(
        self,
        spec: ResourceSpec,
        api: ApiPath,
        namespace: str | None,
        request: kmock.Request,
        current: dict[str, Any] | None,
    ) -> kmock.Payload:
        """Server-side apply (see tests/kube/fieldmanager.py); creates the object if it is missing."""
        assert api.name is not None
        try:
            applied = yaml.safe_load(request.body or b"{}")
        except yaml.YAMLError as e:
            raise _error(400, "BadRequest", f"error decoding YAML: {e}") from e
        if not isinstance(applied, dict):
            raise _error(400, "BadRequest", "the body of the request must be an object")
        if applied.get("apiVersion") != spec.api_version or applied.get("kind") != spec.kind:
            raise _error(
                400,
                "BadRequest",
                f"the API version and kind in the data ({applied.get('apiVersion')}, {applied.get('kind')}) "
                f"do not match the expected ({spec.api_version}, {spec.kind})",
            )
        meta = applied.setdefault("metadata", {})
        if not isinstance(meta, dict) or meta.get("name", api.name) != api.name:
            raise _error(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name') if isinstance(meta, dict) else None}) "
                f"does not match the name on the URL ({api.name})",
            )
        self._unknown_fields(spec, pruning.prune(applied, spec.schema))
        endpoint = _endpoint(spec, api.subresource)
        force = request.params.get("force") in ("true", "1")
        try:
            new = fieldmanager.apply(endpoint, current, applied, request.params["fieldManager"], force)
        except fieldmanager.ApplyConflict as e:
            raise _error(409, "Conflict", e.message, causes=e.causes) from e
        if current is None:
            new["metadata"].update(name=api.name)
            if namespace is not None:
                new["metadata"]["namespace"] = namespace
            return kmock.Response(status=201, payload=self._create(spec, namespace, new, manager=None))
        return self._update(spec, current, new, status_only=api.subresource == "status", manager=None)

    def _delete(self, spec: ResourceSpec, current: dict[str, Any]) -> dict[str, Any]:
        meta = current["metadata"]
        if not meta.get("finalizers"):
            self._on_removed(spec, current)
            return self._store.remove(spec, current)
        if meta.get("deletionTimestamp"):
            return current
        meta["deletionTimestamp"] = _now()
        return self._store.save(spec, current, "MODIFIED")

    # --- CRDs ---------------------------------------------------------------------------------

    def _on_stored(self, spec: ResourceSpec, obj: dict[str, Any]) -> None:
        """Serve the resources of a stored CRD (and mark the CRD as established)."""
        if spec.key != CRD_KEY:
            return
        for crd_spec in resources.specs_from_crd(obj):
            self._specs[crd_spec.key] = crd_spec
        obj["status"] = {
            "acceptedNames": obj["spec"]["names"],
            "storedVersions": [
                version["name"] for version in obj["spec"]["versions"] if version.get("storage")
            ],
            "conditions": [
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
            ],
        }

    def _on_removed(self, spec: ResourceSpec, obj: dict[str, Any]) -> None:
        """Stop serving the resources of a deleted CRD."""
        if spec.key == CRD_KEY:
            for crd_spec in resources.specs_from_crd(obj):
                self._specs.pop(crd_spec.key, None)


def _manager(request: kmock.Request) -> str:
    """The field manager of a non-apply write: ``fieldManager``, else the User-Agent's product."""
    return request.params.get("fieldManager") or fieldmanager.manager_from_user_agent(
        _header(request, "User-Agent")
    )


def _endpoint(spec: ResourceSpec, subresource: str | None) -> fieldmanager.Endpoint:
    return fieldmanager.Endpoint(spec.schema, spec.api_version, spec.status_subresource, subresource)


def _qualified_kind(spec: ResourceSpec) -> str:
    """``Kind.group`` as in the API server's Invalid messages (just ``Kind`` for the core group)."""
    return f"{spec.kind}.{spec.group}" if spec.group else spec.kind


@contextlib.asynccontextmanager
async def run_api_server(kubeconfig: pathlib.Path | None = None) -> AsyncIterator[ApiServer]:
    """Run an :class:`ApiServer` on 127.0.0.1 on a free port; optionally write a kubeconfig."""
    async with ApiServer() as api, kmock.Server(api):
        if kubeconfig is not None:
            api.write_kubeconfig(kubeconfig)
        try:
            yield api
        finally:
            api.close_watches()
