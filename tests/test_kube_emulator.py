"""Tests of the Kubernetes API-server emulator over real HTTP, with real kubectl and real Kopf."""

import asyncio
import json
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import pytest
import yaml

from tests.kube import limits
from tests.kube.emulator import ApiServer, run_api_server

GROUP = "test.dataflow.dev"
WIDGETS = f"/apis/{GROUP}/v1/namespaces/default/widgets"
MERGE = {"Content-Type": "application/merge-patch+json"}

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "default": "blue"},
                                    "notes": {"type": "string"},
                                    "parts": {
                                        "type": "array",
                                        "items": {"type": "object", "properties": {"n": {"type": "integer"}}},
                                    },
                                    "extras": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                        "properties": {
                                            "known": {
                                                "type": "object",
                                                "properties": {"a": {"type": "integer"}},
                                            }
                                        },
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "seenSize": {"type": "integer"},
                                    "poked": {"type": "string"},
                                    "kopf": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def noted(name: str, notes: str) -> dict[str, Any]:
    """A widget with ``spec.notes``: a payload of any size."""
    obj = widget(name)
    obj["spec"]["notes"] = notes
    return obj


def widget(name: str, size: int = 1, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name, **metadata},
        "spec": {"size": size},
    }


@pytest.fixture()
async def api(tmp_path: pathlib.Path) -> AsyncIterator[ApiServer]:
    async with run_api_server(tmp_path / "kubeconfig") as server:
        server.load_crd(WIDGET_CRD)
        yield server


@pytest.fixture()
async def http(api: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(str(api.url)) as session:
        yield session


async def send(
    http: aiohttp.ClientSession, method: str, path: str, expect: int = 200, **kwargs: Any
) -> dict[str, Any]:
    async with http.request(method, path, **kwargs) as response:
        body = await response.json()
        assert response.status == expect, body
        return body


async def create_widget(http: aiohttp.ClientSession, name: str, **kwargs: Any) -> dict[str, Any]:
    return await send(http, "POST", WIDGETS, 201, json=widget(name, **kwargs))


# --- Object metadata & writes ---------------------------------------------------------------------


async def test_create_assigns_metadata_and_defaults(http: aiohttp.ClientSession) -> None:
    first = await create_widget(http, "w1")
    second = await create_widget(http, "w2")
    assert first["metadata"]["uid"] and first["metadata"]["uid"] != second["metadata"]["uid"]
    assert first["metadata"]["creationTimestamp"].endswith("Z")
    assert first["metadata"]["generation"] == 1
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert first["spec"] == {"size": 1, "color": "blue"}  # the schema default


async def test_generation_bumps_only_on_spec_changes(http: aiohttp.ClientSession) -> None:
    created = await create_widget(http, "w1")
    labelled = await send(
        http, "PATCH", f"{WIDGETS}/w1", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE
    )
    status = await send(
        http, "PATCH", f"{WIDGETS}/w1/status", json={"status": {"phase": "Ready"}}, headers=MERGE
    )
    resized = await send(http, "PATCH", f"{WIDGETS}/w1", json={"spec": {"size": 5}}, headers=MERGE)
    assert [obj["metadata"]["generation"] for obj in (created, labelled, status, resized)] == [1, 1, 1, 2]
    versions = [int(obj["metadata"]["resourceVersion"]) for obj in (created, labelled, status, resized)]
    assert versions == sorted(set(versions))


async def test_stale_resource_version_conflicts(http: aiohttp.ClientSession) -> None:
    created = await create_widget(http, "w1")
    await send(http, "PATCH", f"{WIDGETS}/w1", json={"spec": {"size": 2}}, headers=MERGE)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"size": 3}}
    body = await send(http, "PATCH", f"{WIDGETS}/w1", 409, json=stale, headers=MERGE)
    assert body["reason"] == "Conflict"
    await send(http, "PUT", f"{WIDGETS}/w1", 409, json=dict(created, spec={"size": 4}))
    assert (await send(http, "GET", f"{WIDGETS}/w1"))["spec"]["size"] == 2


async def test_status_subresource_separates_status(http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1")
    main = await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1",
        headers=MERGE,
        json={"spec": {"size": 2}, "status": {"phase": "Ignored"}},
    )
    assert "status" not in main and main["spec"]["size"] == 2
    status = await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1/status",
        headers=MERGE,
        json={"spec": {"size": 9}, "status": {"phase": "Ready"}},
    )
    assert status["status"] == {"phase": "Ready"} and status["spec"]["size"] == 2
    replaced = await send(http, "PUT", f"{WIDGETS}/w1/status", json=dict(status, status={"phase": "Done"}))
    assert replaced["status"] == {"phase": "Done"}


