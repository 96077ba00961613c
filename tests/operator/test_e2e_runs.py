"""Issue 3 item 4, through the sandbox with the real operator, real kopf, real Redis, real kubectl:
runs from apply to Finished, capped dispatch in priority order, lost workers, retries, invalid specs."""
from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from receiptsync_common import contract as c

from receiptsync_sandbox.testing import wait_until

pytestmark = pytest.mark.slow


def test_apply_queues_starts_a_worker_job_and_finishes_with_counters(env):
    env.start_operator()
    env.apply(env.secret())
    assert env.jobs() == []  # no worker exists before the resource does
    watch = env.watch_phases("acme")
    try:
        env.apply(env.rsync("acme", query="standin:duration=1.5,scanned=40,saved=4"))
        (job,) = wait_until(env.jobs, message="a worker Job")
        done = env.wait_phase("acme", c.PHASE_FINISHED, reason=c.REASON_SUCCEEDED)
    finally:
        watch.stop()
    assert watch.phases() == [c.PHASE_QUEUED, c.PHASE_STARTED, c.PHASE_FINISHED]
    assert done["progress"] == {"messagesScanned": 40, "savedReceipts": 4}
    assert done["dateRange"] == {"from": "2025-01-01", "to": "2025-01-31"}
    assert done["runId"] == 1 and done["attempt"] == 1 and done["workerJob"] == job["metadata"]["name"]
    assert done["jobId"] == job["metadata"]["annotations"][c.JOB_ID_ANNOTATION]
    for field in ("enqueuedAt", "startedAt", "finishedAt", "lastHeartbeatTime"):
        assert done[field].endswith("Z")
    assert done["observedGeneration"] == 1
    conds = {x["type"]: x["status"] for x in done["conditions"]}
    assert conds == {"Complete": "True", "Failed": "False"}
    assert done["runs"][-1]["phase"] == c.PHASE_FINISHED
    # `kubectl wait --for=condition=Complete` returns; printer columns show the counters.
    env.kubectl("wait", "--for=condition=Complete", "rsync/acme", "--timeout=5s")
    table = env.kubectl("get", "rsync", "acme").stdout
    header, row = table.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]  # kubectl's columns are left-aligned
    columns = {name: row[a:b].strip() for name, a, b in zip(header.split(), starts, starts[1:] + [None])}
    assert (columns["PHASE"], columns["SCANNED"], columns["SAVED"]) == ("Finished", "40", "4"), table

    # The Job: ours, owned, only this resource's Secret, restricted.
    meta = job["metadata"]
    assert meta["labels"][c.LABEL_MANAGED_BY] == c.MANAGED_BY_VALUE
    assert meta["labels"][c.LABEL_COMPONENT] == c.COMPONENT_WORKER
    (owner,) = meta["ownerReferences"]
    assert owner["kind"] == c.KIND and owner["name"] == "acme" and owner["controller"] is True
    pod = job["spec"]["template"]["spec"]
    env_vars = {e["name"]: e for e in pod["containers"][0]["env"]}
    secret_ref = env_vars[c.ENV_GMAIL_CREDENTIALS]["valueFrom"]["secretKeyRef"]
    assert secret_ref == {"name": "gmail", "key": "credentials.json"}
    assert job["spec"]["backoffLimit"] == 0 and pod["automountServiceAccountToken"] is False
    assert env.redis.get(f"standin:creds:{done['jobId']}") == "yes"  # the worker got its credentials

    # Events for a run's end and for trouble only (a run that never waited has no Queued one, and
    # Started is in the status).
    reasons = [e["reason"] for e in env.events("acme")]
    assert reasons == [c.PHASE_FINISHED]
    described = env.kubectl("describe", "rsync", "acme").stdout
    assert "Finished" in described
    # No finalizer (the operator adds none) and no kopf bookkeeping in the user's metadata.
    obj = env.get(c.PLURAL, "acme")
    assert not obj["metadata"].get("finalizers")
    assert not [k for k in (obj["metadata"].get("annotations") or {}) if k.startswith(c.GROUP + "/")
                or "kopf" in k]

    # Re-applying the same manifest starts nothing; the resource is left alone (no churn).
    before = env.get(c.PLURAL, "acme")
    env.apply(env.rsync("acme", query="standin:duration=1.5,scanned=40,saved=4"))
    after = env.get(c.PLURAL, "acme")
    assert after["status"] == before["status"] and len(env.jobs()) == 1

    # Editing the spec is a new run.
    env.apply(env.rsync("acme", query="standin:duration=0.2,scanned=5,saved=1"))
    second = env.wait_status("acme", lambda s: s.get("runId") == 2 and s.get("phase") == c.PHASE_FINISHED)
    assert second["observedGeneration"] == 2 and second["progress"]["messagesScanned"] == 5
    assert [r["runId"] for r in second["runs"]] == [1, 2]


