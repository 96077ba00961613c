"""Issue 3 item 4, the operator's own life: delete during a run, restarts mid-run without duplicates,
two replicas with one active, deleting while Redis is away, metrics and health."""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from receiptsync_common import contract as c
from receiptsync_sandbox import services
from receiptsync_sandbox.testing import process_running, wait_until

pytestmark = pytest.mark.slow


def test_delete_during_a_run_stops_the_worker_and_releases_the_finalizer(env):
    env.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1"})
    env.apply(env.secret())
    env.apply(env.rsync("running", query="standin:hang_attempts=9"))
    running = env.wait_phase("running", c.PHASE_STARTED)
    env.apply(env.rsync("waiting", query="standin:duration=0.2"))
    waiting = env.wait_phase("waiting", c.PHASE_QUEUED)
    assert env.queue()[c.PRIORITY_DEFAULT] == [waiting["jobId"]]
    obj = env.get(c.PLURAL, "running")
    assert c.FINALIZER in obj["metadata"]["finalizers"]
    pid = int(env.redis.get(f"standin:pid:{running['jobId']}"))

    # Delete the queued one: its queue entry and payload go.
    env.kubectl("delete", "rsync", "waiting", "--timeout=15s")
    assert env.queue()[c.PRIORITY_DEFAULT] == []
    assert env.redis.get(c.job_key(waiting["jobId"])) is None

    # Delete the running one: `kubectl delete` returns (finalizer released), its Job is gone.
    began = time.monotonic()
    env.kubectl("delete", "rsync", "running", "--timeout=15s")
    assert time.monotonic() - began < 10
    assert env.get(c.PLURAL, "running") is None
    wait_until(lambda: not env.jobs(), timeout=10, message="worker Job deleted")
    wait_until(lambda: not process_running(pid), timeout=15, message="worker process stopped")


def test_operator_restart_mid_run_neither_enqueues_nor_starts_twice(env):
    first = env.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1"})
    env.apply(env.secret())
    env.apply(env.rsync("one", query="standin:duration=4"))
    one = env.wait_phase("one", c.PHASE_STARTED)
    env.apply(env.rsync("two", query="standin:duration=0.5"))
    two = env.wait_phase("two", c.PHASE_QUEUED)
    first.kill()  # a crash: no cleanup, the Lease is left to expire

    queue_before = env.queue()
    second = env.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1"})
    # Both runs finish, each with exactly one worker Job and one queue entry ever.
    env.wait_phase("one", c.PHASE_FINISHED, timeout=20)
    env.wait_phase("two", c.PHASE_FINISHED, timeout=20)
    assert queue_before[c.PRIORITY_DEFAULT] == [two["jobId"]]
    names = sorted(j["metadata"]["name"] for j in env.jobs())
    assert len(names) == 2 and all(n.endswith("-r1-a1") for n in names)
    for name, before in (("one", one), ("two", two)):
        after = env.status(name)
        assert after["runId"] == 1 and after["attempt"] == 1 and after["jobId"] == before["jobId"]
    assert all(v == [] for v in env.queue().values())
    assert len(second.logged("worker Job created")) == 1  # only "two"; "one" was never started again
    assert not second.logged("run queued")  # nothing enqueued twice


def test_two_replicas_one_active_and_failover(env):
    a = env.start_operator(wait=False)
    b = env.start_operator(wait=False)
    leader = wait_until(lambda: next((op for op in (a, b) if op.logged("leading")), None), timeout=20,
                        message="a leader")
    standby = b if leader is a else a
    env.apply(env.secret())
    for name in ("r1", "r2", "r3"):
        env.apply(env.rsync(name, query="standin:duration=0.3"))
    for name in ("r1", "r2", "r3"):
        env.wait_phase(name, c.PHASE_FINISHED)
    assert len(leader.logged("worker Job created")) == 3
    assert not standby.logged("worker Job created") and not standby.logged("leading")
    lease = env.get("lease", env.lease)
    assert lease["spec"]["holderIdentity"] == leader.identity

    # The leader stops cleanly (hands the Lease over); the standby takes over and works.
    leader.stop()
    standby.wait_leading(timeout=15)
    env.apply(env.rsync("r4", query="standin:duration=0.3"))
    env.wait_phase("r4", c.PHASE_FINISHED)
    assert len(standby.logged("worker Job created")) == 1
    assert sum(1 for j in env.jobs()) == 4


