"""The real kubectl against the sandbox API server: explain, validation errors at apply, strategic
merge from the published OpenAPI, server-side apply, and printer columns."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from receiptsync_sandbox.kubeconfig import kubeconfig, write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "manifests" / "crds" / "receiptsyncs.yaml"
VENV_KUBECTL = Path(sys.executable).parent / "kubectl"
KUBECTLS = [str(p) for p in (VENV_KUBECTL, Path("/usr/bin/kubectl")) if p.exists()]

pytestmark = pytest.mark.skipif(not KUBECTLS, reason="no kubectl binary available")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A sandbox API server on a free port, with the ReceiptSync CRD installed."""
    state = tmp_path_factory.mktemp("apiserver")
    process = subprocess.Popen(
        [sys.executable, "-m", "receiptsync_sandbox.apiserver", "--port", "0", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("READY "), line
        config = write_kubeconfig(state / "kubeconfig", kubeconfig(line.split()[1], "admin", namespace="default"))
        env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(state)}  # private discovery cache
        run = _runner(env)
        run(KUBECTLS[0], "apply", "-f", str(CRD_PATH))
        _wait_until_served(run)
        yield run
    finally:
        process.terminate()
        process.wait(timeout=10)


def _runner(env):
    def run(kubectl: str, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([kubectl, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done
    return run


def _wait_until_served(run):
    deadline = time.monotonic() + 20
    while True:
        done = run(KUBECTLS[0], "wait", "--for=condition=Established", "--timeout=10s",
                   "crd/receiptsyncs.receipts.prosaas.pro", check=False)
        if done.returncode == 0 and run(KUBECTLS[0], "get", "rsync", check=False).returncode == 0:
            return
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.2)


def _tag(kubectl: str) -> str:
    """A name suffix per kubectl binary, so the parametrized tests do not share objects."""
    return str(KUBECTLS.index(kubectl))


def receiptsync(name: str, **spec) -> str:
    return yaml.safe_dump({"apiVersion": "receipts.prosaas.pro/v1alpha1", "kind": "ReceiptSync",
                           "metadata": {"name": name}, "spec": {"businessId": "acme", **spec}})


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_explain_prints_our_fields_and_descriptions(cluster, kubectl):
    out = cluster(kubectl, "explain", "rsync.spec").stdout
    assert "KIND:       ReceiptSync" in out
    assert "What to sync, from which mailbox, and when." in out
    for field in ("businessId", "fromDate", "toDate", "monthsBack", "schedule", "timeout", "gmail"):
        assert f"  {field}\t" in out, field
    assert "-required-" in out and "enum: incremental, full" in out
    gmail = cluster(kubectl, "explain", "rsync.spec.gmail.secretRef").stdout
    assert "name\t<string> -required-" in gmail and "credentials JSON" in gmail
    status = cluster(kubectl, "explain", "rsync.status.progress").stdout
    assert "messagesScanned" in status and "savedReceipts" in status


@pytest.mark.parametrize("kubectl", KUBECTLS)
@pytest.mark.parametrize("server_side", [False, True])
def test_apply_of_reversed_dates_fails_naming_both_fields(cluster, kubectl, server_side):
    args = ["apply", "-f", "-"] + (["--server-side"] if server_side else [])
    done = cluster(kubectl, *args, stdin=receiptsync("reversed", fromDate="2025-05-01", toDate="2025-04-01"), check=False)
    assert done.returncode != 0
    assert 'The ReceiptSync "reversed" is invalid' in done.stderr
    assert "spec.fromDate" in done.stderr and "spec.toDate" in done.stderr
    assert cluster(kubectl, "get", "rsync", "reversed", check=False).returncode != 0


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_unknown_fields_are_rejected_or_warned(cluster, kubectl):
    manifest = receiptsync("typo-" + _tag(kubectl), shedule="@daily")
    done = cluster(kubectl, "apply", "-f", "-", stdin=manifest, check=False)
    assert done.returncode != 0 and "spec.shedule" in done.stderr
    done = cluster(kubectl, "apply", "--validate=warn", "-f", "-", stdin=manifest)
    assert "unknown field" in done.stderr and "spec.shedule" in done.stderr
    name = yaml.safe_load(manifest)["metadata"]["name"]
    stored = yaml.safe_load(cluster(kubectl, "get", "rsync", name, "-o", "yaml").stdout)
    assert "shedule" not in stored["spec"] and stored["spec"]["mode"] == "incremental"
    cluster(kubectl, "delete", "rsync", name)


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_get_prints_the_contract_columns(cluster, kubectl):
    name = "cols-" + _tag(kubectl)
    cluster(kubectl, "apply", "-f", "-", stdin=receiptsync(name, schedule="0 3 * * *"))
    header = cluster(kubectl, "get", "rsync", name).stdout.splitlines()[0].split()
    assert header == ["NAME", "BUSINESS", "MODE", "PHASE", "SCANNED", "SAVED", "AGE"]
    wide = cluster(kubectl, "get", "rsync", name, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "BUSINESS", "MODE", "PHASE", "SCANNED", "SAVED", "AGE", "SCHEDULE", "LAST-SYNC", "NEXT"]
    assert "0 3 * * *" in wide[1]
    cluster(kubectl, "delete", "rsync", name)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: example/web:1
        env: [{name: A, value: "VALUE"}, {name: B, value: "b"}]
        ports: [{containerPort: 80}]
"""


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_client_side_apply_merges_built_ins_from_openapi_without_warnings(cluster, kubectl):
    name = "web-" + _tag(kubectl)
    first = DEPLOYMENT.replace("NAME", name).replace("VALUE", "1")
    cluster(kubectl, "apply", "-f", "-", stdin=first)
    # Someone else adds a container env var: a strategic merge by name keeps it, a merge patch would not.
    cluster(kubectl, "set", "env", f"deployment/{name}", "EXTRA=kept")
    done = cluster(kubectl, "apply", "-v=2", "-f", "-", stdin=first.replace('"1"', '"2"'))
    assert "warning" not in done.stderr.lower(), done.stderr
    stored = yaml.safe_load(cluster(kubectl, "get", "deployment", name, "-o", "yaml").stdout)
    env = {e["name"]: e.get("value") for e in stored["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"A": "2", "B": "b", "EXTRA": "kept"}
    cluster(kubectl, "delete", "deployment", name)


def test_kubectl_finds_field_validation_support(cluster):
    """With server-side validation detected, kubectl sends fieldValidation and skips client checks."""
    done = cluster(KUBECTLS[0], "apply", "-v=6", "--dry-run=server", "-f", "-", stdin=receiptsync("probe"))
    assert "fieldValidation=Strict" in done.stderr