def test_capped_workers_wait_with_place_in_line_then_run_in_priority_order(env):
    env.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1"})
    env.apply(env.secret())
    env.apply(env.rsync("first", query="standin:duration=5", priority="low"))
    env.wait_phase("first", c.PHASE_STARTED)
    env.apply(env.rsync("low", query="standin:duration=0.5", priority="low"))
    env.wait_phase("low", c.PHASE_QUEUED)
    env.apply(env.rsync("dflt", query="standin:duration=0.5", priority="default"))
    env.apply(env.rsync("high", query="standin:duration=0.5", priority="high"))

    def waiting(name, place):
        return env.wait_status(name, lambda s: s.get("reason") == c.REASON_WAITING_FOR_WORKER
                               and f"{place} in line" in (s.get("message") or ""), timeout=10,
                               message=f"{name} {place} in line")

    waiting("high", "1st")
    waiting("dflt", "2nd")
    waiting("low", "3rd")
    for name, place in (("high", "1st"), ("dflt", "2nd"), ("low", "3rd")):
        message = env.status(name)["message"]
        assert message.startswith(f"Waiting for a worker: {place} in line of ")
        assert "(all 1 worker slots are busy)" in message
    # Having to wait is worth an Event (`kubectl describe`); starting at once is not.
    assert c.PHASE_QUEUED in [e["reason"] for e in env.events("high")]
    assert c.PHASE_QUEUED not in [e["reason"] for e in env.events("first")]

    for name in ("first", "high", "dflt", "low"):
        env.wait_phase(name, c.PHASE_FINISHED, timeout=30)
    started = {n: env.status(n)["startedAt"] for n in ("high", "dflt", "low")}
    finished = {n: env.status(n)["finishedAt"] for n in ("first", "high", "dflt", "low")}
    # One worker at a time, in priority order: each starts after the one before it finished.
    assert finished["first"] <= started["high"] and finished["high"] <= started["dflt"]
    assert finished["dflt"] <= started["low"]
    assert len(env.jobs()) == 4
    assert all(v == [] for v in env.queue().values())


def test_killed_worker_is_lost_then_retried_and_finishes(env):
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync("flaky", query="standin:hang_attempts=1,duration=0.5", backoffLimit=2))
    first = env.wait_phase("flaky", c.PHASE_STARTED)
    pid = int(wait_until(lambda: env.redis.get(f"standin:pid:{first['jobId']}"), message="worker pid"))
    os.kill(pid, signal.SIGKILL)
    lost = env.wait_status("flaky", lambda s: s.get("reason") == c.REASON_WORKER_LOST or s.get("attempt") == 2,
                           timeout=15)
    assert lost["attempt"] == 2 and lost["runId"] == 1
    done = env.wait_phase("flaky", c.PHASE_FINISHED, timeout=20)
    assert done["attempt"] == 2 and done["runId"] == 1 and done["jobId"].endswith(".r1.a2")
    assert c.REASON_WORKER_LOST in [e["reason"] for e in env.events("flaky")]
    names = sorted(j["metadata"]["name"] for j in env.jobs())
    assert len(names) == 2 and names[0].endswith("-r1-a1") and names[1].endswith("-r1-a2")


def test_a_lost_final_heartbeat_still_reads_finished_and_is_not_run_again(env):
    """The worker's durable outcome (its termination message) stands in for a final heartbeat that
    never reached Redis: Finished with the worker's counters, attempt 1, no second Job."""
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync("quiet", query="standin:lose_final=1,duration=0.5,scanned=12,saved=3", backoffLimit=2))
    done = env.wait_phase("quiet", c.PHASE_FINISHED, timeout=30)
    assert (done["attempt"], done["runId"]) == (1, 1), done
    assert (done["progress"]["messagesScanned"], done["progress"]["savedReceipts"]) == (12, 3), done
    time.sleep(float(env.operator_env()[c.OPERATOR_ENV_HEARTBEAT_TIMEOUT]) + 2)  # past any WorkerLost verdict
    assert env.status("quiet")["attempt"] == 1 and len(env.jobs()) == 1


def test_silent_hung_worker_is_lost_by_heartbeat_timeout(env):
    # The worker stays alive but stops heartbeating: only the heartbeat timeout can tell.
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync("hung", query="standin:hang_attempts=5", backoffLimit=0))
    env.wait_phase("hung", c.PHASE_STARTED)
    failed = env.wait_phase("hung", c.PHASE_FAILED, timeout=15)
    assert failed["reason"] == c.REASON_BACKOFF_LIMIT_EXCEEDED and c.REASON_WORKER_LOST in failed["message"]
    # The hung attempt's Job is stopped, not left holding a worker slot.
    wait_until(lambda: all(j.get("metadata", {}).get("deletionTimestamp") or
                           (j.get("status") or {}).get("active") in (None, 0) for j in env.jobs()) or not env.jobs(),
               timeout=10, message="hung Job stopped")


