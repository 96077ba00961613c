"""The node agent (our kubelet) under the real control plane, driven with the real kubectl: pods the
scheduler binds to it run as local processes with the container's env, volumes at their mount
paths, the ServiceAccount token for in-cluster config, termination messages and memory limits."""
from __future__ import annotations

import json
import uuid

import pytest

from receiptsync_sandbox.testing import container_pids, process_running, wait_until

pytestmark = pytest.mark.slow
WORKER_IMAGE = "receiptsync-worker:0.1.0"


@pytest.fixture
def namespace(sandbox):
    name = "na-" + uuid.uuid4().hex[:8]
    sandbox.kubectl("create", "namespace", name)
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod(name: str, command: list[str], image: str = WORKER_IMAGE, restart: str = "Never", **spec) -> dict:
    container = {"name": "main", "image": image, "command": command, **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart, "containers": [container], **spec}}


def phase(sandbox, namespace: str, name: str) -> str:
    found = sandbox.get("pod", name, namespace, check=False)
    return ((found or {}).get("status") or {}).get("phase", "")


def logs(sandbox, namespace: str, name: str) -> str:
    return sandbox.kubectl("-n", namespace, "logs", name).stdout


PRINT_ENV = ("import json, os; keys = ['TOKEN', 'MODE', 'FROM_ALL_mode', 'POD', 'NS', 'UID', 'SA', 'IP', 'HOSTNAME', "
             "'HOME', 'KUBECONFIG', 'PYTHONUNBUFFERED', 'KUBERNETES_SERVICE_HOST', 'REDIS_URL']; "
             "print(json.dumps({k: os.environ.get(k) for k in keys}))")


def test_a_pod_gets_its_env_from_secrets_configmaps_and_fields(sandbox, namespace):
    sandbox.apply([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "full"}},
        pod("env", ["python", "-c", PRINT_ENV], container={
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "FROM_ALL_"}],
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ]}),
    ], namespace)
    wait_until(lambda: phase(sandbox, namespace, "env") == "Succeeded", 30, message="pod env to succeed")
    env = json.loads(logs(sandbox, namespace, "env").strip().splitlines()[-1])
    uid = sandbox.get("pod", "env", namespace)["metadata"]["uid"]
    assert env["TOKEN"] == "s3cret" and env["MODE"] == "full" and env["FROM_ALL_mode"] == "full"
    assert (env["POD"], env["NS"], env["UID"], env["SA"], env["IP"]) == ("env", namespace, uid, "default", "127.0.0.1")
    assert env["HOSTNAME"] == "env"
    assert env["HOME"].startswith(str(sandbox.state_dir / "pods" / namespace / "env"))
    assert env["PYTHONUNBUFFERED"] == "1"  # the image's ENV
    assert env["KUBECONFIG"] is None and env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["REDIS_URL"] is None  # nothing leaks in from the sandbox's own environment


def test_a_pod_reaches_the_api_with_in_cluster_config(sandbox, namespace):
    script = ("from kubernetes import client, config; config.load_incluster_config(); "
              "review = client.AuthenticationV1Api().create_self_subject_review({'apiVersion': "
              "'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'}); "
              "print('user', review.status.user_info.username)")
    sandbox.apply(pod("kube", ["python", "-c", script]), namespace)
    wait_until(lambda: phase(sandbox, namespace, "kube") in ("Succeeded", "Failed"), 30, message="pod kube to finish")
    output = logs(sandbox, namespace, "kube")
    assert phase(sandbox, namespace, "kube") == "Succeeded", output
    assert f"user system:serviceaccount:{namespace}:default" in output


def test_no_token_when_automount_is_off(sandbox, namespace):
    path = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    sandbox.apply(pod("noauto", ["python", "-c", f"import os; print('token', os.path.exists('{path}'))"],
                      automountServiceAccountToken=False), namespace)
    wait_until(lambda: phase(sandbox, namespace, "noauto") == "Succeeded", 30, message="pod noauto to succeed")
    assert "token False" in logs(sandbox, namespace, "noauto")