async def test_namespace_status_subresource_is_not_confused_with_missing_one(
    http: aiohttp.ClientSession,
) -> None:
    await send(http, "POST", "/api/v1/namespaces/default/configmaps", 201, json={"metadata": {"name": "c"}})
    await send(http, "PATCH", "/api/v1/namespaces/default/configmaps/c/status", 404, json={}, headers=MERGE)


async def test_put_replaces_the_object(http: aiohttp.ClientSession) -> None:
    created = await create_widget(http, "w1", labels={"old": "x"})
    replacement = widget("w1", size=7)
    replaced = await send(http, "PUT", f"{WIDGETS}/w1", json=replacement)
    assert replaced["spec"] == {"size": 7, "color": "blue"}
    assert "labels" not in replaced["metadata"]
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]


async def test_json_patch_and_strategic_merge_patch(http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1")
    ops = [
        {"op": "replace", "path": "/spec/size", "value": 3},
        {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}},
    ]
    patched = await send(
        http, "PATCH", f"{WIDGETS}/w1", json=ops, headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched["spec"]["size"] == 3 and patched["metadata"]["annotations"] == {"k": "v"}
    strategic = await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1",
        json={"spec": {"color": "red"}},
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert strategic["spec"] == {"size": 3, "color": "red"}
    failed = [{"op": "test", "path": "/spec/size", "value": 100}]
    await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1",
        422,
        json=failed,
        headers={"Content-Type": "application/json-patch+json"},
    )


