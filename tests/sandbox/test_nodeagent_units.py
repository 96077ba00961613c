"""The node agent's pure decisions: which images run, argv, environment, volumes, pod status."""
from __future__ import annotations

import asyncio
import base64
import signal
import sys
import time

import pytest

from receiptsync_sandbox import procs
from receiptsync_sandbox.nodeagent import env as envlib
from receiptsync_sandbox.nodeagent import images, podstatus, volumes
from receiptsync_sandbox.nodeagent import process as process_module
from receiptsync_sandbox.nodeagent.process import ContainerProcess, GroupMemory, StartError

POD = {
    "metadata": {"name": "p1", "namespace": "team", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {"serviceAccountName": "robot", "containers": []},
}


@pytest.mark.parametrize("image, expected", [
    ("receiptsync-worker:0.1.0", "receiptsync-worker"),
    ("receiptsync-operator", "receiptsync-operator"),
    ("ghcr.io/acme/receiptsync-worker:dev", "receiptsync-worker"),
    ("localhost:5000/receiptsync-operator:1@sha256:abc", "receiptsync-operator"),
    ("nginx", None),
    ("receiptsync-worker-evil:1", None),
    ("receiptsync-worker.io/nginx:1", None),
])
def test_project_images_are_recognised_by_repository_name(image, expected):
    assert images.project_image(image) == expected


def test_final_stage_entrypoint_cmd_and_env_come_from_the_dockerfile():
    text = """FROM python AS build
ENTRYPOINT ["wrong"]
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONUNBUFFERED=1
ENTRYPOINT ["receiptsync-worker"]
CMD ["--once"]
"""
    config = images.parse_dockerfile(text)
    assert config.entrypoint == ("receiptsync-worker",)
    assert config.cmd == ("--once",)
    assert dict(config.env)["PYTHONUNBUFFERED"] == "1"


def test_the_repos_dockerfiles_give_the_console_scripts():
    assert images.load_image_config("receiptsync-worker").entrypoint == ("receiptsync-worker",)
    assert images.load_image_config("receiptsync-operator").entrypoint == ("receiptsync-operator",)


@pytest.mark.parametrize("container, argv", [
    ({}, ["ep", "cmd"]),
    ({"args": ["a"]}, ["ep", "a"]),
    ({"command": ["python"]}, ["python"]),  # command drops the image CMD
    ({"command": ["python"], "args": ["-c", "1"]}, ["python", "-c", "1"]),
])
def test_command_and_args_follow_kubernetes_rules(container, argv):
    image = images.ImageConfig(entrypoint=("ep",), cmd=("cmd",))
    assert images.container_argv(container, image) == argv


def test_environment_resolves_values_refs_fields_and_envfrom():
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "missing", "optional": True}}],
        "env": [
            {"name": "PLAIN", "value": "v"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": True}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "URL", "value": "http://$(IP):80/$(UNKNOWN)/$$(IP)"},
        ],
    }
    sources = envlib.Sources(secrets={"creds": {"token": "s3cret"}, "missing": None},
                             configmaps={"settings": {"mode": "full"}})
    env = envlib.container_env(POD, container, sources, {"HOME": "/h"})
    assert env["HOME"] == "/h"
    assert env["CFG_mode"] == "full"
    assert env["PLAIN"] == "v" and env["TOKEN"] == "s3cret" and env["MODE"] == "full"
    assert "OPT" not in env
    assert (env["POD"], env["NS"], env["SA"], env["IP"], env["APP"]) == ("p1", "team", "robot", "127.0.0.1", "x")
    assert env["URL"] == "http://127.0.0.1:80/$(UNKNOWN)/$(IP)"


@pytest.mark.parametrize("ref, sources, message", [
    ({"secretKeyRef": {"name": "creds", "key": "token"}}, envlib.Sources(secrets={"creds": None}),
     'secret "creds" not found'),
    ({"secretKeyRef": {"name": "creds", "key": "token"}}, envlib.Sources(secrets={"creds": {}}),
     "couldn't find key token in Secret team/creds"),
    ({"configMapKeyRef": {"name": "cm", "key": "k"}}, envlib.Sources(configmaps={"cm": None}),
     'configmap "cm" not found'),
])
def test_a_missing_required_key_is_a_config_error(ref, sources, message):
    with pytest.raises(envlib.ContainerConfigError, match=message):
        envlib.container_env(POD, {"env": [{"name": "X", "valueFrom": ref}]}, sources, {})


