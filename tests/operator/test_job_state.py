"""What a worker Job and its Pod say, as pure functions over the API's own dicts."""
from __future__ import annotations

import json

import pytest

from receiptsync_common import contract as c
from receiptsync_operator import job_state as js


def job(conditions=(), **status):
    return {"metadata": {"name": "j"}, "status": {"conditions": [dict(x) for x in conditions], **status}}


def cond(type_, reason="", status="True"):
    return {"type": type_, "status": status, "reason": reason}


def test_job_states():
    assert js.state(None) == js.JOB_GONE
    assert js.state(job()) == js.JOB_ACTIVE and js.state(job(active=1)) == js.JOB_ACTIVE
    assert js.state(job([cond("Complete")])) == js.JOB_SUCCEEDED
    assert js.state(job([cond("Failed", "BackoffLimitExceeded")])) == js.JOB_FAILED
    assert js.state(job([cond("Failed", "DeadlineExceeded")])) == js.JOB_DEADLINE
    assert js.state(job([cond("Failed", status="False")])) == js.JOB_ACTIVE
    assert js.state(job(failed=1)) == js.JOB_FAILED
    assert js.is_active(job()) and not js.is_active(job(succeeded=1))


def test_kubernetes_1_31_sets_its_verdict_before_failed_or_complete():
    # While the pods terminate, only FailureTarget/SuccessCriteriaMet are there: a deadline must read
    # as a deadline (Timeout), not as a Job that failed without a heartbeat (WorkerLost).
    assert js.state(job([cond("FailureTarget", "DeadlineExceeded")], active=1)) == js.JOB_DEADLINE
    assert js.state(job([cond("FailureTarget", "BackoffLimitExceeded")], active=1)) == js.JOB_FAILED
    assert js.state(job([cond("SuccessCriteriaMet", "CompletionsReached")], active=1)) == js.JOB_SUCCEEDED


def pod(name="p", *, phase="Pending", waiting=None, terminated=None, scheduled=None, job_name="j", deleting=False):
    state = {}
    if waiting:
        state["waiting"] = {"reason": waiting[0], "message": waiting[1]}
    if terminated:
        state["terminated"] = terminated
    status = {"phase": phase, "containerStatuses": [{"name": "worker", "state": state}] if state else []}
    if scheduled:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": scheduled[0],
                                 "message": scheduled[1]}]
    meta = {"name": name, "labels": {"batch.kubernetes.io/job-name": job_name}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta, "status": status}


LIMITS = dict(start_timeout=300, image_pull_timeout=60)


def trouble(p, held=0.0):
    return js.pod_trouble(p, trouble_for=held, **LIMITS)


def test_unschedulable_waits_then_fails_past_the_start_timeout():
    p = pod(scheduled=("Unschedulable", "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity."))
    early = trouble(p, 10)
    assert early.word == "Unschedulable" and early.verdict == js.PENDING and "node affinity" in early.message
    late = trouble(p, 300)
    assert late.verdict == js.FATAL and late.reason == c.REASON_UNSCHEDULABLE
    assert trouble(pod(scheduled=("SchedulingGated", "gated"))) is None  # only Kubernetes' "Unschedulable"


