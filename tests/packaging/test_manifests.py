"""Plain manifests: the same install as the chart's defaults, CRD kept identical to the chart's,
and examples that match the contract."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from chart_render import CHART, KUBECTL, KUBERNETES_VERSION, MANIFESTS, ROOT, load_all
from receiptsync_common import contract

CRD = MANIFESTS / "crds" / "receiptsyncs.yaml"  # a missing CRD fails these tests, it never skips them


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync_crd = _script("sync_crd")
render_manifests = _script("render_manifests")


def test_chart_crd_is_byte_identical_to_the_manifest():
    assert (CHART / "crds" / "receiptsyncs.yaml").read_bytes() == CRD.read_bytes(), "run: python scripts/sync_crd.py"
    assert sync_crd.differences() == []


def test_sync_crd_finds_and_mends_a_difference(tmp_path):
    source, target = tmp_path / "manifests", tmp_path / "chart"
    source.mkdir()
    (source / "a.yaml").write_text("kind: CustomResourceDefinition\n")
    assert sync_crd.differences(source, target) == [f"a.yaml: missing in {target}"]
    sync_crd.sync(source, target)
    assert sync_crd.differences(source, target) == []
    (target / "a.yaml").write_text("kind: Changed\n")
    (target / "stale.yaml").write_text("x: 1\n")
    assert sorted(sync_crd.differences(source, target)) == ["a.yaml: differs", f"stale.yaml: not in {source}"]
    sync_crd.sync(source, target)
    assert (target / "a.yaml").read_bytes() == (source / "a.yaml").read_bytes() and not (target / "stale.yaml").exists()


def test_plain_manifests_are_rendered_from_the_current_chart():
    assert render_manifests.out_of_date() == [], "run: python scripts/render_manifests.py"


def test_render_check_notices_a_hand_edit(tmp_path):
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    deployment = copy / "operator" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("replicas: 2", "replicas: 3"))
    assert render_manifests.out_of_date(copy) == ["operator/deployment.yaml: differs from the chart"]


@pytest.fixture(scope="module")
def kustomized() -> list[dict]:
    """`kubectl kustomize manifests/`."""
    result = subprocess.run([KUBECTL, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return load_all(result.stdout)


def _identity(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace", "")


def test_kustomize_installs_the_same_objects_as_the_chart(kustomized):
    chart = load_all(render_manifests.render_chart(include_crds=True))
    assert "CustomResourceDefinition" in {o["kind"] for o in chart}, "the chart ships no CRD"
    expected = {_identity(o) for o in chart} | {("Namespace", render_manifests.NAMESPACE, "")}
    assert {_identity(o) for o in kustomized} == expected


def _without_helm_labels(value):
    if isinstance(value, dict):
        return {k: _without_helm_labels(v) for k, v in value.items()
                if k != "helm.sh/chart" and not (k == "app.kubernetes.io/managed-by" and v == "Helm")}
    if isinstance(value, list):
        return [_without_helm_labels(v) for v in value]
    return value


def test_kustomize_output_matches_the_chart_object_by_object(kustomized):
    """Same specs, rules and env; only Helm's own labels differ."""
    chart = {_identity(o): _without_helm_labels(o) for o in load_all(render_manifests.render_chart())}
    for obj in kustomized:
        if obj["kind"] in ("Namespace", "CustomResourceDefinition"):
            continue
        twin = chart[_identity(obj)]
        for field in ("spec", "rules", "roleRef", "subjects"):
            assert obj.get(field) == twin.get(field), f"{_identity(obj)} {field}"


def test_plain_manifests_match_the_kubernetes_schema(kustomized):
    for obj in kustomized:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_operator_namespace_enforces_restricted_pod_security(kustomized):
    (namespace,) = [o for o in kustomized if o["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- examples ----------------------------------------------------------------------------------------

EXAMPLES = MANIFESTS / "examples"


def _example(name: str) -> list[dict]:
    return load_all((EXAMPLES / name).read_text())


def _crd_schema() -> dict:
    (crd,) = load_all(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == contract.VERSION]
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("name", ["receiptsync.yaml", "scheduled-receiptsync.yaml"])
def test_receiptsync_examples_follow_the_contract(name):
    (sync,) = _example(name)
    assert sync["apiVersion"] == contract.API_VERSION and sync["kind"] == contract.KIND
    spec = sync["spec"]
    assert spec["businessId"] == "demo-business"
    assert spec["gmail"]["secretRef"]["name"] == "gmail-demo"
    assert "namespace" not in sync["metadata"]  # applies to the namespace you choose
    jsonschema.validate(sync, _crd_schema())


def test_one_off_example_is_a_full_sync():
    (sync,) = _example("receiptsync.yaml")
    assert sync["metadata"]["name"] == "demo"
    assert sync["spec"]["mode"] == contract.MODE_FULL and "schedule" not in sync["spec"]


def test_scheduled_example_is_hourly_incremental():
    (sync,) = _example("scheduled-receiptsync.yaml")
    assert sync["spec"]["schedule"] == "0 * * * *" and sync["spec"]["mode"] == contract.MODE_INCREMENTAL


def test_gmail_secret_template_holds_an_authorized_user_json():
    (secret,) = _example("gmail-credentials-secret.yaml")
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert secret["metadata"]["name"] == "gmail-demo"
    credentials = json.loads(secret["stringData"][contract.DEFAULT_CREDENTIALS_KEY])
    assert {"client_id", "client_secret", "refresh_token", "token_uri"} <= set(credentials)
    assert credentials["refresh_token"] == "refresh-token-for:demo@example.com"
    assert "kubectl create secret generic" in (EXAMPLES / "gmail-credentials-secret.yaml").read_text()


def test_connections_secret_template_has_the_keys_the_chart_reads():
    (secret,) = _example("connections-secret.yaml")
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert secret["metadata"]["name"] == values["redis"]["existingSecret"] == values["database"]["existingSecret"]
    assert set(secret["stringData"]) == {values["redis"]["existingSecretKey"], values["database"]["existingSecretKey"]}