def test_delete_while_redis_is_unreachable_is_bounded(env, tmp_path):
    own_redis = services.start_redis(tmp_path / "redis")
    try:
        op = env.start_operator(**{c.OPERATOR_ENV_REDIS_URL: own_redis.url})
        env.apply(env.secret())
        env.apply(env.rsync("orphan", query="standin:hang_attempts=9"))
        env.wait_phase("orphan", c.PHASE_STARTED, timeout=20)
        own_redis.stop()
        began = time.monotonic()
        env.kubectl("delete", "rsync", "orphan", "--timeout=30s")
        elapsed = time.monotonic() - began
        assert elapsed < 15  # RECEIPTSYNC_DELETE_REDIS_TIMEOUT_SECONDS=3, plus the API round trips
        wait_until(lambda: not env.jobs(), timeout=10, message="worker Job deleted")
        warnings = [e for e in (env.get("events") or {}).get("items", [])
                    if e.get("reason") == "CleanupIncomplete" and e.get("type") == "Warning"]
        assert warnings
        assert op.alive()
    finally:
        own_redis.stop()


def test_metrics_and_health(env):
    op = env.start_operator()
    port = op.env[c.OPERATOR_ENV_METRICS_PORT]
    env.apply(env.secret())
    env.apply(env.rsync("measured", query="standin:duration=0.3"))
    env.wait_phase("measured", c.PHASE_FINISHED)
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
    assert health["status"] == "ok" and health["leader"] is True
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for metric in ("receiptsync_runs{phase=\"Finished\"} 1.0", "receiptsync_queue_depth", "receiptsync_active_workers",
                   "receiptsync_status_patch_seconds_bucket", "receiptsync_heartbeat_to_status_seconds_bucket",
                   "receiptsync_worker_jobs_created_total 1.0"):
        assert metric in text
    # One run, few API writes: Queued, Started, Finished (+ at most a few coalesced updates).
    patches = [line for line in text.splitlines() if line.startswith("receiptsync_status_patch_seconds_count")]
    assert patches and float(patches[0].split()[-1]) <= 8
    # No secret value ever reaches a log line.
    logs = op.log_path.read_text()
    assert "refresh-token-for" not in logs and "client_secret" not in logs


WRITE_VERBS = ("create", "update", "patch", "delete")


def test_a_plain_run_costs_at_most_eight_api_writes(env, tmp_path):
    """Issue 7's goal, for every write and not only status patches: the operator runs as the chart's
    ServiceAccount, so kube-apiserver's audit log counts its calls alone."""
    env.apply(env.secret())
    env.start_operator()

    def writes() -> dict[str, int]:
        counted: dict[str, int] = {}
        for e in env.sandbox.audit(user=env.operator_user):
            ref = e.get("objectRef") or {}
            if e["verb"] in WRITE_VERBS and ref.get("namespace") == env.ns and ref.get("resource") != "leases":
                sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                label = f"{e['verb']} {ref.get('resource')}{sub}"
                counted[label] = counted.get(label, 0) + 1
        return counted

    before = writes()
    env.apply(env.rsync("plain", query="standin:duration=0.5,scanned=10,saved=2"))
    env.wait_phase("plain", c.PHASE_FINISHED)
    time.sleep(1.5)  # Events and any deferred write land just after Finished
    counted = writes()
    run = {k: v - before.get(k, 0) for k, v in counted.items() if v - before.get(k, 0)}
    # finalizer 1 + status (Queued with the worker Job, Started, Finished) 3 + Job 1 + Events 2 = 7
    assert sum(run.values()) <= 8, run
    assert run.get("create jobs") == 1 and run.get("patch receiptsyncs", 0) <= 1, run
