"""R8 security, against the running system:

* secrets never leak: after a successful sync, a revoked-token failure and a malformed-credentials
  failure, no token string (refresh tokens, client secret, the emulator's `ya29.` access tokens, the
  credentials JSON) appears in any file under <state>/logs (every pod's and component's log), in the
  operator's own log, in any ReceiptSync status, in any Event, or anywhere in Redis (every key and
  value of every database);
* tenant isolation: each worker Job/pod references only its own resource's Secret, the running worker
  process's environment holds only its own tenant's token (read from /proc) and no API credentials;
* Pod Security "restricted" for every chart-rendered pod and for the worker Jobs the operator creates;
* RBAC: every (verb, group, resource) the operator really called (API audit of its service-account
  user) is granted by the chart's Role/ClusterRole rules, and every grant is either used or listed
  below with the reason it is needed.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import redis

from faultkit import CLIENT_SECRET, FAULT_MAILBOX, LOAD_MAILBOXES, add, wait_until
from receiptsync_common import contract as c

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "packaging"))
from chart_render import template  # noqa: E402
from pss_policy import pod_spec_of, restricted_violations  # noqa: E402

pytestmark = [pytest.mark.slow]

TENANT_A, TENANT_B = LOAD_MAILBOXES[0], LOAD_MAILBOXES[1]

# Grants the operator holds without a call showing up in a short run, and why.
GRANTS_NOT_CALLED = {
    # kube-apiserver's OwnerReferencesPermissionEnforcement: a Job with blockOwnerDeletion on its
    # ReceiptSync owner needs `update` on receiptsyncs/finalizers; it is checked, never called.
    ("update", c.GROUP, "receiptsyncs/finalizers"),
    # `patch` of a ReceiptSync releases the finalizer an older operator added, when it is deleted (the
    # operator adds none). kopf never PUTs the main resource; `update` is kept for kopf versions that do.
    ("patch", c.GROUP, "receiptsyncs"),
    ("update", c.GROUP, "receiptsyncs"),
    ("update", c.GROUP, "receiptsyncs/status"),
    ("get", c.GROUP, "receiptsyncs/status"),
    # Events are created once per transition; `patch` is for series aggregation.
    ("patch", "", "events"),
    # Discovery of CRDs by kopf at startup only when it scans (list/watch).
    ("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("list", "apiextensions.k8s.io", "customresourcedefinitions"),
    # `get` of one ReceiptSync: only when a heartbeat names a resource the watch has not delivered yet;
    # `get` of one Job: only when the cache misses it before a create.
    ("get", c.GROUP, "receiptsyncs"),
    ("get", "batch", "jobs"),
    # `list` of Events: only for a worker Job that never got a pod (FailedCreate is told only there).
    ("list", "", "events"),
    # `delete` of a Job: only a running worker's (cancel, timeout, Replace, deletion of its ReceiptSync);
    # a finished Job goes with its ReceiptSync by garbage collection.
    ("delete", "batch", "jobs"),
}


def _mounted_in(pid: int, path: str) -> bool:
    """Whether ``path`` is a mount point in the mount namespace of process ``pid``."""
    return any(line.split()[4] == path for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines())


def redis_dump(url: str) -> str:
    """Every key and value of every Redis database, as text."""
    base = url.rsplit("/", 1)[0]
    out = []
    for db in range(16):
        client = redis.Redis.from_url(f"{base}/{db}", decode_responses=False)
        for key in client.keys("*"):
            kind = client.type(key).decode()
            value = {"string": client.get, "hash": client.hgetall, "set": client.smembers,
                     "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
                     "list": lambda k: client.lrange(k, 0, -1), "stream": lambda k: client.xrange(k),
                     "none": lambda k: b""}[kind](key)
            out.append(f"db{db} {key!r} {value!r}")
        client.close()
    return "\n".join(out)


def all_log_text(world) -> dict[str, str]:
    texts = {}
    for path in (world.sandbox.state_dir / "logs").rglob("*"):
        if path.is_file() and not path.is_symlink():
            texts[str(path)] = path.read_text(errors="replace")
    for link in ("redis.log", "postgres.log"):
        target = world.sandbox.state_dir / "logs" / link
        if target.exists():
            texts[str(target)] = target.read_text(errors="replace")
    for op in world.operators:
        texts[str(op.log_path)] = op.log_path.read_text(errors="replace")
    return texts


@pytest.mark.timeout(150)
def test_secrets_never_in_logs_status_events_or_redis(world, report, mailboxes):
    world.start_operator()
    revoked = FAULT_MAILBOX
    creds_a, creds_b = world.credentials(TENANT_A), world.credentials(TENANT_B)
    broken = {**world.credentials(revoked), "client_id": None}  # not usable: client_id missing
    world.emulator_config(revoked=[revoked])
    world.apply(
        world.secret("gmail-a", TENANT_A), world.secret("gmail-b", TENANT_B), world.secret("gmail-r", revoked),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gmail-x"},
         "stringData": {c.DEFAULT_CREDENTIALS_KEY: json.dumps(broken)[:-1]}},  # truncated JSON, secrets inside
        world.rsync("ok-a", secret="gmail-a"), world.rsync("ok-b", secret="gmail-b"),
        world.rsync("revoked", secret="gmail-r"), world.rsync("broken", secret="gmail-x"))
    outcome = {name: world.wait_terminal(name, timeout=90)["phase"] for name in ("ok-a", "ok-b", "revoked", "broken")}
    assert outcome == {"ok-a": c.PHASE_FINISHED, "ok-b": c.PHASE_FINISHED, "revoked": c.PHASE_FAILED,
                       "broken": c.PHASE_FAILED}, outcome
    time.sleep(1)  # let the last status/Event writes land

    stats = world.emulator_stats()
    assert stats["token_grants"] > 0  # real access tokens were issued (and must not leak)
    needles = {CLIENT_SECRET, creds_a["refresh_token"], creds_b["refresh_token"], f"refresh-token-for:{revoked}",
               json.dumps(creds_a), json.dumps(broken)[:-1], "ya29.emu-"}
    haystacks = all_log_text(world)
    haystacks.pop(str(world.sandbox.state_dir / "logs" / "gmail.log"), None)  # Google's side of the wire
    haystacks["status+events"] = json.dumps([world.get(c.PLURAL), world.sandbox.get("events", namespace=None)])
    haystacks["events -A"] = world.sandbox.kubectl("get", "events", "-A", "-o", "json").stdout
    haystacks["redis"] = redis_dump(world.sandbox.env["REDIS_URL"])
    haystacks["sync_runs"] = json.dumps(world.rows("SELECT coalesce(error, ''), coalesce(reason, '') FROM sync_runs"))
    found = {(where, needle[:24]) for where, text in haystacks.items() for needle in needles if needle in text}
    add(report, "R8", faults_injected=2, runs=4, places_searched=len(haystacks), secrets_found=len(found))
    assert not found, f"secrets found: {sorted(found)}"
    # The haystacks are not empty by accident: the worker logs and the status are there.
    assert any(c.LOG_JOB_DONE in text for text in haystacks.values())
    assert "GmailAuthError" in haystacks["status+events"]


@pytest.mark.timeout(120)
def test_each_worker_holds_only_its_own_tenants_credentials(world, report):
    world.start_operator()
    world.emulator_config(latency_ms=400)  # keep both workers running while we look at them
    world.apply(world.secret("gmail-a", TENANT_A), world.secret("gmail-b", TENANT_B),
                world.rsync("tenant-a", secret="gmail-a"), world.rsync("tenant-b", secret="gmail-b"))
    own = {"tenant-a": ("gmail-a", TENANT_A, TENANT_B), "tenant-b": ("gmail-b", TENANT_B, TENANT_A)}
    checked = 0
    for name, (secret, mine, theirs) in own.items():
        status = world.wait_status(name, lambda s: s.get("workerJob") and s.get("phase") == c.PHASE_STARTED, 40)
        (job,) = [j for j in world.jobs() if j["metadata"]["name"] == status["workerJob"]]
        spec = job["spec"]["template"]["spec"]
        referenced = set()
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for item in container.get("env") or []:
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                assert "refresh-token-for:" not in json.dumps(item.get("value", "")), item
            for item in container.get("envFrom") or []:
                referenced.add((item.get("secretRef") or {}).get("name"))
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
            for source in (volume.get("projected") or {}).get("sources") or []:
                if "secret" in source:
                    referenced.add(source["secret"]["name"])
        referenced.discard(None)
        assert referenced == {secret}, (name, referenced)
        assert spec.get("automountServiceAccountToken") is False
        # The running process: only its own token in its environment, and no way to the API.
        pid = wait_until(lambda: world.worker_pid(status["workerJob"]), timeout=20, message=f"{name} pid")
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
        env = dict(item.split("=", 1) for item in environ if "=" in item)
        assert f"refresh-token-for:{mine}" in env[c.ENV_GMAIL_CREDENTIALS]
        assert not any(f"refresh-token-for:{theirs}" in value for value in env.values()), name
        # The kubelet tells every container where the API server is; with no token that is no way in.
        assert "KUBECONFIG" not in env, sorted(env)
        token = Path(f"/proc/{pid}/root/var/run/secrets/kubernetes.io/serviceaccount/token")
        assert not _mounted_in(pid, "/var/run/secrets/kubernetes.io/serviceaccount"), name
        assert not token.exists() or token.stat().st_size == 0, name
        # Pod Security restricted for the Job the operator really created.
        assert restricted_violations(spec) == [], restricted_violations(spec)
        checked += 1
    add(report, "R8", workers_isolation_checked=checked)


@pytest.mark.timeout(60)
def test_chart_rendered_pods_meet_pod_security_restricted(report):
    combos = {"defaults": [],
              "bundled": ["--set", "redis.bundled.enabled=true", "--set", "database.bundled.enabled=true"],
              "namespace-scope": ["--set", "rbac.scope=namespace"]}
    pods = 0
    for name, args in combos.items():
        for obj in template(args):
            spec = pod_spec_of(obj)
            if spec is None:
                continue
            problems = restricted_violations(spec)
            assert problems == [], (name, obj["kind"], obj["metadata"]["name"], problems)
            pods += 1
    assert pods >= 3
    add(report, "R8", chart_pod_specs_checked=pods)


def _granted(objects: list[dict]) -> set[tuple[str, str, str]]:
    grants = set()
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in obj.get("rules") or []:
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        grants.add((verb, group, resource))
    return grants


def _audit(world, user: str) -> list[dict]:
    """kube-apiserver's audit records of ``user``'s requests (one per request, ResponseComplete)."""
    return world.sandbox.audit(user=user)


@pytest.fixture(scope="module")
def operator_api_use(fault_sandbox, mailboxes, tmp_path_factory):
    """A namespaced operator (RECEIPTSYNC_NAMESPACE = the chart's watchNamespace) through a lifecycle
    that touches every path: runs, an invalid spec, run-now, a deletion, a clean stop. Returns its
    namespace and the (verb, group, resource[/subresource]) set the API audit recorded for its user."""
    from faultkit import World

    world = World(fault_sandbox, tmp_path_factory.mktemp("r8-rbac"), mailboxes)
    try:
        op = world.start_operator()
        world.apply(world.secret("gmail-a", TENANT_A), world.rsync("used-1", secret="gmail-a"),
                    world.rsync("used-2", secret="gmail-a", gmail={"secretRef": {"name": "missing"}}))
        world.wait_phase("used-1", c.PHASE_FINISHED, timeout=60)
        world.wait_phase("used-2", c.PHASE_FAILED, timeout=30)
        world.kubectl("annotate", c.PLURAL, "used-1", f"{c.RUN_NOW_ANNOTATION}=again")
        world.wait_status("used-1", lambda s: s.get("runId") == 2 and s.get("phase") == c.PHASE_FINISHED, 60)
        world.kubectl("delete", c.PLURAL, "used-1", "--timeout=30s")
        op.stop()
        entries = _audit(world, world.operator_user)
        assert entries, "no API calls recorded for the operator's user"
        calls = [(e["verb"], e["objectRef"]) for e in entries if e.get("objectRef")]
        used = {(verb, ref.get("apiGroup", ""),
                 ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")) for verb, ref in calls}
        yield world.ns, used, len(calls)
    finally:
        world.close()


# The operators here run with shared worker credentials (test_r8_tenancy_rbac.py audits per-attempt ones).
SCOPES = {scope: ["--set", f"rbac.scope={scope}", "--set", "tenancy.workerCredentials=shared"]
          for scope in ("cluster", "namespace")}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_operator_calls_are_all_granted_by_the_chart(operator_api_use, report, scope):
    namespace, used, calls = operator_api_use
    granted = _granted(template([*SCOPES[scope], "--set", f"watchNamespace={namespace}"]))
    not_granted = sorted(used - granted)
    add(report, "R8", rbac_calls=calls, rbac_missing=len(not_granted))
    assert not not_granted, f"the operator calls what the chart's RBAC ({scope} scope) does not grant: {not_granted}"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_chart_grants_nothing_the_operator_does_not_use(operator_api_use, report, scope):
    namespace, used, _ = operator_api_use
    granted = _granted(template([*SCOPES[scope], "--set", f"watchNamespace={namespace}"]))
    unused = sorted(granted - used - GRANTS_NOT_CALLED)
    add(report, "R8", rbac_grants_checked=len(granted), rbac_unused=len(unused))
    print(f"operator API use ({len(used)}):", sorted(used))
    assert not unused, f"the chart ({scope} scope) grants what the operator never uses: {unused}"
