"""Issue 13's acceptance, end to end on the sandbox's real control plane (kube-apiserver with RBAC,
Pod Security and audit, the scheduler, the Job controller, the node agent as the kubelet): the
operator runs as a process under the chart's ServiceAccount and RBAC, with the worker settings the
chart renders, and everything it claims is checked on the objects and the audit log the API server
really has.

* chart worker values in the Job the operator really creates; Unschedulable named within 60 s;
* an image that cannot be pulled: named within 60 s, and its slot free for others soon after;
* a Secret without the named key: Failed within 60 s, the key named (the pod's CreateContainerConfigError);
* PostgreSQL away for 60 s: retries wait ("retrying at ...") and the run finishes (the real worker);
* poisoned queue entries and per-resource 403s: every other resource dispatches and finishes;
* the connection to the API server cut during a status write: the transition still lands;
* a leader paused (SIGSTOP) past its lease writes nothing once resumed (audit log).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import selectors
import signal
import socket
import struct
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import redis
import yaml

from receiptsync_common import contract as c
from receiptsync_sandbox import services
from receiptsync_sandbox.testing import receiptsync_manifest, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "receipt-sync"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


# --- helpers ----------------------------------------------------------------------------------------------
def chart_worker_env(env, *sets: str) -> dict[str, str]:
    """The worker settings `helm template` renders into the operator Deployment's environment for
    these ``--set`` values: the worker image, the worker pod template (JSON), the Job TTL."""
    args = ["template", "rs", str(CHART)]
    for value in sets:
        args += ["--set", value]
    docs = [d for d in yaml.safe_load_all(env.sandbox.helm(*args).stdout) if d]
    (deployment,) = [d for d in docs if d.get("kind") == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    wanted = (c.OPERATOR_ENV_WORKER_IMAGE, c.OPERATOR_ENV_WORKER_TEMPLATE_JSON, c.OPERATOR_ENV_WORKER_JOB_TTL)
    return {e["name"]: e["value"] for e in container["env"] if e["name"] in wanted and "value" in e}


def job_of(env, name: str) -> dict | None:
    return next((j for j in env.jobs() if j["metadata"]["labels"].get(c.LABEL_SYNC_NAME) == name), None)


def pods_of(env, name: str) -> list[dict]:
    return [p for p in (env.get("pods") or {}).get("items") or []
            if (p["metadata"].get("labels") or {}).get(c.LABEL_SYNC_NAME) == name]


def message_has(*words: str):
    return lambda s: any(word in (s.get("message") or "") for word in words)


def writes_by(env, credential: str, after: dt.datetime) -> list[str]:
    """Writes the API server received with ``credential`` (a token's id) after ``after``."""
    found = []
    for e in env.sandbox.audit(user=env.operator_user):
        extra = (e.get("user") or {}).get("extra") or {}
        if credential not in (extra.get("authentication.kubernetes.io/credential-id") or []):
            continue
        received = dt.datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if received > after and e["verb"] in WRITE_VERBS:
            found.append(f"{e['verb']} {e['requestURI']} at {e['requestReceivedTimestamp']}")
    return found


def token_kubeconfig(env, path: Path) -> tuple[Path, str]:
    """A kubeconfig with a fresh token of the operator's ServiceAccount (as a second replica's pod
    gets its own), and that token's credential id as the audit log shows it."""
    import base64

    config = env.sandbox.service_account_kubeconfig(env.operator_user, path)
    token = yaml.safe_load(config.read_text())["users"][0]["user"]["token"]
    claims = token.split(".")[1]
    jti = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["jti"]
    return config, f"JTI={jti}"


class CuttableProxy:
    """A TCP pass-through to the API server (TLS goes through untouched: the serving certificate
    names 127.0.0.1) that the test can cut: every open connection is reset and new ones are reset
    as they come, until :meth:`restore`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.cut = False
        self.resets = 0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _reset(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        self._reset(sock)
        if peer is not None:
            self._peers.pop(peer, None)
            self._reset(peer)

    def _loop(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(timeout=0.1):
                with self._lock:
                    sock = key.fileobj
                    if sock is self.listener:
                        try:
                            client, _ = self.listener.accept()
                        except OSError:
                            continue
                        if self.cut:
                            self.resets += 1
                            self._reset(client)
                            continue
                        upstream = socket.create_connection(self.target)
                        self._peers[client], self._peers[upstream] = upstream, client
                        for s in (client, upstream):
                            s.setblocking(False)
                            self._selector.register(s, selectors.EVENT_READ)
                        continue
                    if sock not in self._peers:
                        continue
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(sock)
                        continue
                    try:
                        self._peers[sock].setblocking(True)
                        self._peers[sock].sendall(data)
                        self._peers[sock].setblocking(False)
                    except OSError:
                        self._drop(sock)

    def sever(self) -> None:
        with self._lock:
            self.cut = True
            for sock in list(self._peers):
                if sock in self._peers:
                    self.resets += 1
                    self._drop(sock)

    def restore(self) -> None:
        with self._lock:
            self.cut = False

    def close(self) -> None:
        self.sever()
        self._stop = True
        self._thread.join(5)
        self.listener.close()


def kubeconfig_through(source: Path, proxy: CuttableProxy, path: Path) -> Path:
    config = yaml.safe_load(source.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def api_address(kubeconfig: Path) -> tuple[str, int]:
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    parsed = urllib.parse.urlsplit(server)
    return parsed.hostname, parsed.port or 443


# --- chart values and Unschedulable -----------------------------------------------------------------------
def test_chart_worker_values_reach_the_job_and_unschedulable_is_named(env):
    """The chart's worker.nodeSelector, worker.resources and worker.imagePullSecrets, rendered by
    helm as the Deployment passes them, are in the Job the operator really creates (and in the pod
    the Job controller makes of it); while no node matches, status names Unschedulable within 60 s;
    once a node matches, the same attempt runs and finishes."""
    label = f"receiptsync-test/pool-{env.ns}"
    chart = chart_worker_env(env, f"worker.nodeSelector.{label}=yes", "worker.resources.limits.memory=300Mi",
                             "worker.imagePullSecrets[0].name=regcred")
    assert label in chart[c.OPERATOR_ENV_WORKER_TEMPLATE_JSON]
    env.start_operator(**chart)
    env.apply(env.secret(), {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred"},
                             "type": "kubernetes.io/dockerconfigjson",
                             "stringData": {".dockerconfigjson": json.dumps({"auths": {}})}})
    began = time.monotonic()
    env.apply(env.rsync("placed", query="standin:duration=0.5"))
    pending = env.wait_status("placed", message_has("Unschedulable"), timeout=60,
                              message="status naming Unschedulable")
    assert time.monotonic() - began < 60
    assert pending["phase"] == c.PHASE_QUEUED and pending["reason"] == c.REASON_WORKER_POD_PENDING, pending

    job = job_of(env, "placed")
    assert job is not None and pending["workerJob"] == job["metadata"]["name"]
    for pod_spec in [job["spec"]["template"]["spec"]] + [p["spec"] for p in pods_of(env, "placed")]:
        assert pod_spec["nodeSelector"] == {label: "yes"}
        assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
        (worker,) = pod_spec["containers"]
        assert worker["resources"]["limits"]["memory"] == "300Mi"
        assert worker["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
        # The operator still owns what it must: its command, its env, no service account token.
        assert worker["command"] == json.loads(env.operators[0].env[c.OPERATOR_ENV_WORKER_COMMAND])
        assert c.ENV_JOB_ID in {e["name"] for e in worker["env"]}
        assert pod_spec["automountServiceAccountToken"] is False

    # A node that matches: the scheduler binds the waiting pod, the attempt runs and finishes.
    (node,) = env.sandbox.get("nodes")["items"]
    node_name = node["metadata"]["name"]
    env.sandbox.kubectl("label", "node", node_name, f"{label}=yes")
    try:
        done = env.wait_phase("placed", c.PHASE_FINISHED, timeout=60)
    finally:
        env.sandbox.kubectl("label", "node", node_name, f"{label}-")
    assert done["attempt"] == 1 and done["workerJob"] == job["metadata"]["name"]


# --- an image that cannot be pulled -------------------------------------------------------------------------
PULL_TIMEOUT = 20


def test_unpullable_worker_image_is_named_and_frees_its_slot(env):
    """worker.image.repository that no registry has: status names ErrImagePull/ImagePullBackOff
    within 60 s, and once the pull has failed for RECEIPTSYNC_IMAGE_PULL_TIMEOUT_SECONDS the attempt
    ends and its slot (maxWorkers=1) goes to the resource waiting behind it. After the admin fixes the
    chart (the operator restarts with the right image) both runs finish, by retries."""
    settings = {c.OPERATOR_ENV_MAX_WORKERS: "1", c.OPERATOR_ENV_IMAGE_PULL_TIMEOUT: str(PULL_TIMEOUT),
                c.OPERATOR_ENV_RETRY_BASE: "2"}
    bad = chart_worker_env(env, "worker.image.repository=example.invalid/nope", "worker.image.tag=v1")
    assert bad[c.OPERATOR_ENV_WORKER_IMAGE] == "example.invalid/nope:v1"
    op = env.start_operator(**bad, **settings)
    env.apply(env.secret())
    began = time.monotonic()
    env.apply(env.rsync("unpullable", query="standin:duration=0.5"))
    named = env.wait_status("unpullable", message_has("ErrImagePull", "ImagePullBackOff"), timeout=60,
                            message="status naming the failed pull")
    assert time.monotonic() - began < 60
    assert named["phase"] == c.PHASE_QUEUED and named["reason"] == c.REASON_WORKER_POD_PENDING, named
    first_job = job_of(env, "unpullable")["metadata"]["name"]

    env.apply(env.rsync("behind", query="standin:duration=0.5"))
    env.wait_phase("behind", c.PHASE_QUEUED, reason=c.REASON_WAITING_FOR_WORKER)
    # The slot is freed after the pull timeout (not after the attempt's 1 h timeout + grace).
    wait_until(lambda: job_of(env, "behind"), timeout=PULL_TIMEOUT + 25, interval=0.5,
               message="the waiting resource's worker Job")
    freed_after = time.monotonic() - began
    assert freed_after < PULL_TIMEOUT + 25 and freed_after < 120, freed_after
    retrying = env.status("unpullable")
    assert retrying["phase"] == c.PHASE_QUEUED and retrying["attempt"] == 2, retrying
    assert c.REASON_IMAGE_PULL_FAILED in retrying["message"] and "retrying at" in retrying["message"], retrying
    # The failed attempt's Job was deleted (foreground: its pod went first); one slot, one active Job.
    wait_until(lambda: all(j["metadata"]["name"] != first_job for j in env.jobs()), timeout=15,
               message="the failed attempt's Job deleted")

    # The admin fixes worker.image: the operator restarts with it; retries bring both runs home.
    op.stop()
    env.start_operator(**chart_worker_env(env), **settings)
    for name in ("unpullable", "behind"):
        done = env.wait_phase(name, c.PHASE_FINISHED, timeout=PULL_TIMEOUT + 40)
        assert done["attempt"] == 2, done


# --- a Secret without the named key -------------------------------------------------------------------------
def test_secret_without_the_key_fails_within_a_minute_naming_it(env):
    """The operator reads no Secret (the chart's RBAC gives it none): the worker's pod reports
    CreateContainerConfigError, and the run fails within 60 s, not retried (no retry adds the key),
    with the key named in status and in an Event."""
    env.start_operator()
    env.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gmail"},
               "stringData": {"other.json": "{}"}})
    watch = env.watch_phases("keyless")
    try:
        began = time.monotonic()
        env.apply(env.rsync("keyless"))
        failed = env.wait_phase("keyless", c.PHASE_FAILED, timeout=60)
        assert time.monotonic() - began < 60
        time.sleep(2)  # nothing may overwrite the verdict afterwards
    finally:
        watch.stop()
    assert env.status("keyless")["phase"] == c.PHASE_FAILED, (env.status("keyless"), watch.seen)
    assert failed["reason"] == c.REASON_WORKER_CONFIG_ERROR, failed
    assert "CreateContainerConfigError" in failed["message"] and "credentials.json" in failed["message"], failed
    assert failed["attempt"] == 1 and "not retried" in failed["message"], failed
    assert {x["type"]: x["status"] for x in failed["conditions"]} == {"Complete": "False", "Failed": "True"}
    assert any(e["reason"] == c.REASON_WORKER_CONFIG_ERROR and "credentials.json" in e["message"]
               for e in env.events("keyless"))
    assert len(env.jobs()) <= 1 and all(v == [] for v in env.queue().values())


# --- PostgreSQL away for a minute, the real worker ------------------------------------------------------------
def _restart_postgres(server: services.PostgresServer) -> None:
    server.start()


def test_postgres_away_for_a_minute_retries_wait_and_the_run_finishes(env, tmp_path):
    """The real worker against a PostgreSQL of its own, stopped for 60 s once the run has started:
    attempts fail with DatabaseError, each retry waits its back-off (status says when it starts),
    and with backoffLimit 3 the run still finishes once PostgreSQL is back."""
    pg = services.start_postgres(tmp_path / "pg")
    try:
        env.start_operator(**{
            c.OPERATOR_ENV_WORKER_COMMAND: None,  # the worker image's own entrypoint: receiptsync-worker
            c.OPERATOR_ENV_WORKER_DATABASE_URL: pg.url,
            c.OPERATOR_ENV_RETRY_BASE: "7",
            c.OPERATOR_ENV_HEARTBEAT_TIMEOUT: "30",
            # Paced Gmail reads, so PostgreSQL goes away while the first attempt is still syncing.
            c.WORKER_ENV_QUOTA_RATE: "10", c.WORKER_ENV_QUOTA_BURST: "10",
        })
        env.apply(env.secret())
        body = receiptsync_manifest("pg-outage", {"businessId": "pg-outage", "mode": "full", "monthsBack": 24,
                                                  "backoffLimit": 3, "gmail": {"secretRef": {"name": "gmail"}}})
        watch = env.watch_phases("pg-outage")
        try:
            env.apply(body)
            env.wait_phase("pg-outage", c.PHASE_STARTED, timeout=60)
            pg.stop()
            down_at = time.monotonic()
            env.wait_status("pg-outage", message_has("retrying at"), timeout=40, message="a retry that waits")
            time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))
            _restart_postgres(pg)
            done = env.wait_status("pg-outage", lambda s: s.get("phase") in c.TERMINAL_PHASES, timeout=90,
                                   message="the run's end")
        finally:
            watch.stop()
        assert done["phase"] == c.PHASE_FINISHED, done
        assert 2 <= done["attempt"] <= 4, done
        assert done["progress"]["savedReceipts"] > 0, done
        retries = [m for _, reason, m in watch.seen if "retrying at" in m]
        assert retries and all(c.REASON_DATABASE_ERROR in m for m in retries), watch.seen
        # Each retry started no earlier than the time its status announced.
        announced = {}
        for _, _, message in watch.seen:
            if "retrying at" in message:
                attempt = int(message.split("; attempt ", 1)[1].split(" ", 1)[0])
                announced[attempt] = message.rsplit("retrying at ", 1)[1].rstrip(".")
        jobs = {int(j["metadata"]["labels"][c.LABEL_ATTEMPT]): j["metadata"]["creationTimestamp"] for j in env.jobs()}
        for attempt, when in announced.items():
            assert attempt in jobs and jobs[attempt] >= when, (attempt, when, jobs)
    finally:
        pg.stop()
        services.remove_postgres_data(tmp_path / "pg")


# --- poisoned queue entries and per-resource 403s -----------------------------------------------------------------
def _refusing_policy(env, sync_name: str) -> list[dict]:
    """A cluster policy (ValidatingAdmissionPolicy, as a policy engine would) that refuses the worker
    Jobs of one ReceiptSync in this namespace with 403 Forbidden."""
    name = f"rs-e2e-refuse-{env.ns}"
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name},
         "spec": {"failurePolicy": "Fail",
                  "matchConstraints": {"resourceRules": [{"apiGroups": ["batch"], "apiVersions": ["v1"],
                                                          "operations": ["CREATE"], "resources": ["jobs"]}]},
                  "validations": [{
                      "expression": f"!has(object.metadata.labels) || object.metadata.labels[?'{c.LABEL_SYNC_NAME}']"
                                    f".orValue('') != '{sync_name}'",
                      "reason": "Forbidden",
                      "message": "workers of this ReceiptSync are suspended by cluster policy"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": name},
         "spec": {"policyName": name, "validationActions": ["Deny"],
                  "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": env.ns}}}}},
    ]


def test_poisoned_entries_and_a_forbidden_resource_do_not_stop_the_others(env):
    """Garbage in the Redis queue (a non-id and bytes that are not UTF-8 at the head of the line, a
    real entry whose payload was overwritten) and a resource whose worker Jobs a cluster policy
    refuses (403 Forbidden on every create): with one worker slot, every other resource still
    dispatches and finishes; the refused run fails with the server's message, the poisoned entries
    are set aside."""
    policy = _refusing_policy(env, "refused")
    env.sandbox.apply(policy)
    env.allow_forbidden = True  # the refusal is on purpose (checked below)
    try:
        probe = {"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": {"name": "probe", "labels": {c.LABEL_SYNC_NAME: "refused"}},
                 "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                "containers": [{"name": "x", "image": "x"}]}}}}
        wait_until(lambda: "suspended by cluster policy" in env.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False).stderr,
            timeout=20, message="the policy in force")

        env.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1", c.OPERATOR_ENV_DEAD_LETTER_AFTER: "3"})
        env.apply(env.secret())
        env.apply(env.rsync("blocker", query="standin:duration=3"))
        env.wait_phase("blocker", c.PHASE_STARTED)
        env.apply(env.rsync("victim", query="standin:duration=0.3"))
        victim = env.wait_phase("victim", c.PHASE_QUEUED)
        env.apply(env.rsync("refused", query="standin:duration=0.3"))
        others = [f"other-{i}" for i in range(3)]
        for name in others:
            env.apply(env.rsync(name, query="standin:duration=0.3"))
        for name in ("refused", *others):
            env.wait_phase(name, c.PHASE_QUEUED)
        # Garbage at the head of the line (scored in the past), and the victim's payload overwritten.
        env.redis.zadd(c.queue_key(c.PRIORITY_HIGH), {"garbage": 1})
        binary = redis.Redis.from_url(env.redis_url)  # no decoding: these bytes are not UTF-8
        binary.zadd(c.queue_key(c.PRIORITY_HIGH), {b"\xff\xfe\x00poison": 2})
        env.redis.set(c.job_key(victim["jobId"]), "{not json")

        began = time.monotonic()
        for name in ("blocker", *others):
            done = env.wait_phase(name, c.PHASE_FINISHED, timeout=40)
            assert done["attempt"] == 1, done
        assert time.monotonic() - began < 25  # no entry waited on the poisoned ones' dead-letter count
        # The victim is never stuck: set aside (its run fails, DeadLetter), or, where payloads are
        # signed, its rewritten payload is ignored and the attempt rebuilt from its spec.
        victim_end = env.wait_status("victim", lambda s: s.get("phase") in c.TERMINAL_PHASES, timeout=60)
        assert victim_end["phase"] == c.PHASE_FINISHED or victim_end["reason"] == c.REASON_DEAD_LETTER, victim_end
        refused_end = env.wait_phase("refused", c.PHASE_FAILED, timeout=20)
        assert refused_end["reason"] == c.REASON_WORKER_JOB_REJECTED, refused_end
        assert "suspended by cluster policy" in refused_end["message"], refused_end
        # Nothing poisoned is left in line; what could not be dispatched is set aside for a human.
        assert all(v == [] for v in env.queue().values()), env.queue()
        set_aside = binary.zrange(c.DEAD_LETTER_KEY, 0, -1)
        assert {b"garbage", b"\xff\xfe\x00poison"} <= set(set_aside), set_aside
        binary.close()
    finally:
        for obj in reversed(policy):
            env.sandbox.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found")
    refused = {f"{e['verb']} {e['objectRef'].get('resource')}" for e in env.sandbox.audit(user=env.operator_user)
               if e["responseStatus"]["code"] == 403}
    assert refused == {"create jobs"}, refused


# --- the API server connection cut during a status write -----------------------------------------------------------
def test_connection_cut_during_a_status_write_still_lands_the_transition(env):
    """The operator talks to the API server through a proxy the test cuts (open connections reset,
    new ones refused) just before the worker's final heartbeat, for longer than the client's own
    retries last: the Finished write fails, is kept, and lands once the connection is back."""
    proxy = CuttableProxy(api_address(Path(env.kubeconfig)))
    try:
        config = kubeconfig_through(Path(env.kubeconfig), proxy, env.tmp / "proxied.kubeconfig")
        # A lease long enough to outlive the outage: this test is about the write, not failover.
        op = env.start_operator(KUBECONFIG=str(config), **{c.OPERATOR_ENV_LEASE_DURATION: "60"})
        env.apply(env.secret())
        env.apply(env.rsync("cut", query="standin:duration=1,scanned=30,saved=3,gate=1"))
        started = env.wait_phase("cut", c.PHASE_STARTED)
        proxy.sever()
        env.redis.set(f"standin:go:{started['jobId']}", "1", ex=600)
        wait_until(lambda: env.redis.hget(c.heartbeat_key(started["jobId"]), c.HB_PHASE) == c.PHASE_FINISHED,
                   timeout=10, message="the worker's final heartbeat")
        wait_until(lambda: any("status patch failed" in str(line.get("message")) for line in op.lines()),
                   timeout=20, message="the status write failing on the cut connection")
        assert env.status("cut")["phase"] == c.PHASE_STARTED  # it did not land through the cut
        # As if the outage outlasted the heartbeat hash's TTL: from here only the status writer
        # remembers the transition (no heartbeat to apply again, no termination message to read).
        # The cut lasts a while longer, so that a check which read the hash just before fails too.
        env.redis.delete(c.heartbeat_key(started["jobId"]))
        time.sleep(5)
        proxy.restore()
        done = env.wait_phase("cut", c.PHASE_FINISHED, timeout=30)
        assert done["progress"] == {"messagesScanned": 30, "savedReceipts": 3}, done
        assert done["attempt"] == 1 and len(env.jobs()) == 1, done
        assert proxy.resets > 0 and op.alive()
    finally:
        proxy.close()


# --- a paused leader writes nothing once resumed ---------------------------------------------------------------------
def test_leader_paused_past_its_lease_writes_nothing_after_it_resumes(env):
    """Two replicas, each with its own token of the chart's ServiceAccount (as two pods would have):
    the leader is frozen with SIGSTOP mid-run for longer than the lease, the other takes over and
    finishes the work; after SIGCONT the old leader makes no write at all (kube-apiserver's audit
    log, told apart by the token's credential id) and exits to restart as a standby."""
    first_config, first_token = token_kubeconfig(env, env.tmp / "first.kubeconfig")
    second_config, second_token = token_kubeconfig(env, env.tmp / "second.kubeconfig")
    assert first_token != second_token
    leader = env.start_operator(KUBECONFIG=str(first_config))
    standby = env.start_operator(wait=False, KUBECONFIG=str(second_config))
    env.apply(env.secret())
    env.apply(env.rsync("long", query="standin:duration=12,scanned=120,saved=12"))
    env.wait_status("long", lambda s: s.get("phase") == c.PHASE_STARTED
                    and (s.get("progress") or {}).get("messagesScanned"))
    assert writes_by(env, first_token, dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))  # the audit tells it apart

    os.kill(leader.pid, signal.SIGSTOP)
    try:
        standby.wait_leading(timeout=20)
        env.apply(env.rsync("later", query="standin:duration=0.5"))
        time.sleep(2)  # the old leader's lease is long gone (4 s) and there is news it would write
    finally:
        resumed_at = dt.datetime.now(dt.timezone.utc)
        os.kill(leader.pid, signal.SIGCONT)
    assert leader.proc.wait(30) != 0  # it steps down and exits, to restart as a standby
    for name in ("long", "later"):
        done = env.wait_phase(name, c.PHASE_FINISHED, timeout=40)
        assert done["progress"]["messagesScanned"] > 0
    time.sleep(1)
    assert writes_by(env, first_token, resumed_at) == []
    assert writes_by(env, second_token, resumed_at)  # the new leader did the writing
    assert leader.logged("lost the lease; exiting so that this replica restarts as a standby") or \
        any("lease" in str(line.get("message")) for line in leader.errors())

