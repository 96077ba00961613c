"""Job and Deployment controllers in a running sandbox, driven with the real kubectl."""
from __future__ import annotations

import uuid

import pytest

from receiptsync_sandbox.testing import container_pids, process_running, wait_until

pytestmark = pytest.mark.slow
WORKER_IMAGE = "receiptsync-worker:0.1.0"
OPERATOR_IMAGE = "receiptsync-operator:0.1.0"


@pytest.fixture
def namespace(sandbox):
    name = "ctl-" + uuid.uuid4().hex[:8]
    sandbox.kubectl("create", "namespace", name)
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)


def job(name: str, command: list[str], **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": WORKER_IMAGE, "command": command}]}}}}


def job_pods(sandbox, namespace: str, name: str) -> list[dict]:
    return [p for p in sandbox.get("pods", namespace=namespace)["items"]
            if any(ref.get("name") == name for ref in p["metadata"].get("ownerReferences") or [])]


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_a_job_runs_to_complete_and_its_logs_are_served(sandbox, namespace):
    sandbox.apply(job("hello", ["python", "-c", "print('hello from the sandbox')"]), namespace)
    sandbox.kubectl("-n", namespace, "wait", "--for=condition=complete", "job/hello", "--timeout=30s")
    assert "hello from the sandbox" in sandbox.kubectl("-n", namespace, "logs", "job/hello").stdout
    status = sandbox.get("job", "hello", namespace)["status"]
    assert status["succeeded"] == 1 and "active" not in status
    assert status["startTime"] <= status["completionTime"]
    [pod] = job_pods(sandbox, namespace, "hello")
    assert pod["metadata"]["labels"]["job-name"] == "hello"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_a_failing_job_retries_up_to_its_backoff_limit_then_fails(sandbox, namespace):
    sandbox.apply(job("fails", ["python", "-c", "raise SystemExit(3)"], backoffLimit=2), namespace)
    sandbox.kubectl("-n", namespace, "wait", "--for=condition=failed", "job/fails", "--timeout=40s")
    found = sandbox.get("job", "fails", namespace)
    assert conditions(found)["Failed"]["reason"] == "BackoffLimitExceeded"
    assert found["status"]["failed"] == 3
    pods = job_pods(sandbox, namespace, "fails")
    assert len(pods) == 3 and all(p["status"]["phase"] == "Failed" for p in pods)


def test_active_deadline_kills_a_sleeping_pod(sandbox, namespace):
    sandbox.apply(job("sleepy", ["sleep", "300"], activeDeadlineSeconds=3), namespace)
    pods = wait_until(lambda: [p for p in job_pods(sandbox, namespace, "sleepy") if container_pids(p)], 20, message="a running pod")
    [pid] = container_pids(pods[0])
    assert process_running(pid)
    sandbox.kubectl("-n", namespace, "wait", "--for=condition=failed", "job/sleepy", "--timeout=30s")
    assert conditions(sandbox.get("job", "sleepy", namespace))["Failed"]["reason"] == "DeadlineExceeded"
    wait_until(lambda: not process_running(pid), 20, message="the pod's process to die")


def test_deleting_a_job_kills_its_running_process(sandbox, namespace):
    sandbox.apply(job("long", ["sleep", "300"]), namespace)
    pods = wait_until(lambda: [p for p in job_pods(sandbox, namespace, "long") if container_pids(p)], 20, message="a running pod")
    [pid] = container_pids(pods[0])
    sandbox.kubectl("-n", namespace, "delete", "job", "long")
    wait_until(lambda: not process_running(pid), 30, message="the job's process to die")
    wait_until(lambda: not job_pods(sandbox, namespace, "long"), 30, message="the job's pods to go")


def test_ttl_after_finished_deletes_the_job(sandbox, namespace):
    sandbox.apply(job("brief", ["python", "-c", "pass"], ttlSecondsAfterFinished=1), namespace)
    wait_until(lambda: sandbox.get("job", "brief", namespace, check=False) is None, 30, message="the job to be deleted")


def deployment(name: str, replicas: int, command: list[str]) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": OPERATOR_IMAGE, "command": command}]}}}}


def deployment_pids(sandbox, namespace: str, name: str) -> list[int]:
    pods = sandbox.get("pods", namespace=namespace)["items"]
    return [pid for p in pods if p["metadata"]["labels"].get("app") == name and p["status"].get("phase") == "Running"
            for pid in container_pids(p)]


def test_a_deployment_rolls_out_scales_to_zero_and_its_processes_go(sandbox, namespace):
    sandbox.apply(deployment("op", 2, ["sleep", "300"]), namespace)
    sandbox.kubectl("-n", namespace, "rollout", "status", "deployment/op", "--timeout=30s")
    found = sandbox.get("deployment", "op", namespace)
    assert (found["status"]["readyReplicas"], found["status"]["availableReplicas"]) == (2, 2)
    assert conditions(found)["Available"]["status"] == "True"
    pids = wait_until(lambda: len(deployment_pids(sandbox, namespace, "op")) == 2 and deployment_pids(sandbox, namespace, "op"),
                      20, message="two running pods")
    assert all(process_running(pid) for pid in pids)
    sandbox.kubectl("-n", namespace, "scale", "deployment/op", "--replicas=0")
    wait_until(lambda: not any(process_running(pid) for pid in pids), 30, message="the processes to stop")
    sandbox.kubectl("-n", namespace, "rollout", "status", "deployment/op", "--timeout=30s")
    assert "readyReplicas" not in sandbox.get("deployment", "op", namespace)["status"]


def test_a_template_change_replaces_the_pods(sandbox, namespace):
    sandbox.apply(deployment("roll", 1, ["sleep", "301"]), namespace)
    sandbox.kubectl("-n", namespace, "rollout", "status", "deployment/roll", "--timeout=30s")
    [old_pid] = wait_until(lambda: deployment_pids(sandbox, namespace, "roll"), 20, message="a running pod")
    sandbox.apply(deployment("roll", 1, ["sleep", "302"]), namespace)
    sandbox.kubectl("-n", namespace, "rollout", "status", "deployment/roll", "--timeout=30s")
    wait_until(lambda: not process_running(old_pid), 30, message="the old pod's process to stop")
    replicasets = sandbox.get("replicasets", namespace=namespace)["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replicasets) == [0, 1]
    assert sandbox.get("deployment", "roll", namespace)["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
