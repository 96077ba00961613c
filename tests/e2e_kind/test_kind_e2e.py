"""End to end on a real cluster (kind): images built from this tree, the chart helm-installed with
its bundled Redis/PostgreSQL, the Gmail emulator as a pod, the shipped example ReceiptSync synced
to Complete — in namespaces that enforce Pod Security "restricted", with real RBAC.

    make test-kind                       # pytest -m kind
    make test-kind PYTEST_ARGS="--keep-cluster --cluster-name rs-e2e"   # keep it to look around

Needs a Docker engine, `kind` on PATH (or --kind-bin) and `make deps` (kubectl, helm in .venv/bin);
without them every test here is skipped with the reason (see conftest.py / kind_support.py).
The nodes pull the bundled store images (redis, postgres) unless Docker already has them locally.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

import kind_objects as objects

pytestmark = [pytest.mark.kind, pytest.mark.slow, pytest.mark.timeout(3600)]

SYNC_TIMEOUT_SECONDS = 15 * 60


class Tools:
    """docker / kubectl / helm against the kind cluster; errors carry the tool's own output."""

    def __init__(self, cluster, env):
        self.cluster = cluster
        self.env = env
        self.environ = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)}

    def _run(self, argv, *, input=None, check=True, timeout=900):
        done = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.environ,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def docker(self, *args, **kw):
        return self._run([self.env.docker_cli, *args], timeout=kw.pop("timeout", 1800), **kw)

    def kubectl(self, *args, **kw):
        return self._run([self.env.kubectl_bin, *args], **kw)

    def helm(self, *args, **kw):
        return self._run([self.env.helm_bin, *args], **kw)

    def apply(self, *docs):
        payload = "\n---\n".join(json.dumps(doc) for doc in docs)
        return self.kubectl("apply", "-f", "-", input=payload)

    def get_json(self, *args, check=True):
        done = self.kubectl("get", *args, "-o", "json", check=check)
        return json.loads(done.stdout) if done.returncode == 0 else None


@pytest.fixture(scope="module")
def tools(kind_cluster, kind_environment):
    return Tools(kind_cluster, kind_environment)


@pytest.fixture(scope="module")
def images(tools):
    """Build the operator, worker and emulator images and load them into the kind nodes."""
    for image, args in objects.image_builds():
        tools.docker(*args)
        tools.cluster.load_docker_image(image)
    # The bundled stores: load them too when Docker already has them (saves the nodes a pull).
    for image in objects.bundled_store_images():
        if tools.docker("image", "inspect", image, check=False).returncode == 0:
            tools.cluster.load_docker_image(image)
    return [image for image, _ in objects.image_builds()]


def _diagnostics(tools) -> str:
    out = []
    for args in (
        ["get", "rsync", "-A", "-o", "wide"],
        ["-n", objects.TENANT_NAMESPACE, "get", "rsync", objects.SYNC_NAME, "-o", "yaml"],
        ["-n", objects.TENANT_NAMESPACE, "describe", "rsync", objects.SYNC_NAME],
        ["get", "pods,jobs", "-A", "-o", "wide"],
        ["-n", objects.TENANT_NAMESPACE, "get", "events", "--sort-by=.lastTimestamp"],
        ["-n", objects.OPERATOR_NAMESPACE, "get", "events", "--sort-by=.lastTimestamp"],
        ["-n", objects.OPERATOR_NAMESPACE, "logs", f"deployment/{objects.FULLNAME}", "--tail=200"],
        ["-n", objects.TENANT_NAMESPACE, "logs", "-l", "app.kubernetes.io/managed-by=receiptsync-operator",
         "--tail=100", "--prefix"],
        ["-n", objects.EMULATOR_NAMESPACE, "logs", f"deployment/{objects.EMULATOR_NAME}", "--all-containers",
         "--tail=50"],
    ):
        done = tools.kubectl(*args, check=False, timeout=60)
        out.append(f"$ kubectl {' '.join(args)}\n{done.stdout}{done.stderr}")
    return "\n".join(out)