async def test_json_patch_follows_rfc_6902_and_rejects_bad_operations_with_422(
    http: aiohttp.ClientSession,
) -> None:
    json_patch = {"Content-Type": "application/json-patch+json"}
    await create_widget(http, "w1", labels={"a": "1"}, finalizers=["x/one"])
    ops = [
        {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
        {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/b"},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "x/two"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
        {"op": "test", "path": "/metadata/annotations/a", "value": "1"},
    ]
    patched = await send(http, "PATCH", f"{WIDGETS}/w1", json=ops, headers=json_patch)
    meta = patched["metadata"]
    assert (meta["labels"], meta["annotations"], meta["finalizers"]) == ({"b": "1"}, {"a": "1"}, ["x/two"])
    bad = [
        [{"op": "add", "path": "/spec/size"}],  # no value
        [{"op": "frobnicate", "path": "/spec/size", "value": 1}],
        [{"op": "replace", "path": "spec/size", "value": 2}],  # not a JSON pointer
        [{"op": "remove", "path": "/spec/missing"}],
        [{"op": "add", "path": "/metadata/finalizers/7", "value": "x/three"}],  # past the end of the list
        [{"op": "add", "path": "/metadata/finalizers/first", "value": "x/three"}],
        {"op": "add", "path": "/spec/size", "value": 2},  # not a list
    ]
    for patch in bad:
        error = await send(http, "PATCH", f"{WIDGETS}/w1", 422, json=patch, headers=json_patch)
        assert error["reason"] == "Invalid" and error["message"], (patch, error)
    assert (await send(http, "GET", f"{WIDGETS}/w1"))["metadata"] == patched["metadata"]


async def test_finalizers_block_deletion_until_removed(api: ApiServer, http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1", finalizers=["test/blocker"])
    deleting = await send(http, "DELETE", f"{WIDGETS}/w1")
    assert deleting["metadata"]["deletionTimestamp"]
    assert (await send(http, "GET", f"{WIDGETS}/w1"))["metadata"]["deletionTimestamp"]
    await send(http, "PATCH", f"{WIDGETS}/w1", json={"metadata": {"finalizers": None}}, headers=MERGE)
    await send(http, "GET", f"{WIDGETS}/w1", 404)
    types = [event["type"] for event in api.events if event["object"]["metadata"]["name"] == "w1"]
    assert types == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    assert api.objects[f"{GROUP}/v1/widgets", "default", "w1"].deleted


async def test_delete_without_finalizers_is_immediate(http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1")
    await send(http, "DELETE", f"{WIDGETS}/w1")
    await send(http, "GET", f"{WIDGETS}/w1", 404)
    await create_widget(http, "w1")  # the name is free again


async def test_generate_name_makes_unique_names(http: aiohttp.ClientSession) -> None:
    names = {
        (
            await send(
                http,
                "POST",
                "/api/v1/namespaces/default/events",
                201,
                json={"metadata": {"generateName": "ev-"}, "reason": "Test"},
            )
        )["metadata"]["name"]
        for _ in range(5)
    }
    assert len(names) == 5 and all(name.startswith("ev-") and len(name) > 3 for name in names)


async def test_create_conflict_and_missing_name(http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1")
    assert (await send(http, "POST", WIDGETS, 409, json=widget("w1")))["reason"] == "AlreadyExists"
    await send(http, "POST", WIDGETS, 422, json={"spec": {"size": 1}})


# --- Lists, selectors, watches --------------------------------------------------------------------


async def test_list_has_kind_version_and_selectors(http: aiohttp.ClientSession) -> None:
    await create_widget(http, "a", labels={"tier": "db", "env": "prod"})
    await create_widget(http, "b", labels={"tier": "web"})
    await create_widget(http, "c")
    listing = await send(http, "GET", WIDGETS)
    assert listing["kind"] == "WidgetList" and listing["apiVersion"] == f"{GROUP}/v1"
    assert int(listing["metadata"]["resourceVersion"]) >= 3

    async def names(**params: str) -> list[str]:
        body = await send(http, "GET", f"/apis/{GROUP}/v1/widgets", params=params)
        return [item["metadata"]["name"] for item in body["items"]]

    assert await names() == ["a", "b", "c"]
    assert await names(labelSelector="tier=db") == ["a"]
    assert await names(labelSelector="tier!=db") == ["b", "c"]
    assert await names(labelSelector="tier") == ["a", "b"]
    assert await names(labelSelector="tier,env=prod") == ["a"]
    assert await names(labelSelector="tier in (web,db)") == ["a", "b"]
    assert await names(fieldSelector="metadata.name=b") == ["b"]
    assert await names(fieldSelector="metadata.namespace=other") == []


async def read_watch(http: aiohttp.ClientSession, path: str, **params: str) -> list[dict[str, Any]]:
    async with http.get(path, params={"watch": "true", **params}) as response:
        assert response.status == 200
        return [json.loads(line) async for line in response.content if line.strip()]


async def test_watch_streams_events_live(http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1")

    async def change() -> None:
        await asyncio.sleep(0.1)
        await send(http, "PATCH", f"{WIDGETS}/w1", json={"spec": {"size": 2}}, headers=MERGE)
        await send(http, "DELETE", f"{WIDGETS}/w1")

    changer = asyncio.create_task(change())
    events = await read_watch(http, WIDGETS, timeoutSeconds="1")
    await changer
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
        ("DELETED", "w1"),
    ]
    assert events[1]["object"]["spec"]["size"] == 2


async def test_watch_resumes_from_resource_version(http: aiohttp.ClientSession) -> None:
    first = await create_widget(http, "w1")
    await create_widget(http, "w2", labels={"x": "y"})
    await send(http, "PATCH", f"{WIDGETS}/w1", json={"spec": {"size": 3}}, headers=MERGE)
    since = first["metadata"]["resourceVersion"]
    events = await read_watch(http, WIDGETS, resourceVersion=since, timeoutSeconds="0.2")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w2"),
        ("MODIFIED", "w1"),
    ]
    labelled = await read_watch(http, WIDGETS, resourceVersion=since, timeoutSeconds="0.2", labelSelector="x")
    assert [e["object"]["metadata"]["name"] for e in labelled] == ["w2"]


async def test_watch_honours_timeout(http: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await read_watch(http, WIDGETS, timeoutSeconds="0.3")
    assert events == []
    assert 0.25 <= loop.time() - started < 2


# --- Discovery & CRDs ---------------------------------------------------------------------------


async def test_discovery_of_core_and_groups(http: aiohttp.ClientSession) -> None:
    assert (await send(http, "GET", "/api"))["versions"] == ["v1"]
    core = {res["name"]: res for res in (await send(http, "GET", "/api/v1"))["resources"]}
    assert {"namespaces", "secrets", "events", "configmaps"} <= set(core)
    assert core["namespaces"]["namespaced"] is False and core["secrets"]["namespaced"] is True
    groups = {group["name"] for group in (await send(http, "GET", "/apis"))["groups"]}
    assert {GROUP, "coordination.k8s.io", "kopf.dev", "apiextensions.k8s.io"} <= groups
    assert (await send(http, "GET", f"/apis/{GROUP}"))["preferredVersion"]["version"] == "v1"
    served = {res["name"]: res for res in (await send(http, "GET", f"/apis/{GROUP}/v1"))["resources"]}
    assert served["widgets"]["kind"] == "Widget" and served["widgets"]["shortNames"] == ["wd"]
    assert "watch" in served["widgets"]["verbs"] and served["widgets/status"]["verbs"] == [
        "get",
        "patch",
        "update",
    ]
    kopf_dev = {res["name"] for res in (await send(http, "GET", "/apis/kopf.dev/v1"))["resources"]}
    assert kopf_dev == {"clusterkopfpeerings", "kopfpeerings"}
    await send(http, "GET", "/apis/unknown.dev/v1", 404)


async def test_crd_posted_over_http_becomes_servable(http: aiohttp.ClientSession) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace("idget", "adget"))  # widgets -> wadgets
    await send(http, "GET", f"/apis/{GROUP}/v1/namespaces/default/wadgets", 404)
    stored = await send(
        http, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", 201, json=crd
    )
    assert stored["status"]["conditions"][0] == {
        "type": "Established",
        "status": "True",
        "reason": "InitialNamesAccepted",
    }
    assert (await send(http, "GET", f"/apis/{GROUP}/v1/namespaces/default/wadgets"))["kind"] == "WadgetList"
    await send(http, "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/wadgets.{GROUP}")
    await send(http, "GET", f"/apis/{GROUP}/v1/namespaces/default/wadgets", 404)


async def test_schema_violations_are_rejected_with_422(http: aiohttp.ClientSession) -> None:
    body = await send(http, "POST", WIDGETS, 422, json=widget("w1", size=0))
    assert body["kind"] == "Status" and body["reason"] == "Invalid"
    assert [cause["field"] for cause in body["details"]["causes"]] == ["spec.size"]
    missing = await send(http, "POST", WIDGETS, 422, json={"metadata": {"name": "w2"}, "spec": {}})
    assert "spec.size" in missing["message"]
    await create_widget(http, "w3")
    bad = await send(http, "PATCH", f"{WIDGETS}/w3", 422, json={"spec": {"size": "big"}}, headers=MERGE)
    assert bad["details"]["causes"][0]["field"] == "spec.size"


async def test_load_crd_from_yaml_file(api: ApiServer, tmp_path: pathlib.Path) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace("idget", "idgex"))
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(crd))
    api.load_crd(path)
    created = api.create(f"{GROUP}/v1/widgexs", widget("w"), namespace="default")
    assert created["kind"] == "Widgex" and api.get(f"{GROUP}/v1/widgexs", "default", "w") == created


# --- Server-side printing -------------------------------------------------------------------------

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def test_table_output_uses_printer_columns(http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1", size=3)
    await send(http, "PATCH", f"{WIDGETS}/w1/status", json={"status": {"phase": "Ready"}}, headers=MERGE)
    table = await send(http, "GET", WIDGETS, headers={"Accept": TABLE_ACCEPT})
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [column["name"] for column in table["columnDefinitions"]] == ["Name", "Size", "Phase", "Age"]
    [row] = table["rows"]
    assert row["cells"][:3] == ["w1", 3, "Ready"] and row["cells"][3].endswith("s")
    assert row["object"]["metadata"]["name"] == "w1"
    single = await send(http, "GET", f"{WIDGETS}/w1", headers={"Accept": TABLE_ACCEPT})
    assert single["rows"][0]["cells"][0] == "w1"


# --- Core objects ---------------------------------------------------------------------------------


async def test_core_secrets_events_namespaces_are_stored(api: ApiServer, http: aiohttp.ClientSession) -> None:
    api.create("v1/secrets", {"metadata": {"name": "db"}, "data": {"password": "cw=="}}, namespace="default")
    secret = await send(http, "GET", "/api/v1/namespaces/default/secrets/db")
    assert secret["kind"] == "Secret" and secret["data"] == {"password": "cw=="}
    await send(http, "POST", "/api/v1/namespaces", 201, json={"metadata": {"name": "apps"}})
    namespaces = await send(http, "GET", "/api/v1/namespaces")
    assert namespaces["kind"] == "NamespaceList"
    assert [ns["metadata"]["name"] for ns in namespaces["items"]] == ["apps", "default"]
    watched = await read_watch(
        http, "/api/v1/namespaces", timeoutSeconds="0.1", fieldSelector="metadata.name=apps"
    )
    assert [event["object"]["metadata"]["name"] for event in watched] == ["apps"]
    await send(
        http, "POST", "/api/v1/namespaces/apps/events", 201, json={"metadata": {"name": "e"}, "reason": "R"}
    )
    assert api.objects["v1/events", "apps", "e"]["reason"] == "R"


# --- Real kubectl ---------------------------------------------------------------------------------


async def kubectl(api: ApiServer, *args: str) -> str:
    """Run the real kubectl against the emulator (without blocking the emulator's event loop)."""
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        *args,
        env={**os.environ, "KUBECONFIG": str(api.kubeconfig)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def kubectl_fails(api: ApiServer, *args: str) -> str:
    """Run kubectl expecting it to fail; return what it printed."""
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        *args,
        env={**os.environ, "KUBECONFIG": str(api.kubeconfig)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stdout, _ = await process.communicate()
    assert process.returncode != 0, stdout.decode()
    return stdout.decode()


async def test_kubectl_get_shows_printer_columns(api: ApiServer, http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1", size=3)
    await send(http, "PATCH", f"{WIDGETS}/w1/status", json={"status": {"phase": "Ready"}}, headers=MERGE)
    header, row = (await kubectl(api, "get", "widgets")).splitlines()
    assert header.split() == ["NAME", "SIZE", "PHASE", "AGE"]
    assert row.split()[:3] == ["w1", "3", "Ready"]


async def test_kubectl_annotate(api: ApiServer, http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1")
    await kubectl(api, "annotate", "widget", "w1", "example.com/key=value")
    assert (await send(http, "GET", f"{WIDGETS}/w1"))["metadata"]["annotations"] == {
        "example.com/key": "value"
    }


async def test_kubectl_apply_creates_then_updates(api: ApiServer, tmp_path: pathlib.Path) -> None:
    manifest = tmp_path / "widget.yaml"
    manifest.write_text(yaml.safe_dump(widget("w1", size=2)))
    assert "created" in await kubectl(api, "apply", "--validate=false", "-f", str(manifest))
    manifest.write_text(yaml.safe_dump(widget("w1", size=4)))
    assert "configured" in await kubectl(api, "apply", "--validate=false", "-f", str(manifest))
    stored = api.get(f"{GROUP}/v1/widgets", "default", "w1")
    assert stored is not None and stored["spec"]["size"] == 4 and stored["metadata"]["generation"] == 2


async def test_kubectl_get_json(api: ApiServer, http: aiohttp.ClientSession) -> None:
    created = await create_widget(http, "w1", size=5)
    shown = json.loads(await kubectl(api, "get", "wd", "w1", "-o", "json", "--show-managed-fields"))
    assert shown == created and created["metadata"]["managedFields"]
    created["metadata"].pop("managedFields")  # kubectl hides them by default, as from a real server
    assert json.loads(await kubectl(api, "get", "wd", "w1", "-o", "json")) == created
    listing = json.loads(await kubectl(api, "get", "widgets", "-o", "json"))
    assert [item["metadata"]["name"] for item in listing["items"]] == ["w1"]


# --- Real Kopf ------------------------------------------------------------------------------------


async def eventually(check: Any, timeout: float = 10.0) -> None:
    """Wait until a condition holds (the operator works asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "The condition was never met."
        await asyncio.sleep(0.05)


def build_registry(api: ApiServer, deleted: list[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return api.connection_info()

    @kopf.on.create(GROUP, "v1", "widgets", registry=registry)
    def created(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
        kopf.info(body, reason="Sized", message=f"Size is {spec['size']}")
        patch.status["phase"] = "Ready"
        patch.status["seenSize"] = spec["size"]

    @kopf.on.field(GROUP, "v1", "widgets", field="metadata.annotations.poke", registry=registry)
    def poked(new: Any, patch: kopf.Patch, **_: Any) -> None:
        patch.status["poked"] = new

    @kopf.on.delete(GROUP, "v1", "widgets", registry=registry)
    def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    return registry


async def test_kopf_operator_runs_against_the_emulator(api: ApiServer, http: aiohttp.ClientSession) -> None:
    deleted: list[str] = []
    stop, ready = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=build_registry(api, deleted),
            standalone=True,
            namespaces=["default"],
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), timeout=10)
        await create_widget(http, "w1", size=3)

        def status() -> dict[str, Any]:
            return (api.get(f"{GROUP}/v1/widgets", "default", "w1") or {}).get("status", {})

        await eventually(lambda: status().get("phase") == "Ready")
        assert status()["seenSize"] == 3
        stored = api.get(f"{GROUP}/v1/widgets", "default", "w1")
        assert stored is not None and stored["metadata"]["finalizers"] == [
            "kopf.zalando.org/KopfFinalizerMarker"
        ]

        await send(
            http, "PATCH", f"{WIDGETS}/w1", json={"metadata": {"annotations": {"poke": "yes"}}}, headers=MERGE
        )
        await eventually(lambda: status().get("poked") == "yes")

        await eventually(
            lambda: any(
                event["reason"] == "Sized" and event["involvedObject"]["name"] == "w1"
                for event in api.list_objects("v1/events", "default")
            )
        )

        await send(http, "DELETE", f"{WIDGETS}/w1")
        await eventually(lambda: api.get(f"{GROUP}/v1/widgets", "default", "w1") is None)
        assert deleted == ["w1"]
    finally:
        stop.set()
        await asyncio.wait_for(operator, timeout=10)


# --- The real API server's limits -----------------------------------------------------------------


async def test_request_body_over_3_mib_is_refused_with_413(http: aiohttp.ClientSession) -> None:
    big = noted("w1", "x" * limits.MAX_REQUEST_BODY_BYTES)
    body = await send(http, "POST", WIDGETS, 413, json=big)
    assert (body["kind"], body["code"], body["reason"]) == ("Status", 413, "RequestEntityTooLarge")
    assert body["message"] == "Request entity too large: limit is 3145728"
    await send(http, "GET", f"{WIDGETS}/w1", 404)
    # over aiohttp's own default of 1 MiB, but under 3 MiB: served
    await send(http, "POST", WIDGETS, 201, json=noted("w2", "x" * (1024 * 1024 + 1)))


async def test_annotations_over_256_kib_are_invalid(http: aiohttp.ClientSession) -> None:
    key = "example.com/blob"
    exactly = limits.TOTAL_ANNOTATION_SIZE_LIMIT - len(key)
    await send(http, "POST", WIDGETS, 201, json=widget("w1", annotations={key: "x" * exactly}))
    body = await send(http, "POST", WIDGETS, 422, json=widget("w2", annotations={key: "x" * (exactly + 1)}))
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Widget.test.dataflow.dev "w2" is invalid: '
        "metadata.annotations: Too long: must have at most 262144 bytes"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueTooLong",
            "field": "metadata.annotations",
            "message": "metadata.annotations: Too long: must have at most 262144 bytes",
        }
    ]
    # keys count too, and so do several annotations together; an update is refused the same way
    more = {"metadata": {"annotations": {"k": "v"}}}
    await send(http, "PATCH", f"{WIDGETS}/w1", 422, json=more, headers=MERGE)
    assert len((await send(http, "GET", f"{WIDGETS}/w1"))["metadata"]["annotations"]) == 1


async def test_stored_object_over_1_5_mib_is_refused_as_etcd_does(
    api: ApiServer, http: aiohttp.ClientSession
) -> None:
    await send(http, "POST", WIDGETS, 201, json=noted("w1", ""))
    stored = api.get(f"{GROUP}/v1/widgets", "default", "w1")
    assert stored is not None
    room = limits.MAX_STORED_OBJECT_BYTES - limits.stored_size(stored)
    fits = await send(http, "PATCH", f"{WIDGETS}/w1", json={"spec": {"notes": "x" * room}}, headers=MERGE)
    assert limits.stored_size(fits) == limits.MAX_STORED_OBJECT_BYTES == 1572864
    body = await send(
        http, "PATCH", f"{WIDGETS}/w1", 500, json={"spec": {"notes": "x" * (room + 1)}}, headers=MERGE
    )
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "etcdserver: request is too large",
        "code": 500,
    }
    assert (await send(http, "GET", f"{WIDGETS}/w1"))["metadata"]["resourceVersion"] == fits["metadata"][
        "resourceVersion"
    ]
    await send(http, "POST", WIDGETS, 500, json=noted("w2", "x" * limits.MAX_STORED_OBJECT_BYTES))
    await send(http, "GET", f"{WIDGETS}/w2", 404)


async def test_kubectl_client_side_apply_hits_the_annotation_limit_server_side_does_not(
    api: ApiServer, tmp_path: pathlib.Path
) -> None:
    manifest = tmp_path / "widget.yaml"
    manifest.write_text(yaml.safe_dump(noted("w1", "x" * 300_000)))
    failed = await kubectl_fails(api, "apply", "--validate=false", "-f", str(manifest))
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in failed
    applied = await kubectl(api, "apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert "serverside-applied" in applied
    stored = api.get(f"{GROUP}/v1/widgets", "default", "w1")
    assert stored is not None and len(stored["spec"]["notes"]) == 300_000
    assert "annotations" not in stored["metadata"]  # no last-applied copy


# --- Pruning of unknown fields ------------------------------------------------------------------


async def test_unknown_fields_are_pruned_with_a_warning(api: ApiServer, http: aiohttp.ClientSession) -> None:
    body = widget("w1", bogus="x")
    body["spec"].update(
        junk=1,
        parts=[{"n": 1, "junk": 2}],
        extras={"anything": {"deep": True}, "known": {"a": 1, "junk": 3}},
    )
    async with http.post(WIDGETS, json=body) as response:
        assert response.status == 201
        created = await response.json()
        warning = response.headers["Warning"]
    assert created["spec"] == {
        "size": 1,
        "color": "blue",
        "parts": [{"n": 1}],
        "extras": {"anything": {"deep": True}, "known": {"a": 1}},  # preserved, except under a known node
    }
    assert "bogus" not in created["metadata"]
    for field in ("metadata.bogus", "spec.junk", "spec.parts[0].junk", "spec.extras.known.junk"):
        assert f'299 - "unknown field \\"{field}\\""' in warning
    assert api.warnings == [
        'unknown field "metadata.bogus"',
        'unknown field "spec.junk"',
        'unknown field "spec.parts[0].junk"',
        'unknown field "spec.extras.known.junk"',
    ]


async def test_pruning_on_update_patch_and_status(http: aiohttp.ClientSession) -> None:
    created = await create_widget(http, "w1")
    put = await send(http, "PUT", f"{WIDGETS}/w1", json=dict(created, spec={"size": 2, "junk": 1}))
    assert put["spec"] == {"size": 2, "color": "blue"}
    patched = await send(http, "PATCH", f"{WIDGETS}/w1", json={"spec": {"junk": 1}}, headers=MERGE)
    assert "junk" not in patched["spec"] and patched["metadata"]["generation"] == 2  # pruned: a no-op
    status = await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1/status",
        json={"status": {"phase": "Ready", "junk": 1, "kopf": {"progress": {"h": {"retries": 1}}}}},
        headers=MERGE,
    )
    assert status["status"] == {"phase": "Ready", "kopf": {"progress": {"h": {"retries": 1}}}}
    applied = await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1",
        params={"fieldManager": "t", "force": "true"},  # the size is owned by the PUT's manager
        data=json.dumps({"apiVersion": f"{GROUP}/v1", "kind": "Widget", "spec": {"size": 3, "junk": 1}}),
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    assert applied["spec"] == {"size": 3, "color": "blue"}


async def test_field_validation_strict_refuses_and_ignore_is_silent(
    api: ApiServer, http: aiohttp.ClientSession
) -> None:
    body = await send(
        http,
        "POST",
        WIDGETS,
        400,
        json=widget("w1", size=2) | {"spec": {"size": 2, "junk": 1}},
        params={"fieldValidation": "Strict"},
    )
    assert body["reason"] == "BadRequest"
    assert body["message"] == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.junk"'
    )
    await send(http, "GET", f"{WIDGETS}/w1", 404)
    async with http.post(
        WIDGETS, json={**widget("w1"), "spec": {"size": 1, "junk": 1}}, params={"fieldValidation": "Ignore"}
    ) as response:
        assert response.status == 201 and "Warning" not in response.headers
    assert api.warnings == []


# --- Server-side apply ----------------------------------------------------------------------------

APPLY = {"Content-Type": "application/apply-patch+yaml"}


async def apply(
    http: aiohttp.ClientSession, obj: dict[str, Any], expect: int = 200, sub: str = "", **params: str
) -> dict[str, Any]:
    name = obj["metadata"]["name"]
    params = {"fieldManager": "applier", **params}
    return await send(
        http,
        "PATCH",
        f"{WIDGETS}/{name}{sub}",
        expect,
        data=yaml.safe_dump(obj),
        headers=APPLY,
        params=params,
    )


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


async def test_apply_creates_records_managed_fields_and_updates(http: aiohttp.ClientSession) -> None:
    created = await apply(http, widget("w1", size=2, labels={"a": "1", "b": "2"}), 201)
    assert created["spec"] == {"size": 2, "color": "blue"} and created["metadata"]["generation"] == 1
    [entry] = created["metadata"]["managedFields"]
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "manager": "applier",
        "operation": "Apply",
        "apiVersion": f"{GROUP}/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}, "f:spec": {"f:size": {}}},
    }
    same = await apply(http, widget("w1", size=2, labels={"a": "1", "b": "2"}))
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # a no-op
    # a field no longer applied is removed; a changed one is updated
    updated = await apply(http, widget("w1", size=4, labels={"a": "1"}))
    assert updated["metadata"]["labels"] == {"a": "1"} and updated["spec"]["size"] == 4
    assert updated["metadata"]["generation"] == 2
    assert managers(updated)["applier", "Apply"]["f:metadata"] == {"f:labels": {"f:a": {}}}


async def test_apply_conflicts_with_another_manager_unless_forced(http: aiohttp.ClientSession) -> None:
    await apply(http, widget("w1", size=2), 201)
    await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1",
        json={"spec": {"size": 3}},
        headers=MERGE,
        params={"fieldManager": "other"},
    )
    conflict = await apply(http, widget("w1", size=5), 409)
    assert conflict["reason"] == "Conflict"
    assert conflict["message"] == (
        f'Apply failed with 1 conflict: conflict with "other" using {GROUP}/v1: .spec.size'
    )
    assert conflict["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "other" using {GROUP}/v1',
            "field": ".spec.size",
        }
    ]
    assert (await send(http, "GET", f"{WIDGETS}/w1"))["spec"]["size"] == 3
    shared = await apply(http, widget("w1", size=3))  # the same value: shared, no conflict
    assert (
        managers(shared)["other", "Update"]
        == managers(shared)["applier", "Apply"]
        == {"f:spec": {"f:size": {}}}
    )
    forced = await apply(http, widget("w1", size=5), force="true")
    assert forced["spec"]["size"] == 5 and ("other", "Update") not in managers(forced)


async def test_apply_needs_a_field_manager_and_only_apply_forces(http: aiohttp.ClientSession) -> None:
    missing = await send(
        http, "PATCH", f"{WIDGETS}/w1", 422, data=yaml.safe_dump(widget("w1")), headers=APPLY
    )
    assert missing["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )
    await create_widget(http, "w1")
    forced = await send(http, "PATCH", f"{WIDGETS}/w1", 422, json={}, headers=MERGE, params={"force": "true"})
    assert "force: Forbidden: may not be specified for non-apply patch" in forced["message"]
    wrong = await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1",
        400,
        data=yaml.safe_dump(widget("w2")),
        headers=APPLY,
        params={"fieldManager": "applier"},
    )
    assert wrong["message"] == "the name of the object (w2) does not match the name on the URL (w1)"


async def test_apply_to_the_status_subresource(http: aiohttp.ClientSession) -> None:
    await apply(http, widget("w1", size=2) | {"status": {"phase": "Ignored"}}, 201)
    main = await send(http, "GET", f"{WIDGETS}/w1")
    assert "status" not in main
    status = await apply(
        http, {**widget("w1", size=9), "status": {"phase": "Ready"}}, sub="/status", fieldManager="ctl"
    )
    assert status["status"] == {"phase": "Ready"} and status["spec"]["size"] == 2
    entry = next(e for e in status["metadata"]["managedFields"] if e["manager"] == "ctl")
    assert entry["subresource"] == "status" and entry["fieldsV1"] == {"f:status": {"f:phase": {}}}


async def test_updates_record_their_managers(http: aiohttp.ClientSession) -> None:
    await create_widget(http, "w1", labels={"a": "1"})
    patched = await send(
        http,
        "PATCH",
        f"{WIDGETS}/w1",
        json={"spec": {"size": 7}},
        headers=MERGE,
        params={"fieldManager": "sizer"},
    )
    owners = managers(patched)
    assert owners["sizer", "Update"] == {"f:spec": {"f:size": {}}}
    assert owners["Python", "Update"] == {  # POSTed by aiohttp: the User-Agent's product
        "f:metadata": {"f:labels": {"f:a": {}}},
        "f:spec": {"f:color": {}},
    }


async def test_kubectl_apply_server_side(api: ApiServer, tmp_path: pathlib.Path) -> None:
    manifest = tmp_path / "widget.yaml"
    manifest.write_text(yaml.safe_dump(widget("w1", size=2)))
    assert "serverside-applied" in await kubectl(
        api, "apply", "--server-side", "--validate=false", "-f", str(manifest)
    )
    await kubectl(api, "patch", "widget", "w1", "--type=merge", "-p", '{"spec": {"size": 3}}')
    manifest.write_text(yaml.safe_dump(widget("w1", size=4)))
    failed = await kubectl_fails(api, "apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert 'conflict with "kubectl-patch"' in failed and ".spec.size" in failed
    await kubectl(api, "apply", "--server-side", "--force-conflicts", "--validate=false", "-f", str(manifest))
    stored = api.get(f"{GROUP}/v1/widgets", "default", "w1")
    assert stored is not None and stored["spec"]["size"] == 4
    assert {(e["manager"], e["operation"]) for e in stored["metadata"]["managedFields"]} == {
        ("kubectl", "Apply")
    }


async def test_kubectl_client_side_apply_then_server_side(api: ApiServer, tmp_path: pathlib.Path) -> None:
    manifest = tmp_path / "widget.yaml"
    manifest.write_text(yaml.safe_dump(widget("w1", size=2)))
    await kubectl(api, "apply", "--validate=false", "-f", str(manifest))
    manifest.write_text(yaml.safe_dump(widget("w1", size=6)))
    await kubectl(api, "apply", "--server-side", "--validate=false", "-f", str(manifest))
    stored = api.get(f"{GROUP}/v1/widgets", "default", "w1")
    assert stored is not None and stored["spec"]["size"] == 6
    last = json.loads(stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"] == {"size": 6}  # kept in step, so that client-side apply still works after
    assert ("kubectl", "Apply") in managers(stored)
