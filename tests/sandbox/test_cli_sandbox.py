"""`receiptsync-sandbox up/down` as a user runs them: ready quickly, usable with the unmodified
kubectl binaries through DIR/env, refuses a second `up`, and `down` leaves no process behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
import redis

from receiptsync_sandbox import procs
from receiptsync_sandbox.testing import Sandbox, container_pids, process_running, wait_until

pytestmark = pytest.mark.slow
SYSTEM_KUBECTL = "/usr/bin/kubectl"


def test_up_use_and_down(tmp_path):
    sandbox = Sandbox(tmp_path / "state")
    sandbox.start()
    try:
        assert sandbox.up_seconds < 30  # the bound for a warm build cache on 2 cores
        exercise(sandbox)
        env_before = dict(sandbox.env)
        second = sandbox.command("up", "--no-operator")
        assert second.returncode == 1 and "already running" in second.stdout
        pod_pids = start_a_pod(sandbox)
        recorded = json.loads((sandbox.state_dir / "sandbox.json").read_text())
        data_dir = Path(recorded["postgres"]["data_dir"])
        # Even with the node agent killed outright, its pods' processes must not outlive `down`.
        os.kill(recorded["processes"]["nodeagent"]["pid"], signal.SIGKILL)
    finally:
        down = sandbox.command("down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert procs.sandbox_processes(sandbox.state_dir) == []
    assert not any(process_running(pid) for pid in pod_pids)
    assert not data_dir.exists()
    assert (sandbox.state_dir / "logs" / "kube-apiserver.log").exists()
    again = sandbox.command("down")
    assert again.returncode == 0 and "nothing was running" in again.stdout
    # The same state dir comes up again (as `make demo` does on every run), on new ports.
    reused = Sandbox(sandbox.state_dir)
    reused.start()
    try:
        assert reused.kubectl("get", "ns", "default").returncode == 0
        assert reused.env["KUBECONFIG"] == env_before["KUBECONFIG"]
    finally:
        assert reused.command("down").returncode == 0
    assert (sandbox.state_dir / "logs" / "kube-apiserver.log.previous").exists()


def exercise(sandbox: Sandbox) -> None:
    env = sandbox.env
    for name in ("KUBECONFIG", "REDIS_URL", "DATABASE_URL", "GMAIL_API_ENDPOINT", "GMAIL_TOKEN_URI"):
        assert env[name], name
    assert env["PATH"].split(":")[0].endswith("/bin") and Path(env["PATH"].split(":")[0], "helm").exists()
    # The unmodified binaries, found through the env file's PATH.
    version = subprocess.run(["kubectl", "version", "-o", "json"], env=sandbox.process_env(), capture_output=True,
                             text=True, check=True)
    assert json.loads(version.stdout)["serverVersion"]["major"] == "1"
    assert "jobs" in sandbox.kubectl("api-resources").stdout
    sandbox.kubectl("create", "ns", "x", kubectl=SYSTEM_KUBECTL if Path(SYSTEM_KUBECTL).exists() else None)
    assert "x" in sandbox.kubectl("get", "ns", "-o", "name").stdout
    from kubernetes import client

    assert "x" in [ns.metadata.name for ns in client.CoreV1Api(sandbox.api()).list_namespace().items]
    assert redis.Redis.from_url(env["REDIS_URL"]).ping()
    assert ":6379/" not in env["REDIS_URL"] and ":5432/" not in env["DATABASE_URL"]
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert env["GMAIL_TOKEN_URI"].endswith("/token")


def start_a_pod(sandbox: Sandbox) -> list[int]:
    sandbox.kubectl("create", "namespace", "keep")
    sandbox.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "keep", "namespace": "keep"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "keep"}},
                            "template": {"metadata": {"labels": {"app": "keep"}},
                                         "spec": {"containers": [{
                                             "name": "main", "image": "receiptsync-operator:0.1.0",
                                             "command": ["sh", "-c", "trap '' TERM; sleep 300 & wait"]}]}}}})
    sandbox.kubectl("-n", "keep", "rollout", "status", "deployment/keep", "--timeout=30s")

    def pids():
        return [pid for pod in sandbox.get("pods", namespace="keep")["items"] for pid in container_pids(pod)
                if process_running(pid)]

    return wait_until(pids, 20, message="the pod's process")


def test_down_on_a_dir_that_never_ran_is_a_no_op(tmp_path):
    sandbox = Sandbox(tmp_path)
    result = sandbox.command("down")
    assert result.returncode == 0 and "nothing" in result.stdout


def test_up_installs_the_crd_and_runs_the_operator(tmp_path):
    with Sandbox(tmp_path / "state", operator=True) as sandbox:
        assert sandbox.up_seconds < 45
        crd = sandbox.get("crd", "receiptsyncs.receipts.prosaas.pro")
        assert crd["spec"]["names"]["shortNames"] == ["rsync"]
        # Installed by the chart, with helm, as a user would.
        release = sandbox.helm("list", "-n", "receiptsync-system", "-o", "json").stdout
        assert [r["name"] for r in json.loads(release)] == ["receiptsync"]
        deployment = sandbox.get("deployment", "receiptsync-receipt-sync", "receiptsync-system")
        assert deployment["status"]["availableReplicas"] == 1
        [pod] = sandbox.get("pods", namespace="receiptsync-system")["items"]
        assert pod["spec"]["serviceAccountName"] == "receiptsync-receipt-sync"
        assert pod["spec"]["nodeName"] == "sandbox"
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "redis-url"
        assert env["RECEIPTSYNC_WORKER_IMAGE"]["value"].startswith("receiptsync-worker:")
        assert sandbox.kubectl("get", "rsync", "-A").returncode == 0
        # It talks to the API server with its own ServiceAccount, and is never refused.
        operator = f"system:serviceaccount:receiptsync-system:{pod['spec']['serviceAccountName']}"
        calls = wait_until(lambda: sandbox.audit(user=operator), 20, message="the operator's API calls")
        assert not [c for c in calls if c["responseStatus"]["code"] == 403], "the operator got a 403"
        logs = sandbox.kubectl("-n", "receiptsync-system", "logs", pod["metadata"]["name"]).stdout
        assert '"leading"' in logs
    assert procs.sandbox_processes(sandbox.state_dir) == []
