"""The Helm chart charts/dataflow-operator, rendered with tests/helm_render.py (and `helm template` if present)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helm_render import TemplateError, parse, render_chart  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "dataflow-operator"


def documents(values=None) -> list[dict]:
    docs = []
    for text in render_chart(CHART, values, release="df", namespace="ops").values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs, kind) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def container(docs) -> dict:
    (deployment,) = by_kind(docs, "Deployment")
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_every_template_renders_to_expected_kinds():
    rendered = render_chart(CHART)
    assert set(rendered) == {
        "templates/deployment.yaml",
        "templates/serviceaccount.yaml",
        "templates/rbac.yaml",
        "templates/peering.yaml",
        "templates/metrics.yaml",
    }
    kinds = {}
    for name, text in rendered.items():
        kinds[name] = sorted(d["kind"] for d in yaml.safe_load_all(text) if d)
    assert kinds == {
        "templates/deployment.yaml": ["Deployment"],
        "templates/serviceaccount.yaml": ["ServiceAccount"],
        "templates/rbac.yaml": ["ClusterRole", "ClusterRoleBinding"],
        "templates/peering.yaml": ["ClusterKopfPeering"],
        "templates/metrics.yaml": ["Service"],
    }
    for doc in documents():
        assert doc["apiVersion"] and doc["metadata"]["name"]


def test_defaults_watch_all_namespaces_with_a_cluster_role():
    docs = documents()
    args = container(docs)["args"]
    assert args[:3] == ["run", "-m", "dataflow.k8s.operator"] and container(docs)["command"] == ["kopf"]
    assert "--all-namespaces" in args and "--namespace" not in args
    assert "--peering=dataflow-operator" in args
    assert by_kind(docs, "Role") == [] and by_kind(docs, "RoleBinding") == []
    (role,) = by_kind(docs, "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {
        "dataflowschemas",
        "dataflowschemas/status",
        "secrets",
        "events",
        "configmaps",
        "clusterkopfpeerings",
        "namespaces",
        "customresourcedefinitions",
    } == resources
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (sa,) = by_kind(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "ops"}
    ]
    assert (
        by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["serviceAccountName"]
        == sa["metadata"]["name"]
    )


def test_watched_namespaces_give_namespace_flags_and_roles():
    docs = documents({"watchedNamespaces": ["a", "b"]})
    args = container(docs)["args"]
    assert "--all-namespaces" not in args
    assert " ".join(args).endswith("--namespace a --namespace b")
    roles = by_kind(docs, "Role")
    assert [r["metadata"]["namespace"] for r in roles] == ["a", "b"]
    assert [b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")] == ["a", "b"]
    for binding in by_kind(docs, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role" and binding["subjects"][0]["namespace"] == "ops"
    for role in roles:
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert {"dataflowschemas", "dataflowschemas/status", "secrets", "kopfpeerings"} <= resources
    (cluster_role,) = by_kind(docs, "ClusterRole")
    cluster_resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert cluster_resources == {"namespaces", "customresourcedefinitions"}, (
        "namespaced rights leaked cluster-wide"
    )
    assert [(p["kind"], p["metadata"]["namespace"]) for p in by_kind(docs, "KopfPeering")] == [
        ("KopfPeering", "a"),
        ("KopfPeering", "b"),
    ]


@pytest.mark.parametrize("values", [{}, {"watchedNamespaces": ["a", "b"]}])
def test_rbac_is_least_privilege(values):
    docs = documents(values)
    rules = [rule for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role") for rule in role["rules"]]
    secret_rules = [rule for rule in rules if "secrets" in rule["resources"]]
    assert secret_rules and all(
        rule["verbs"] == ["get"] and rule["apiGroups"] == [""] for rule in secret_rules
    )
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert "delete" not in rule["verbs"] and "deletecollection" not in rule["verbs"]
        if "customresourcedefinitions" in rule["resources"]:
            assert rule["verbs"] == ["list", "watch"]
    status = [rule for rule in rules if "dataflowschemas/status" in rule["resources"]]
    assert status and all(rule["verbs"] == ["patch"] for rule in status)
    # the rules tests/test_ha.py finds unused are gone: leases, update, patching events
    assert not [rule for rule in rules if "leases" in rule["resources"] or "update" in rule["verbs"]]
    assert all(rule["verbs"] == ["create"] for rule in rules if "events" in rule["resources"])


def test_deployment_is_non_root_with_probes_on_the_liveness_port():
    docs = documents()
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    c = container(docs)
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    liveness = next(a for a in c["args"] if a.startswith("--liveness="))
    assert liveness == "--liveness=http://0.0.0.0:8080/healthz"
    port, metrics_port = c["ports"]
    assert port["containerPort"] == 8080 and metrics_port == {
        "name": "metrics",
        "containerPort": 8081,
        "protocol": "TCP",
    }
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz"
        assert c[probe]["httpGet"]["port"] in (8080, port["name"])
    # a standby must outlive a leader takeover (peering lifetime 15 s) before liveness restarts it
    liveness = c["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["DATAFLOW_METRICS_PORT"]["value"] == "8081"
    assert {"name": "DATAFLOW_LOG_LEVEL", "value": "INFO"} in c["env"]
    assert {"name": "DATAFLOW_POOL_MAX", "value": "5"} in c["env"]  # read by OperatorConfig.from_env
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_metrics_service_and_optional_service_monitor():
    docs = documents()
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = by_kind(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert by_kind(docs, "ServiceMonitor") == []

    docs = documents({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert (
        monitor["apiVersion"] == "monitoring.coreos.com/v1"
        and monitor["metadata"]["labels"]["release"] == "prom"
    )
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= by_kind(docs, "Service")[0]["metadata"]["labels"].items()
    )

    docs = documents({"metrics": {"enabled": False}})
    assert by_kind(docs, "Service") == [] and [p["name"] for p in container(docs)["ports"]] == ["health"]
    assert {"name": "DATAFLOW_METRICS_PORT", "value": "0"} in container(docs)["env"]


def test_watched_namespaces_reach_the_probe():
    env = container(documents({"watchedNamespaces": ["a", "b"]}))["env"]
    assert {"name": "DATAFLOW_WATCHED_NAMESPACES", "value": "a,b"} in env
    assert "DATAFLOW_WATCHED_NAMESPACES" not in {e["name"] for e in container(documents())["env"]}


# the oldest and newest Kubernetes minor versions the chart supports, and one between
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
VALUE_SETS = [
    {},
    {"watchedNamespaces": ["a", "b"], "metrics": {"enabled": False}},
    {"replicas": 1, "nodeSelector": {"pool": "ops"}, "tolerations": [{"key": "ops", "operator": "Exists"}]},
]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_rendered_objects_are_valid_kubernetes(version, values):
    """Every built-in object the chart renders, against that version's official OpenAPI schema (strict:
    an unknown field is an error)."""
    import kubernetes_validate

    validated = 0
    for doc in documents(values):
        if doc["apiVersion"].startswith(("kopf.dev/", "monitoring.coreos.com/")):
            continue  # custom resources: checked against their CRDs below
        kubernetes_validate.validate(doc, version, strict=True)
        validated += 1
    assert validated >= 5


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_crds_are_valid_kubernetes(version):
    import kubernetes_validate

    crds = [
        *yaml.safe_load_all((CHART / "crds" / "dataflowschema.yaml").read_text()),
        *yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text()),
    ]
    assert [c["kind"] for c in crds] == ["CustomResourceDefinition"] * 3
    for crd in crds:
        kubernetes_validate.validate(crd, version, strict=True)


def test_validation_catches_a_broken_object():
    """The check above can fail: a wrong type and an unknown field are reported."""
    import kubernetes_validate

    (deployment,) = by_kind(documents(), "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    (role,) = by_kind(documents(), "ClusterRole")
    role["rules"][0]["verb"] = ["get"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, KUBERNETES_VERSIONS[-1], strict=True)


def test_peering_objects_match_their_crds():
    from jsonschema import Draft7Validator

    crds = {
        c["spec"]["names"]["kind"]: c
        for c in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text())
    }
    for values in ({}, {"watchedNamespaces": ["a"]}):
        for doc in documents(values):
            if doc["apiVersion"] != "kopf.dev/v1":
                continue
            crd = crds[doc["kind"]]
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
            assert doc["apiVersion"] == f"{crd['spec']['group']}/v1"
            Draft7Validator(version["schema"]["openAPIV3Schema"]).validate(doc)


def test_values_are_substituted():
    docs = documents(
        {
            "image": {"tag": "9.9.9", "repository": "registry.example/df"},
            "replicas": 3,
            "logLevel": "DEBUG",
            "nodeSelector": {"pool": "ops"},
            "tolerations": [{"key": "ops", "operator": "Exists"}],
            "peering": {"name": "blue"},
        }
    )
    (deployment,) = by_kind(docs, "Deployment")
    c = container(docs)
    assert c["image"] == "registry.example/df:9.9.9"
    assert deployment["spec"]["replicas"] == 3
    assert {"name": "DATAFLOW_LOG_LEVEL", "value": "DEBUG"} in c["env"]
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "ops"}
    assert deployment["spec"]["template"]["spec"]["tolerations"] == [{"key": "ops", "operator": "Exists"}]
    assert (
        "--peering=blue" in c["args"] and by_kind(docs, "ClusterKopfPeering")[0]["metadata"]["name"] == "blue"
    )
    assert container(documents())["image"].endswith(
        ":" + yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    )
    assert "nodeSelector" not in by_kind(documents(), "Deployment")[0]["spec"]["template"]["spec"]


def test_chart_crd_is_a_copy_of_the_crd():
    assert (CHART / "crds" / "dataflowschema.yaml").read_bytes() == (
        ROOT / "crds" / "dataflowschema.yaml"
    ).read_bytes()
    peering = [
        d["spec"]["names"]["kind"]
        for d in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text())
    ]
    assert peering == ["ClusterKopfPeering", "KopfPeering"]


@pytest.mark.parametrize(
    "source",
    [
        "{{ with .Values.x }}y{{ end }}",
        "{{ $x := 1 }}",
        '{{ printf "%s" .Values.x }}',
        "{{ if .Values.x }}",
        "{{ end }}",
        '{{ (include "x" .) }}',
        '{{ template "x" . }}',
        "}} stray",
    ],
)
def test_renderer_rejects_unsupported_constructs(source):
    from helm_render import Renderer

    with pytest.raises(TemplateError):
        Renderer({}, {"Values": {"x": "v"}}).render(parse(source, {}), {"Values": {"x": "v"}})


def test_renderer_semantics():
    from helm_render import Renderer

    root = {"Values": {"a": {"b": "B"}, "l": ["x", "y"], "m": {"k": 1}, "empty": ""}}

    def r(source):
        defines = {}
        nodes = parse(source, defines)
        return Renderer(defines, root).render(nodes, root)

    assert r('a\n  {{- .Values.a.b }}\n  {{- "c" -}}\n d') == "aBcd"
    assert r('{{ .Values.empty | default "D" | quote }}') == '"D"'
    assert r("{{- range .Values.l }}[{{ . }}{{ $.Values.a.b }}]{{- end }}") == "[xB][yB]"
    assert r("{{ if .Values.empty }}yes{{ else }}no{{ end }}") == "no"
    assert r("k:{{ toYaml .Values.m | nindent 2 }}") == "k:\n  k: 1"
    assert r('{{- define "t" }}<{{ .a.b }}>{{ end }}{{ include "t" .Values }}') == "<B>"
    with pytest.raises(TemplateError):
        r("{{ .Values.missing.deeper }}")
    with pytest.raises(TemplateError):
        r("{{ .Values.missing }}")
    with pytest.raises(TemplateError):
        r("{{ .Values.l }}")


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed")
@pytest.mark.parametrize("values", [{}, {"watchedNamespaces": ["a", "b"]}])
def test_helm_template_agrees(values, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = subprocess.run(
        ["helm", "template", "df", str(CHART), "--namespace", "ops", "-f", str(values_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    key = lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])  # noqa: E731
    helm_docs = sorted((d for d in yaml.safe_load_all(out) if d), key=key)
    assert helm_docs == sorted(documents(values), key=key)