def _condition(sync: dict, ctype: str) -> dict:
    for cond in (sync.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return {}


def _wait_complete(tools) -> dict:
    """`kubectl wait --for=condition=Complete rsync/demo`, in short slices so a Failed run stops
    the wait at once (with its reason) instead of after the whole timeout."""
    deadline = time.monotonic() + SYNC_TIMEOUT_SECONDS
    while True:
        done = tools.kubectl("-n", objects.TENANT_NAMESPACE, "wait", "--for=condition=Complete",
                             f"rsync/{objects.SYNC_NAME}", "--timeout=15s", check=False, timeout=60)
        sync = tools.get_json("rsync", objects.SYNC_NAME, "-n", objects.TENANT_NAMESPACE)
        if done.returncode == 0:
            return sync
        failed = _condition(sync, "Failed")
        if failed.get("status") == "True":
            pytest.fail(f"ReceiptSync failed: {failed.get('reason')}: {failed.get('message')}\n{_diagnostics(tools)}")
        if time.monotonic() > deadline:
            pytest.fail(f"ReceiptSync not Complete within {SYNC_TIMEOUT_SECONDS}s\n{_diagnostics(tools)}")


def test_chart_syncs_the_example_on_kind(tools, images):
    # A kept cluster may hold a previous run: start the tenant from scratch so Complete is this run's.
    tools.kubectl("delete", "namespace", objects.TENANT_NAMESPACE, "--ignore-not-found", "--wait=true",
                  timeout=300)
    tools.apply(*(objects.namespace(ns) for ns in
                  (objects.OPERATOR_NAMESPACE, objects.TENANT_NAMESPACE, objects.EMULATOR_NAMESPACE)))

    # The Gmail emulator, its mailbox written by an initContainer from the samples module.
    tools.apply(*objects.emulator_objects())
    tools.kubectl("-n", objects.EMULATOR_NAMESPACE, "rollout", "status", f"deployment/{objects.EMULATOR_NAME}",
                  "--timeout=5m", timeout=330)

    # The chart: the CRD from crds/, the operator (2 replicas, one active), bundled stores.
    tools.helm(*objects.helm_install_args(), timeout=900)
    crd = tools.get_json("crd", "receiptsyncs.receipts.prosaas.pro")
    assert crd["spec"]["names"]["shortNames"] == ["rsync"]

    # The tenant's credentials and the shipped example, pointed at them.
    tools.apply(objects.credentials_secret())
    tools.apply(objects.receiptsync())

    sync = _wait_complete(tools)
    status = sync["status"]
    assert status["phase"] == "Finished", status
    assert status["progress"]["messagesScanned"] > 0, status
    assert status["progress"]["savedReceipts"] > 0, status
    assert _condition(sync, "Failed").get("status") == "False"

    # `kubectl get rsync` tells the same (printer columns).
    table = tools.kubectl("-n", objects.TENANT_NAMESPACE, "get", "rsync", "-o", "wide").stdout
    assert "Finished" in table and "demo-business" in table, table

    # The worker Job: no service-account token, only this tenant's Secret.
    jobs = tools.get_json("jobs", "-n", objects.TENANT_NAMESPACE,
                          "-l", "app.kubernetes.io/managed-by=receiptsync-operator")["items"]
    assert jobs, "no worker Job in the tenant namespace"
    pod_spec = jobs[-1]["spec"]["template"]["spec"]
    assert pod_spec.get("automountServiceAccountToken") is False
    secret_refs = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for container in pod_spec["containers"] for env in container.get("env") or []
        if "secretKeyRef" in (env.get("valueFrom") or {})
    }
    assert objects.credentials_secret()["metadata"]["name"] in secret_refs

    # The receipts are in the bundled PostgreSQL.
    count = tools.kubectl(
        "-n", objects.OPERATOR_NAMESPACE, "exec", f"statefulset/{objects.POSTGRES_STATEFULSET}", "--",
        "psql", "-U", "receiptsync", "-d", "receiptsync", "-tAc",
        f"SELECT count(*) FROM receipts WHERE business_id = '{sync['spec']['businessId']}'",
        timeout=120,
    ).stdout.strip()
    assert int(count) >= status["progress"]["savedReceipts"] > 0