def test_backoff_exhausted_fails_with_backoff_limit_exceeded(env):
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync("broken", query="standin:duration=0.2,fail_always=1,fail=GmailApiError", backoffLimit=1))
    failed = env.wait_phase("broken", c.PHASE_FAILED, timeout=20)
    assert failed["reason"] == c.REASON_BACKOFF_LIMIT_EXCEEDED and failed["attempt"] == 2
    assert "GmailApiError" in failed["message"]
    assert {x["type"]: x["status"] for x in failed["conditions"]} == {"Complete": "False", "Failed": "True"}
    assert len(env.jobs()) == 2
    env.kubectl("wait", "--for=condition=Failed", "rsync/broken", "--timeout=5s")


def test_auth_error_fails_at_once_without_retry(env):
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync("noauth", query="standin:duration=0.1,fail_always=1,fail=GmailAuthError", backoffLimit=3))
    failed = env.wait_phase("noauth", c.PHASE_FAILED, timeout=15)
    assert failed["reason"] == c.REASON_GMAIL_AUTH_ERROR and failed["attempt"] == 1
    assert len(env.jobs()) == 1


@pytest.mark.parametrize("case,spec,field", [
    ("baddate", {"fromDate": "2025-02-30", "toDate": "2025-03-31"}, "spec.fromDate"),
    ("badtz", {"timeZone": "Mars/Olympus"}, "spec.timeZone"),
])
def test_invalid_specs_fail_in_status_naming_the_field(env, case, spec, field):
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync(case, **spec))
    failed = env.wait_phase(case, c.PHASE_FAILED, reason=c.REASON_INVALID_SPEC)
    assert field in failed["message"]
    assert failed["observedGeneration"] == 1
    assert env.jobs() == [] and all(v == [] for v in env.queue().values())
    assert c.REASON_INVALID_SPEC in [e["reason"] for e in env.events(case)]
    # Not retried, no loop: the status stays as it is.
    resource_version = env.get(c.PLURAL, case)["metadata"]["resourceVersion"]
    time.sleep(1.5)
    assert env.get(c.PLURAL, case)["metadata"]["resourceVersion"] == resource_version


@pytest.mark.parametrize("case,ref,words", [
    ("nosecret", {"name": "missing"}, 'secret "missing" not found'),
    ("nokey", {"name": "gmail", "key": "token.json"}, "couldn't find key token.json"),
])
def test_missing_gmail_secret_or_key_is_seen_on_the_pod_never_read_by_the_operator(env, case, ref, words):
    """The operator reads no Secret (issue 14): the kubelet's CreateContainerConfigError names what is
    missing, and the run fails for good (no retry can create a Secret)."""
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync(case, gmail={"secretRef": ref}, backoffLimit=3))
    failed = env.wait_phase(case, c.PHASE_FAILED, reason=c.REASON_WORKER_CONFIG_ERROR, timeout=30)
    assert "CreateContainerConfigError" in failed["message"] and words in failed["message"]
    assert failed["attempt"] == 1  # not retried
    assert not [e for e in env.sandbox.audit(user=env.operator_user) if (e.get("objectRef") or {}).get("resource")
                == "secrets" and e["verb"] in ("get", "list", "watch")]


def test_schema_rejects_from_after_to_at_apply(env):
    result = env.kubectl("apply", "-f", "-", check=False, input=json.dumps(
        env.rsync("backwards", fromDate="2025-05-01", toDate="2025-04-01")))
    assert result.returncode != 0
    assert "fromDate" in result.stderr and "toDate" in result.stderr


def test_run_now_annotation_starts_one_run_per_new_value(env):
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync("manual", query="standin:duration=0.2"))
    env.wait_phase("manual", c.PHASE_FINISHED)
    env.kubectl("annotate", "rsync", "manual", f"{c.RUN_NOW_ANNOTATION}=first")
    second = env.wait_status("manual", lambda s: s.get("runId") == 2 and s.get("phase") == c.PHASE_FINISHED)
    assert second["observedGeneration"] == 1  # the spec did not change
    # The same value again (re-applied by a GitOps tool, say) starts nothing.
    env.kubectl("annotate", "--overwrite", "rsync", "manual", f"{c.RUN_NOW_ANNOTATION}=first")
    time.sleep(1.5)
    assert env.status("manual")["runId"] == 2
    env.kubectl("annotate", "--overwrite", "rsync", "manual", f"{c.RUN_NOW_ANNOTATION}=second")
    third = env.wait_status("manual", lambda s: s.get("runId") == 3 and s.get("phase") == c.PHASE_FINISHED)
    assert [r["runId"] for r in third["runs"]] == [1, 2, 3]
    assert len(env.jobs()) == 3
    # The operator never touched what the user owns: spec, labels, and the user's annotations.
    obj = env.get(c.PLURAL, "manual")
    assert obj["metadata"]["annotations"][c.RUN_NOW_ANNOTATION] == "second"
    assert not obj["metadata"].get("labels")
    ours = {k for k in obj["metadata"]["annotations"] if k.startswith(c.GROUP + "/")} - {c.RUN_NOW_ANNOTATION}
    assert ours <= {f"{c.GROUP}/last-handled-configuration", f"{c.GROUP}/kopf-managed"}