def test_termination_message_and_memory_limit(sandbox, namespace):
    sandbox.apply(pod("says", ["sh", "-c", "echo '{\"outcome\": \"done\"}' > /dev/termination-log"]), namespace)
    hog = "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(30)"
    sandbox.apply(pod("hog", ["python", "-c", hog], container={"resources": {"limits": {"memory": "100Mi"}}}),
                  namespace)
    wait_until(lambda: phase(sandbox, namespace, "says") == "Succeeded", 30, message="pod says to succeed")
    terminated = sandbox.get("pod", "says", namespace)["status"]["containerStatuses"][0]["state"]["terminated"]
    assert json.loads(terminated["message"]) == {"outcome": "done"}
    wait_until(lambda: phase(sandbox, namespace, "hog") == "Failed", 30, message="pod hog to be killed")
    terminated = sandbox.get("pod", "hog", namespace)["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled" and terminated["exitCode"] == 137


def test_a_missing_secret_keeps_the_pod_pending_until_it_exists(sandbox, namespace):
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    sandbox.apply(pod("waits", ["python", "-c", "import os; print('token', os.environ['TOKEN'])"],
                      container={"env": env}), namespace)

    def waiting_reason():
        statuses = (sandbox.get("pod", "waits", namespace).get("status") or {}).get("containerStatuses") or []
        return statuses and statuses[0]["state"].get("waiting")

    waiting = wait_until(waiting_reason, 20, message="CreateContainerConfigError")
    assert waiting["reason"] == "CreateContainerConfigError" and 'secret "later" not found' in waiting["message"]
    assert phase(sandbox, namespace, "waits") == "Pending"
    sandbox.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"}, "stringData": {"token": "t1"}},
                  namespace)
    wait_until(lambda: phase(sandbox, namespace, "waits") == "Succeeded", 30,
               message="pod to run once the secret exists")
    assert "token t1" in logs(sandbox, namespace, "waits")


def test_restart_policy_always_restarts_a_crashing_container(sandbox, namespace):
    sandbox.apply(pod("crash", ["python", "-c", "print('boom'); raise SystemExit(2)"], restart="Always"), namespace)

    def restarted():
        statuses = (sandbox.get("pod", "crash", namespace).get("status") or {}).get("containerStatuses") or []
        return statuses and statuses[0]["restartCount"] >= 1 and statuses[0]

    status = wait_until(restarted, 30, message="a restart")
    assert status["lastState"]["terminated"]["exitCode"] == 2
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert phase(sandbox, namespace, "crash") == "Running"


def test_deleting_a_pod_stops_its_process_and_removes_it(sandbox, namespace):
    sandbox.apply(pod("sleeper", ["sleep", "300"], terminationGracePeriodSeconds=5), namespace)
    wait_until(lambda: phase(sandbox, namespace, "sleeper") == "Running", 20, message="pod running")
    [pid] = container_pids(sandbox.get("pod", "sleeper", namespace))
    assert process_running(pid)
    sandbox.kubectl("-n", namespace, "delete", "pod", "sleeper", "--timeout=20s")
    assert sandbox.get("pod", "sleeper", namespace, check=False) is None
    # A bound pod's object goes only after its process; an unbound one's may go first.
    wait_until(lambda: not process_running(pid), 10, message="the pod's process to stop")


def test_a_failing_start_is_reported(sandbox, namespace):
    sandbox.apply(pod("nocmd", ["no-such-command-xyz"]), namespace)
    wait_until(lambda: phase(sandbox, namespace, "nocmd") == "Failed", 20, message="pod to fail")
    terminated = sandbox.get("pod", "nocmd", namespace)["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "StartError" and terminated["exitCode"] == 128
    assert "executable file not found" in terminated["message"]


def test_init_containers_run_first_in_order(sandbox, namespace):
    def step(name: str, text: str) -> dict:
        return {"name": name, "image": WORKER_IMAGE, "command": ["sh", "-c", f"echo {text} >> $HOME/order"]}

    sandbox.apply(pod("ordered", ["sh", "-c", "echo main >> $HOME/order; cat $HOME/order"],
                      initContainers=[step("first", "one"), step("second", "two")]), namespace)
    wait_until(lambda: phase(sandbox, namespace, "ordered") == "Succeeded", 30, message="pod ordered to succeed")
    assert logs(sandbox, namespace, "ordered").split() == ["one", "two", "main"]
    status = sandbox.get("pod", "ordered", namespace)["status"]
    assert [s["state"]["terminated"]["exitCode"] for s in status["initContainerStatuses"]] == [0, 0]