@pytest.mark.parametrize("word", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull_trouble_is_named_at_once_and_fails_when_it_persists(word):
    p = pod(waiting=(word, 'Back-off pulling image "nope:1"'))
    assert trouble(p).word == word and trouble(p).verdict == js.PENDING
    assert "nope:1" in trouble(p).message
    assert trouble(p, 60).verdict == js.FATAL and trouble(p, 60).reason == c.REASON_IMAGE_PULL_FAILED


def test_an_invalid_image_name_never_fixes_itself():
    assert trouble(pod(waiting=("InvalidImageName", "bad"))).verdict == js.FATAL


def test_missing_secret_key_fails_at_once_and_is_not_retried():
    p = pod(waiting=("CreateContainerConfigError", "couldn't find key creds in Secret team-a/gmail"))
    t = trouble(p)
    assert t.verdict == js.FATAL and t.reason == c.REASON_WORKER_CONFIG_ERROR and "creds" in t.message
    assert c.REASON_WORKER_CONFIG_ERROR in c.NON_RETRYABLE_REASONS


def test_oom_killed():
    p = pod(phase="Failed", terminated={"reason": "OOMKilled", "exitCode": 137})
    t = trouble(p)
    assert t.word == "OOMKilled" and t.verdict == js.FATAL and t.reason == c.REASON_OOM_KILLED and "137" in t.message


def test_a_running_or_plainly_failed_pod_is_no_trouble():
    assert trouble(pod(phase="Running")) is None
    assert trouble(pod(phase="Failed", terminated={"reason": "Error", "exitCode": 1})) is None
    assert trouble(pod(waiting=("ContainerCreating", ""))) is None


def test_failed_create_from_the_job_controllers_events():
    events = [{"reason": "SuccessfulCreate", "message": "ok", "lastTimestamp": "2025-01-01T00:00:09Z"},
              {"reason": "FailedCreate", "message": "exceeded quota: old", "lastTimestamp": "2025-01-01T00:00:01Z"},
              {"reason": "FailedCreate", "message": "exceeded quota: new", "lastTimestamp": "2025-01-01T00:00:05Z"}]
    assert js.failed_create(events) == "exceeded quota: new"
    assert js.failed_create(events[:1]) is None


def test_termination_message_is_a_durable_final_heartbeat():
    msg = json.dumps({"outcome": "Finished", "reason": "Succeeded", "message": "Run 1 finished",
                      "messages_scanned": 40, "saved_receipts": 4})
    p = pod(phase="Succeeded", terminated={"reason": "Completed", "exitCode": 0, "message": msg,
                                           "finishedAt": "2025-01-01T00:00:00Z"})
    hb = js.termination_outcome(p, "ns.x.u.r1.a1")
    assert hb == {c.HB_JOB_ID: "ns.x.u.r1.a1", c.HB_PHASE: "Finished", c.HB_REASON: "Succeeded",
                  c.HB_MESSAGE: "Run 1 finished", c.HB_SCANNED: "40", c.HB_SAVED: "4",
                  c.HB_TIME: "2025-01-01T00:00:00Z"}
    for junk in ("", "not json", "[1]", json.dumps({"outcome": "Started"}),
                 json.dumps({"outcome": "Failed", "job_id": "another"})):
        assert js.termination_outcome(pod(terminated={"message": junk}), "ns.x.u.r1.a1") is None


def test_the_workers_own_termination_message_is_read_with_its_counters():
    from receiptsync_worker.outcome import Counters, Outcome, termination_message

    text = termination_message(Outcome("Finished", "Succeeded", "Scanned 40 messages"), Counters(40, 4), "ns.x.u.r1.a1")
    p = pod(phase="Succeeded", terminated={"reason": "Completed", "exitCode": 0, "message": text,
                                           "finishedAt": "2025-01-01T00:00:00Z"})
    hb = js.termination_outcome(p, "ns.x.u.r1.a1")
    assert (hb[c.HB_PHASE], hb[c.HB_SCANNED], hb[c.HB_SAVED]) == ("Finished", "40", "4")


def test_exit_code():
    assert js.exit_code(pod(terminated={"exitCode": 2})) == 2
    assert js.exit_code(pod()) is None


def test_slots_are_held_until_the_old_pod_is_gone():
    active, done = job(), job([cond("Failed", "DeadlineExceeded")])
    done["metadata"]["name"] = "old"
    # A failed Job whose pod still terminates holds its slot; so does a pod whose Job was deleted.
    assert js.slots_held([("ns", active), ("ns", done)], []) == 1
    leftover = ("ns", pod(phase="Running", job_name="old", deleting=True))
    assert js.slots_held([("ns", active), ("ns", done)], [leftover]) == 2
    assert js.slots_held([], [("ns", pod(phase="Running", job_name="gone"))]) == 1
    assert js.slots_held([("ns", active)], [("ns", pod(phase="Running", job_name="j"))]) == 1  # counted once
    assert js.slots_held([("ns", done)], [("ns", pod(phase="Failed", job_name="old"))]) == 0


@pytest.mark.parametrize("status,message,permanent", [
    (422, "Job.batch is invalid: metadata.name", True),
    (400, "bad request", True),
    (404, "namespaces \"x\" not found", True),
    (403, 'admission webhook "policy.example.com" denied the request: no', True),
    (403, "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\"", True),
    # kube-apiserver's own words for a ValidatingAdmissionPolicy with reason Forbidden (test_e2e_cluster)
    (403, "jobs.batch \"rs-x-r1-a1\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: no",
     True),
    (403, "jobs.batch is forbidden: User cannot create resource", False),  # RBAC: an admin may fix it
    (403, "exceeded quota: compute, requested: pods=1", False),
    (429, "too many requests", False),
    (500, "etcdserver: leader changed", False),
])
def test_which_job_creation_refusals_are_for_good(status, message, permanent):
    assert js.creation_refusal_is_permanent(status, message) is permanent