def test_referenced_sources_lists_secrets_and_configmaps_from_env_and_volumes():
    pod = {"spec": {"containers": [{"env": [{"name": "a", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}}],
                                    "envFrom": [{"configMapRef": {"name": "c1"}}]}],
                    "volumes": [{"name": "v", "secret": {"secretName": "s2"}},
                                {"name": "w", "configMap": {"name": "c2"}}]}}
    assert envlib.referenced_sources(pod) == ({"s1", "s2"}, {"c1", "c2"})


def test_secret_data_is_base64_decoded():
    secret = {"data": {"k": base64.b64encode(b"value").decode()}}
    assert envlib.decode_secret(secret) == {"k": "value"}


def test_volumes_are_written_under_the_pod_folder(tmp_path):
    pod = {"spec": {"containers": [{"volumeMounts": [{"name": "creds", "mountPath": "/etc/creds"}]}],
                    "volumes": [{"name": "creds",
                                 "secret": {"secretName": "s", "items": [{"key": "a", "path": "sub/a.txt"}]}},
                                {"name": "scratch", "emptyDir": {}}]}}
    mounted = volumes.materialize(pod, envlib.Sources(secrets={"s": {"a": "A", "b": "B"}}), tmp_path)
    assert [(m.name, m.mount_paths) for m in mounted] == [("creds", ("/etc/creds",)), ("scratch", ())]
    assert (tmp_path / "creds" / "sub" / "a.txt").read_text() == "A"
    assert not (tmp_path / "creds" / "b").exists()


def test_a_volume_item_cannot_escape_its_folder(tmp_path):
    pod = {"spec": {"volumes": [{"name": "v", "configMap": {"name": "c", "items": [{"key": "a", "path": "../../x"}]}}]}}
    with pytest.raises(envlib.ContainerConfigError, match="escapes"):
        volumes.materialize(pod, envlib.Sources(configmaps={"c": {"a": "A"}}), tmp_path)


def _container(state: str, exit_code: int | None = None, last: bool = False) -> podstatus.ContainerState:
    return podstatus.ContainerState("c", "img", state=state, exit_code=exit_code,
                                    last_terminated={"exitCode": 1} if last else None)


@pytest.mark.parametrize("policy, containers, phase", [
    ("Never", [_container("waiting")], "Pending"),
    ("Never", [_container("running")], "Running"),
    ("Never", [_container("terminated", 0)], "Succeeded"),
    ("Never", [_container("terminated", 1)], "Failed"),
    ("OnFailure", [_container("terminated", 0)], "Succeeded"),
    ("OnFailure", [_container("waiting", last=True)], "Running"),  # crash-looping
    ("Always", [_container("terminated", 0)], "Running"),
    ("Never", [_container("terminated", 0), _container("running")], "Running"),
])
def test_pod_phase_is_the_kubelets(policy, containers, phase):
    assert podstatus.pod_phase(policy, containers) == phase


def test_running_status_is_ready_with_pod_ip_and_keeps_transition_times():
    running = podstatus.ContainerState("c", "receiptsync-worker:0.1.0", state="running", started_at="T1", pid=42)
    first = podstatus.pod_status("Running", [running], "T0", "T1")
    assert first["podIP"] == "127.0.0.1" and first["startTime"] == "T0"
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["lastTransitionTime"] == "T1"
    assert first["containerStatuses"][0]["state"] == {"running": {"startedAt": "T1"}}
    again = podstatus.pod_status("Running", [running], "T0", "T2", first["conditions"])
    assert next(c for c in again["conditions"] if c["type"] == "Ready")["lastTransitionTime"] == "T1"


