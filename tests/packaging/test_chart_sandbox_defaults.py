"""Issue 6's sandbox acceptance, literally: after `receiptsync-sandbox up --no-operator` and `. DIR/env`,
a bare `helm install rs charts/receipt-sync` (namespace default, no --set, no -f), the Gmail
credentials Secret and `kubectl apply -f manifests/examples/receiptsync.yaml` reach Complete, with
the operator running from the chart's Deployment (default 2 replicas, one active via the Lease);
`helm uninstall rs` then leaves no chart-owned object behind, only the CRD.

What the chart reads by default - Secret `receiptsync-connections` (redis-url, database-url and the
optional gmail-api-endpoint) in the release namespace - the sandbox provides in `default`, as a
cluster admin would. The sandbox's default mailbox holds demo@example.com, the example's tenant.

After uninstall two things the operator (not Helm) created may stay, as the chart README says: the
leader-election Lease (released: no holder) and Events. Neither carries the chart's labels.
"""
from __future__ import annotations

import json

import pytest

from chart_render import CHART, MANIFESTS, template
from receiptsync_common import contract
from receiptsync_sandbox.gmail.auth import authorized_user

from receiptsync_sandbox.testing import Sandbox, wait_until

pytestmark = [pytest.mark.slow]

RELEASE = "rs"
NAMESPACE = "default"  # no --namespace: the kubeconfig's default
FULLNAME = "rs-receipt-sync"  # Deployment, ServiceAccount, Lease, RBAC objects
CRD_NAME = f"{contract.PLURAL}.{contract.GROUP}"
CLUSTER_KINDS = {"ClusterRole", "ClusterRoleBinding"}


def _kinds_to_check() -> tuple[str, str]:
    """Every kind the default chart renders, plus what they create (ReplicaSets, Pods) and Helm's
    release record (a Secret): (namespaced kinds, cluster kinds) as kubectl resource lists."""
    kinds = {obj["kind"] for obj in template(release=RELEASE, namespace=NAMESPACE)} | {"ReplicaSet", "Pod", "Secret"}
    return (",".join(sorted(k.lower() for k in kinds - CLUSTER_KINDS)),
            ",".join(sorted(k.lower() for k in kinds & CLUSTER_KINDS)))


@pytest.fixture(scope="module")
def sandbox():
    # Its own sandbox: the chart's operator serves every namespace and must not meet other suites' operators.
    with Sandbox(operator=False) as running:
        yield running


def _available(sandbox) -> int:
    deployment = sandbox.get("deployment", FULLNAME, NAMESPACE, check=False) or {}
    return (deployment.get("status") or {}).get("availableReplicas") or 0


def _operator_pods(sandbox) -> list[dict]:
    listing = sandbox.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json",
                              "-l", f"app.kubernetes.io/instance={RELEASE}")
    return json.loads(listing.stdout)["items"]


def _released_or_expired(sandbox) -> bool:
    import datetime as dt

    spec = (sandbox.get("lease", FULLNAME, NAMESPACE, check=False) or {}).get("spec") or {}
    if not spec.get("holderIdentity"):
        return True
    renewed = dt.datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
    return dt.datetime.now(dt.timezone.utc) - renewed > dt.timedelta(seconds=spec["leaseDurationSeconds"])


def _holder(sandbox) -> str:
    lease = sandbox.get("lease", FULLNAME, NAMESPACE, check=False) or {}
    return (lease.get("spec") or {}).get("holderIdentity") or ""


def _chart_objects(sandbox) -> list[str]:
    """Every object of the release, found by its label or by the chart's name prefix."""
    names = set()
    namespaced, cluster = _kinds_to_check()
    for kinds, scope in ((namespaced, ["-A"]), (cluster, [])):
        listing = json.loads(sandbox.kubectl("get", kinds, *scope, "-o", "json").stdout)
        for obj in listing["items"]:
            meta = obj["metadata"]
            labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
            if (labels.get("app.kubernetes.io/instance") == RELEASE or meta["name"].startswith(FULLNAME)
                    or annotations.get("meta.helm.sh/release-name") == RELEASE
                    or meta["name"].startswith(f"sh.helm.release.v1.{RELEASE}.")):
                names.add(f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}")
    return sorted(names)


