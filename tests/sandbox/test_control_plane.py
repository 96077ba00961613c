"""The sandbox is a real Kubernetes control plane: the upstream kube-apiserver with etcd, RBAC,
admission (Pod Security) and audit logging, the controller-manager, the scheduler, and our node
agent as its one Ready Node. Checked the way a user would, with the real kubectl."""
from __future__ import annotations

import json
import uuid

import pytest

from receiptsync_sandbox.controlplane import build
from receiptsync_sandbox.testing import wait_until

pytestmark = pytest.mark.slow
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def kubernetes_release() -> str:
    return build.kubernetes_release((build.MODULE_DIR / "go.mod").read_text())


@pytest.fixture
def restricted(sandbox):
    name = "cp-" + uuid.uuid4().hex[:8]
    sandbox.prepare_namespace(name)
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_the_server_is_the_upstream_release(sandbox):
    version = json.loads(sandbox.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == kubernetes_release()
    assert "apiserver_request_total" in sandbox.kubectl("get", "--raw", "/metrics").stdout
    readyz = sandbox.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in readyz


def test_rbac_is_enforced(sandbox):
    answer = sandbox.kubectl("auth", "can-i", "list", "secrets", "--as=system:serviceaccount:default:default",
                             check=False)
    assert answer.stdout.strip() == "no"
    assert sandbox.kubectl("auth", "can-i", "list", "secrets").stdout.strip() == "yes"  # the admin may


def test_pod_security_refuses_a_privileged_pod_in_a_restricted_namespace(sandbox, restricted):
    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root"},
                  "spec": {"containers": [{"name": "main", "image": "receiptsync-worker:0.1.0",
                                           "securityContext": {"privileged": True}}]}}
    result = sandbox.kubectl("-n", restricted, "apply", "-f", "-", input=json.dumps(privileged), check=False)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr and "restricted" in result.stderr


def test_the_node_is_ready_and_holds_its_lease(sandbox):
    node = sandbox.get("node", "sandbox")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert not node["spec"].get("taints")
    assert int(node["status"]["allocatable"]["pods"]) > 0
    lease = sandbox.get("lease", "sandbox", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "sandbox"


def test_an_image_that_cannot_be_pulled_shows_the_kubelets_reason(sandbox, restricted):
    name = "nope-" + uuid.uuid4().hex[:6]
    sandbox.kubectl("-n", restricted, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "securityContext": RESTRICTED_POD,
                 "containers": [{"name": "main", "image": "example.invalid/nope:1", "securityContext": RESTRICTED}]}}))

    def waiting_reason() -> str:
        statuses = (sandbox.get("pod", name, restricted).get("status") or {}).get("containerStatuses") or []
        return statuses and (statuses[0]["state"].get("waiting") or {}).get("reason")

    reason = wait_until(waiting_reason, 30, message="a waiting reason")
    assert reason in ("ErrImagePull", "ImagePullBackOff")
    pod = sandbox.get("pod", name, restricted)
    assert pod["spec"]["nodeName"] == "sandbox"  # bound by kube-scheduler, not by us
    assert pod["status"]["phase"] == "Pending"


def test_a_job_runs_through_the_scheduler_and_the_job_controller(sandbox, restricted):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hello"},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never",
               "securityContext": RESTRICTED_POD,
               "containers": [{"name": "main", "image": "receiptsync-worker:0.1.0",
                               "command": ["python", "-c", "print('hello from a job')"],
                               "securityContext": RESTRICTED}]}}}}
    sandbox.kubectl("-n", restricted, "apply", "-f", "-", input=json.dumps(job))
    sandbox.kubectl("-n", restricted, "wait", "--for=condition=Complete", "job/hello", "--timeout=60s", timeout=70)
    assert "hello from a job" in sandbox.kubectl("-n", restricted, "logs", "job/hello").stdout
    conditions = {c["type"] for c in sandbox.get("job", "hello", restricted)["status"]["conditions"]}
    assert {"SuccessCriteriaMet", "Complete"} <= conditions  # what Kubernetes >= 1.31 reports


def test_audit_log_records_who_did_what(sandbox):
    mark = sandbox.audit_mark()
    sandbox.kubectl("get", "namespaces")
    records = wait_until(lambda: [r for r in sandbox.audit(since_line=mark)
                                  if r["verb"] == "list"
                                  and (r.get("objectRef") or {}).get("resource") == "namespaces"],
                         10, message="an audit record of the list")
    assert records[0]["user"]["username"] == "kubernetes-admin"
    assert records[0]["responseStatus"]["code"] == 200