def test_foreign_images_fail_to_pull_then_back_off_like_the_kubelets():
    reasons = [podstatus.pull_failure("nginx:1.27", attempt)[0] for attempt in range(1, 5)]
    assert reasons == ["ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"]
    assert 'Back-off pulling image "nginx:1.27"' == podstatus.pull_failure("nginx:1.27", 2)[1]
    assert [podstatus.pull_delay(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_the_kubelet_leaves_pod_scheduled_to_the_scheduler():
    running = podstatus.ContainerState("c", "receiptsync-worker:0.1.0", state="running", started_at="T1", pid=42)
    status = podstatus.pod_status("Running", [running], "T0", "T1")
    assert "PodScheduled" not in {c["type"] for c in status["conditions"]}
    assert "qosClass" not in status  # set by the API server at creation, never by the kubelet


def test_restart_policy_and_backoff():
    assert podstatus.should_restart("Always", 0) and podstatus.should_restart("OnFailure", 2)
    assert not podstatus.should_restart("OnFailure", 0) and not podstatus.should_restart("Never", 1)
    assert [podstatus.restart_delay(n, ran_for=0) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert podstatus.restart_delay(5, ran_for=120) == 1


def test_exit_codes_of_signals_look_like_a_container_runtimes():
    assert podstatus.exit_code_of(-signal.SIGKILL) == 137
    assert podstatus.exit_code_of(-signal.SIGTERM) == 143
    assert podstatus.exit_code_of(3) == 3


async def test_a_process_group_is_stopped_with_sigterm_then_sigkill(tmp_path):
    # The shell ignores SIGTERM and has a child: both must be gone after the grace period.
    script = "trap '' TERM; sleep 300 & echo started; wait"
    env = {"PATH": "/usr/bin:/bin"}
    process = await ContainerProcess.start(["sh", "-c", script], env, tmp_path, tmp_path / "c.log")
    for _ in range(100):
        if "started" in (tmp_path / "c.log").read_text():
            break
        await asyncio.sleep(0.05)
    began = time.monotonic()
    returncode = await process.stop(grace_seconds=0.5)
    assert podstatus.exit_code_of(returncode) == 137
    assert time.monotonic() - began < 5
    for _ in range(100):  # killed members are zombies until init reaps them
        if not procs.group_members(process.pid):
            break
        await asyncio.sleep(0.05)
    assert procs.group_members(process.pid) == []


async def test_memory_limits_of_all_containers_share_one_pass_over_proc(tmp_path, monkeypatch):
    # A group's RSS is every member's (a shell and its child here); the groups watched together are
    # sampled in one pass, reused within max_age, and a group over its limit is killed.
    env = {"PATH": "/usr/bin:/bin"}
    hog = "import time; b = bytearray(60 * 2**20); print('ready', flush=True); time.sleep(30)"
    quiet = await ContainerProcess.start(["sh", "-c", "sleep 30 & wait"], env, tmp_path, tmp_path / "q.log")
    heavy = await ContainerProcess.start([sys.executable, "-c", hog], env, tmp_path, tmp_path / "h.log")
    for _ in range(200):
        if "ready" in (tmp_path / "h.log").read_text():
            break
        await asyncio.sleep(0.05)
    passes = []
    real_pass = process_module.groups_rss_bytes
    monkeypatch.setattr(process_module, "groups_rss_bytes", lambda pgids: passes.append(set(pgids)) or real_pass(pgids))
    memory = GroupMemory()
    memory.watch(quiet.pid)
    memory.watch(heavy.pid)
    assert memory.rss(heavy.pid, max_age=60) > 60 * 2**20 > memory.rss(quiet.pid, max_age=60) > 0
    assert passes == [{quiet.pid, heavy.pid}]  # one pass for both
    memory.unwatch(quiet.pid)
    assert memory.rss(heavy.pid, max_age=0) > 60 * 2**20 and passes[-1] == {heavy.pid}
    await quiet.stop(grace_seconds=0.1)
    monkeypatch.undo()
    assert await heavy.enforce_memory_limit(30 * 2**20, interval=0.05)
    assert podstatus.exit_code_of(await heavy.wait()) == 137


async def test_an_unknown_executable_is_a_start_error(tmp_path):
    with pytest.raises(StartError, match='executable file not found in \\$PATH'):
        await ContainerProcess.start(["no-such-binary-xyz"], {"PATH": "/usr/bin"}, tmp_path, tmp_path / "c.log")


def test_init_containers_gate_the_pod():
    init = podstatus.ContainerState("init", "img", state="running")
    main = podstatus.ContainerState("main", "img")
    assert podstatus.pod_phase("Always", [main], [init]) == "Pending"
    status = podstatus.pod_status("Pending", [main], "T0", "T1", None, [init])
    initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False" and initialized["message"] == "containers with incomplete status: [init]"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert "running" in status["initContainerStatuses"][0]["state"]
    failed = podstatus.ContainerState("init", "img", state="terminated", exit_code=1)
    assert podstatus.pod_phase("Never", [main], [failed]) == "Failed"
    assert podstatus.pod_phase("OnFailure", [main], [failed]) == "Pending"
    done = podstatus.ContainerState("init", "img", state="terminated", exit_code=0)
    running = podstatus.ContainerState("main", "img", state="running")
    assert podstatus.pod_phase("Always", [running], [done]) == "Running"


def test_volumes_mount_at_their_paths_unless_they_would_hide_the_code(tmp_path):
    from pathlib import Path

    from receiptsync_sandbox.nodeagent import mounts

    keep = [Path("/tmp/checkout/.venv"), Path("/tmp/checkout")]
    container = {"volumeMounts": [
        {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "unknown", "mountPath": "/data"},
    ]}
    binds, env = mounts.container_mounts(container, {"token": tmp_path / "t", "tmp": tmp_path / "tmp"}, keep)
    assert binds == [mounts.Mount(tmp_path / "t", "/var/run/secrets/kubernetes.io/serviceaccount", True)]
    assert env == {"TMPDIR": str(tmp_path / "tmp")}  # /tmp holds the checkout here: TMPDIR instead
    assert mounts.hides("/", keep) and mounts.hides("relative", keep) and not mounts.hides("/etc/app", keep)
    argv = mounts.wrap(["/usr/bin/python3", "-V"], binds)
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert argv[-3:] == ["--", "/usr/bin/python3", "-V"]
    assert mounts.wrap(["x"], []) == ["x"]


@pytest.mark.parametrize("text, expected", [("100Mi", 100 * 2**20), ("1Gi", 2**30), ("500M", 500 * 10**6),
                                            ("1e9", 10**9), (None, None), ("64", 64)])
def test_memory_quantities(text, expected):
    from receiptsync_sandbox.nodeagent.mounts import parse_quantity

    assert parse_quantity(text) == expected


def test_projected_service_account_volume(tmp_path):
    projected = {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}
    pod = {"metadata": {"namespace": "ns1", "name": "p"},
           "spec": {"volumes": [{"name": "kube-api-access", "projected": projected}]}}
    assert envlib.referenced_sources(pod) == (set(), {"kube-root-ca.crt"})
    sources = envlib.Sources(configmaps={"kube-root-ca.crt": {"ca.crt": "PEM"}}, service_account_token="jwt")
    [volume] = volumes.materialize(pod, sources, tmp_path)
    written = {p.name: p.read_text() for p in volume.path.iterdir()}
    assert written == {"token": "jwt", "ca.crt": "PEM", "namespace": "ns1"}
    with pytest.raises(envlib.ContainerConfigError):
        volumes.materialize(pod, envlib.Sources(configmaps={"kube-root-ca.crt": {"ca.crt": "PEM"}}), tmp_path / "x")


def test_a_403_while_preparing_is_retried_within_milliseconds_then_at_the_normal_pace():
    from receiptsync_sandbox.nodeagent.runner import FORBIDDEN_QUICK_RETRIES, forbidden_pause

    pauses = [forbidden_pause(n, 2.0) for n in range(FORBIDDEN_QUICK_RETRIES)]
    assert pauses[0] <= 0.05 and pauses == sorted(pauses) and sum(pauses) < 2.0
    assert forbidden_pause(20, 2.0) == 2.0
