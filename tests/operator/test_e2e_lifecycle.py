"""Issue 3 item 4, the operator's own life: delete during a run, while the operator is stopped and while
Redis is away (nothing is left, and no finalizer of ours holds a deletion up; one an older operator
left is released), restarts mid-run without duplicates, two replicas with one active, metrics and
health, API writes per run."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import urllib.request

import pytest
import redis

from receiptsync_common import contract as c
from receiptsync_sandbox import services
from receiptsync_sandbox.testing import process_running, wait_until

pytestmark = pytest.mark.slow


def leftovers(env, *job_ids: str, store: redis.Redis | None = None) -> dict[str, list]:
    """What a deletion must not leave: worker Jobs and pods, queue entries, queued payloads (in the
    operator's Redis, ``store``, env's own by default)."""
    store = store or env.redis
    return {k: v for k, v in {
        "jobs": [j["metadata"]["name"] for j in env.jobs()],
        "pods": [p["metadata"]["name"] for p in (env.get("pods") or {}).get("items") or []],
        "queued": [j for p in c.PRIORITIES for j in store.zrange(c.queue_key(p), 0, -1)],
        "payloads": [j for j in job_ids if store.exists(c.job_key(j))],
    }.items() if v}


def running_and_waiting(env, store: redis.Redis | None = None) -> tuple[dict, dict, int]:
    """One worker slot: "running" holds it (its worker hangs), "waiting" is queued behind it."""
    store = store or env.redis
    env.apply(env.secret())
    env.apply(env.rsync("running", query="standin:hang_attempts=9"))
    running = env.wait_phase("running", c.PHASE_STARTED)
    env.apply(env.rsync("waiting", query="standin:duration=0.2"))
    waiting = env.wait_phase("waiting", c.PHASE_QUEUED)
    there = leftovers(env, waiting["jobId"], store=store)
    assert (there["jobs"], there["queued"], there["payloads"]) == ([running["workerJob"]], [waiting["jobId"]],
                                                                   [waiting["jobId"]]), there
    pid = int(store.get(f"standin:pid:{running['jobId']}"))
    return running, waiting, pid


def test_delete_during_a_run_stops_the_worker_and_leaves_nothing(env):
    env.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1"})
    running, waiting, pid = running_and_waiting(env)
    for name in ("running", "waiting"):  # no finalizer of ours, ever: a deletion never waits for us
        assert not env.get(c.PLURAL, name)["metadata"].get("finalizers")

    # Delete the queued one: its queue entry and payload go.
    env.kubectl("delete", "rsync", "waiting", "--timeout=15s")
    wait_until(lambda: not {"queued", "payloads"} & set(leftovers(env, waiting["jobId"])), timeout=30,
               message="queue entry cancelled")

    # Delete the running one: nothing holds the deletion (`kubectl delete` waits for the object to
    # be gone, so it is gone when it returns), its worker stops, its Job and pod go.
    env.kubectl("delete", "rsync", "running", "--timeout=15s")
    assert env.get(c.PLURAL, "running") is None
    wait_until(lambda: not process_running(pid), timeout=15, message="worker process stopped")
    wait_until(lambda: not leftovers(env, waiting["jobId"]), timeout=20, message="nothing left")
    # The Event names the worker Job whoever deleted it: the garbage collector may beat the operator.
    wait_until(lambda: [e for e in env.events("running") if e.get("reason") == c.REASON_CANCELLED
                        and running["workerJob"] in e.get("message", "")], timeout=10, message="Cancelled Event")


def test_deleted_while_the_operator_is_stopped_leaves_nothing_once_it_starts(env):
    """Nothing waits for the operator: the garbage collector deletes the worker Job and pod with their
    ReceiptSync, and the operator, once back, drops the queue entry whose resource is gone."""
    first = env.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1"})
    running, waiting, pid = running_and_waiting(env)
    first.stop()
    began = time.monotonic()
    env.kubectl("delete", "rsync", "running", "waiting", "--timeout=15s")
    assert time.monotonic() - began < 5
    # kube-controller-manager's garbage collector learns a new CRD at its 30 s discovery resync and
    # retries an owner it could not resolve with back-off: early in a fresh sandbox this takes up to
    # a minute (on a cluster where the CRD is old news, it is at once).
    wait_until(lambda: not process_running(pid), timeout=120, message="worker stopped by garbage collection")
    wait_until(lambda: set(leftovers(env)) <= {"queued"}, timeout=30, message="Job and pod garbage-collected")
    assert leftovers(env, waiting["jobId"]) == {"queued": [waiting["jobId"]], "payloads": [waiting["jobId"]]}

    second = env.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1"})
    wait_until(lambda: not leftovers(env, waiting["jobId"]), timeout=20, message="the orphaned entry dropped")
    assert not second.logged("worker Job created")


def legacy(manifest: dict) -> dict:
    """As an older operator left it: our finalizer on (created with it, the way it would be there)."""
    return {**manifest, "metadata": {**manifest["metadata"], "finalizers": [c.FINALIZER]}}


def test_a_resource_an_older_operator_finalized_is_left_alone_then_released_on_deletion(env):
    mark = env.sandbox.audit_mark()
    env.apply(env.secret())
    env.apply(legacy(env.rsync("kept", query="standin:duration=0.2")),
              legacy(env.rsync("old", query="standin:hang_attempts=9")))
    op = env.start_operator()
    env.wait_phase("kept", c.PHASE_FINISHED)
    old = env.wait_phase("old", c.PHASE_STARTED)
    pid = int(env.redis.get(f"standin:pid:{old['jobId']}"))
    assert env.get(c.PLURAL, "kept")["metadata"]["finalizers"] == [c.FINALIZER]  # left alone while it lives

    # Deleted while no operator runs: our finalizer holds it (and so its Job: no garbage collection yet).
    op.stop()
    env.kubectl("delete", "rsync", "old", "--wait=false")
    held = env.get(c.PLURAL, "old")
    assert held["metadata"].get("deletionTimestamp") and held["metadata"]["finalizers"] == [c.FINALIZER]
    # The next operator cleans up and releases it (under the chart's Role: env checks nothing was refused).
    env.start_operator()
    wait_until(lambda: env.get(c.PLURAL, "old") is None, timeout=20, message="the legacy finalizer released")
    wait_until(lambda: not process_running(pid), timeout=15, message="worker process stopped")
    wait_until(lambda: env.get("jobs", old["workerJob"]) is None, timeout=20, message="its worker Job deleted")
    wait_until(lambda: [e for e in env.events("old") if e.get("reason") == c.REASON_CANCELLED], timeout=10,
               message="Cancelled Event")  # posted in the background
    # Deleted while the operator runs: released at once, and nothing is left.
    began = time.monotonic()
    env.kubectl("delete", "rsync", "kept", "--timeout=15s")
    assert time.monotonic() - began < 10
    # Its finished Job goes by garbage collection, which learns a CRD installed moments ago only at
    # its next discovery resync (every 30 s): up to a minute when this test runs first (38 s seen).
    wait_until(lambda: not leftovers(env), timeout=90, message="nothing left")

    def patched() -> set[str]:
        return {e["objectRef"]["name"] for e in env.sandbox.audit(user=env.operator_user, since_line=mark)
                if e["verb"] == "patch" and e.get("objectRef", {}).get("resource") == c.PLURAL
                and not e["objectRef"].get("subresource")}

    wait_until(lambda: patched() == {"kept", "old"}, timeout=10, message="the two releases (no other patch)")


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


def test_delete_while_redis_is_unreachable_leaves_nothing_once_it_is_back(env, tmp_path):
    """Redis frozen (SIGSTOP: it keeps its data): the deletions are not held up, the worker Job goes at
    once, and the queue entry that could not be cancelled is dropped by the dispatcher once Redis is
    back (its resource is gone)."""
    own = services.start_redis(tmp_path / "redis")
    try:
        op = env.start_operator(**{c.OPERATOR_ENV_REDIS_URL: own.url, c.OPERATOR_ENV_MAX_WORKERS: "1"})
        store = redis.Redis.from_url(own.url, decode_responses=True)
        running, waiting, pid = running_and_waiting(env, store)
        os.kill(own.pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            env.kubectl("delete", "rsync", "running", "waiting", "--timeout=15s")
            assert time.monotonic() - began < 5
            wait_until(lambda: not process_running(pid), timeout=20, message="worker process stopped")
            wait_until(lambda: env.get("jobs", running["workerJob"]) is None, timeout=20, message="worker Job gone")
            assert op.alive()
        finally:
            os.kill(own.pid, signal.SIGCONT)
        wait_until(lambda: not leftovers(env, waiting["jobId"], store=store), timeout=30, message="nothing left")
        assert op.alive() and len(op.logged("worker Job created")) == 1  # only "running" ever started
        store.close()
    finally:
        own.stop()


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
    # status (Queued with the worker Job, Started, Finished) 3 + Job 1 + Events 2 = 6; no finalizer:
    # the operator never patches a ReceiptSync itself (only its status).
    assert sum(run.values()) <= 8, run
    assert run.get("create jobs") == 1 and "patch receiptsyncs" not in run, run
