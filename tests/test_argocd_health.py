"""The Argo CD health check (examples/gitops/argocd-health-dataflowschema.lua), run with lupa as Argo CD runs it."""

from pathlib import Path

import pytest
import yaml

lupa = pytest.importorskip("lupa")

GITOPS = Path(__file__).resolve().parents[1] / "examples" / "gitops"
SCRIPT = (GITOPS / "argocd-health-dataflowschema.lua").read_text()


def health(obj: dict) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(SCRIPT)
    return hs["status"], hs["message"]


def dfs(status: dict | None, generation: int = 3) -> dict:
    obj = {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": "shop-production", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = {"observedGeneration": 3, **status}
    return obj


@pytest.mark.parametrize(
    "phase,expected",
    [
        ("Applied", "Healthy"),
        ("InSync", "Healthy"),
        ("Planning", "Progressing"),
        ("Planned", "Healthy"),
        ("Applying", "Progressing"),
        ("AwaitingApproval", "Suspended"),
        ("WaitingForPromotion", "Suspended"),
        ("Blocked", "Degraded"),
        ("Failed", "Degraded"),
    ],
)
def test_phase_maps_to_health(phase, expected):
    status, message = health(dfs({"phase": phase, "message": f"{phase} message"}))
    assert status == expected
    assert message


def test_every_crd_phase_is_mapped():
    crd = yaml.safe_load((Path(__file__).resolve().parents[1] / "crds" / "dataflowschema.yaml").read_text())
    phases = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "phase"
    ]["enum"]
    for phase in phases:
        assert health(dfs({"phase": phase}))[0] != "Unknown", phase
    assert health(dfs({"phase": "Bogus"}))[0] == "Unknown"


def test_suspended_message_carries_verdict_and_approve_command():
    status, message = health(
        dfs(
            {
                "phase": "AwaitingApproval",
                "verdict": "HIGH risk exceeds maxRiskLevel MEDIUM",
                "approveCommand": "kubectl annotate dfs shop-production dataflow.dev/approve=0123456789ab",
            }
        )
    )
    assert status == "Suspended"
    assert "HIGH risk exceeds maxRiskLevel MEDIUM" in message
    assert "kubectl annotate dfs shop-production dataflow.dev/approve=0123456789ab" in message


def test_degraded_message_is_the_status_message():
    assert health(dfs({"phase": "Failed", "message": "connection refused"})) == (
        "Degraded",
        "connection refused",
    )


def test_no_status_yet():
    assert health(dfs(None)) == ("Progressing", "Waiting for the operator")
    assert health(dfs({}))[0] == "Progressing"


def test_stale_observed_generation_is_progressing():
    status, message = health(dfs({"phase": "Applied"}, generation=4))
    assert status == "Progressing"
    assert "4" in message
    assert health(dfs({"phase": "Applied"}, generation=3))[0] == "Healthy"


def test_configmap_embeds_the_script():
    cm = yaml.safe_load((GITOPS / "argocd-cm-health.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"]["resource.customizations.health.dataflow.dev_DataFlowSchema"] == SCRIPT


def test_an_approved_apply_in_progress_is_progressing_not_suspended():
    assert health(dfs({"phase": "Applying", "message": "Applying 20250101: 1 change(s), risk HIGH."}))[0] == (
        "Progressing"
    )


def test_drift_is_degraded_with_the_differences():
    drifted = {"type": "Drifted", "status": "True", "message": "Drifted: DROP_INDEX user: dba_email"}
    status, message = health(dfs({"phase": "InSync", "conditions": [drifted]}))
    assert (status, message) == ("Degraded", "Drifted: DROP_INDEX user: dba_email")
    no_drift = {**drifted, "status": "False", "message": "No drift from the applied schema."}
    assert health(dfs({"phase": "InSync", "conditions": [no_drift]}))[0] == "Healthy"


def test_promotion_pending_stays_healthy_and_says_so():
    pending = {
        "type": "PromotionPending",
        "status": "True",
        "message": "shop-staging has applied schema ab12",
    }
    status, message = health(dfs({"phase": "InSync", "message": "In sync.", "conditions": [pending]}))
    assert status == "Healthy" and "shop-staging has applied schema ab12" in message


def test_dry_run_is_a_terminal_phase():
    status, message = health(dfs({"phase": "Planned", "message": "Dry run: 3 change(s) planned"}))
    assert (status, message) == ("Healthy", "Dry run: 3 change(s) planned")