def _create_credentials(sandbox) -> None:
    credentials = authorized_user("demo@example.com", sandbox.env["GMAIL_TOKEN_URI"],
                                  client_id="demo-client.apps.example.com", client_secret="demo-client-secret")
    sandbox.kubectl("create", "secret", "generic", "gmail-demo",
                    f"--from-literal={contract.DEFAULT_CREDENTIALS_KEY}={json.dumps(credentials)}")


def test_bare_helm_install_syncs_the_example_and_uninstall_leaves_only_the_crd(sandbox):
    # What `receiptsync-sandbox up` provisioned for the chart's defaults.
    connections = sandbox.get("secret", "receiptsync-connections", NAMESPACE)
    assert set(connections["data"]) == {"redis-url", "database-url", "gmail-api-endpoint", "credential-key"}

    sandbox.helm("install", RELEASE, str(CHART))
    assert sandbox.get("crd", CRD_NAME) is not None, "the chart's crds/ were not installed"
    wait_until(lambda: _available(sandbox) >= 1, timeout=60, message="the chart's operator Deployment available")
    holder = wait_until(lambda: _holder(sandbox), timeout=30, message="an operator replica holding the Lease")
    pods = sorted(pod["metadata"]["name"] for pod in _operator_pods(sandbox))
    assert holder in pods, (holder, pods)
    # The default two replicas share the sandbox's loopback: the second cannot bind the metrics port,
    # logs it, and stands by - it must neither crash nor take the Lease.
    wait_until(lambda: _available(sandbox) == 2, timeout=30, message="both operator replicas available")

    _create_credentials(sandbox)
    sandbox.kubectl("apply", "-f", str(MANIFESTS / "examples" / "receiptsync.yaml"))
    result = sandbox.kubectl("wait", "--for=condition=Complete", "rsync/demo", "--timeout=120s", check=False,
                             timeout=130)
    sync = sandbox.get("rsync", "demo", NAMESPACE)
    assert result.returncode == 0, (result.stderr, sync.get("status"))
    assert sync["status"]["phase"] == contract.PHASE_FINISHED
    assert sync["status"]["progress"]["messagesScanned"] > 0
    # The worker was pointed at the emulator by the Secret's gmail-api-endpoint (gmail.apiEndpoint is empty).
    (job,) = sandbox.get("jobs", namespace=NAMESPACE)["items"]
    worker_env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert worker_env[contract.ENV_GMAIL_API_ENDPOINT] == sandbox.env["GMAIL_API_ENDPOINT"]
    before = _chart_objects(sandbox)
    assert f"Deployment/{NAMESPACE}/{FULLNAME}" in before and f"ClusterRole//{FULLNAME}" in before, before

    sandbox.helm("uninstall", RELEASE, "--wait", "--timeout", "60s", timeout=90)
    wait_until(lambda: not _chart_objects(sandbox), timeout=30,
               message=f"chart objects gone: {_chart_objects(sandbox)}")
    assert sandbox.get("crd", CRD_NAME) is not None
    assert sandbox.get("rsync", "demo", NAMESPACE) is not None  # the user's, not the chart's
    assert sandbox.get("secret", "receiptsync-connections", NAMESPACE) is not None  # the admin's
    # The operator's own Lease may stay: not Helm's (no release labels/annotations), and not held by
    # anyone alive. On a real API server `helm uninstall` deletes the ServiceAccount and RBAC right
    # after the Deployment, before the pods get SIGTERM, so the stopping operator's release is refused
    # (its token is gone) and the Lease simply expires: no holder, or a renewal older than its duration.
    lease = sandbox.get("lease", FULLNAME, NAMESPACE, check=False)
    if lease is not None:
        meta = lease["metadata"]
        assert "app.kubernetes.io/instance" not in (meta.get("labels") or {}), meta
        assert "meta.helm.sh/release-name" not in (meta.get("annotations") or {}), meta
        wait_until(lambda: _released_or_expired(sandbox), timeout=40, message="the Lease released or expired")
