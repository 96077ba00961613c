"""The controllers' pure decisions: Job status from pods, retries, deadlines, TTL; ReplicaSets and
Deployments. No servers involved."""
from __future__ import annotations

import datetime as dt

from receiptsync_sandbox.controllers import deployments, jobstatus, replicasets
from receiptsync_sandbox.controllers.base import WorkQueue, status_patch

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return jobstatus.rfc3339(at(seconds))


def job(spec: dict | None = None, status: dict | None = None) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "ns", "uid": "job-uid", "generation": 1},
            "spec": {"template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "receiptsync-worker:0.1.0"}]}},
                     **(spec or {})},
            "status": status or {}}


def pod(name: str, phase: str, finished: float | None = None, deleting: bool = False, restarts: int = 0, ready: bool = False) -> dict:
    container = {"name": "c", "restartCount": restarts, "state": {}}
    if finished is not None:
        container["state"] = {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1, "finishedAt": stamp(finished)}}
    meta = {"name": name, "uid": f"uid-{name}", "namespace": "ns"}
    if deleting:
        meta["deletionTimestamp"] = stamp(0)
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [container],
                                         "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def conditions_of(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c.get("reason", "")) for c in status.get("conditions") or []}


def test_a_new_job_creates_one_pod_and_starts_its_clock():
    decision = jobstatus.decide(job(), [], at(0))
    assert decision.create == 1
    assert decision.status["startTime"] == stamp(0)
    assert "active" not in decision.status  # zero counters are omitted, as the API does


def test_a_created_pod_not_yet_in_the_cache_is_not_created_twice():
    assert jobstatus.decide(job(), [], at(0), unobserved_creations=1).create == 0


def test_a_running_pod_is_counted_active_and_ready():
    decision = jobstatus.decide(job(status={"startTime": stamp(0)}), [pod("p", "Running", ready=True)], at(5))
    assert decision.create == 0
    assert decision.status["active"] == 1 and decision.status["ready"] == 1


def test_a_succeeded_pod_completes_the_job():
    decision = jobstatus.decide(job(status={"startTime": stamp(0), "active": 1}), [pod("p", "Succeeded", finished=3)], at(4))
    assert conditions_of(decision.status)["Complete"] == ("True", "CompletionsReached")
    assert conditions_of(decision.status)["SuccessCriteriaMet"][0] == "True"
    assert decision.status["succeeded"] == 1 and decision.status["completionTime"] == stamp(4)
    assert "active" not in decision.status
    assert ("Normal", "Completed", "Job completed") in decision.events


def test_a_failed_pod_is_retried_after_a_backoff():
    failed = [pod("p1", "Failed", finished=10)]
    waiting = jobstatus.decide(job({"backoffLimit": 2}, {"startTime": stamp(0)}), failed, at(10.2))
    assert waiting.create == 0 and 0 < waiting.requeue_after <= 1.0
    assert waiting.status["failed"] == 1
    retry = jobstatus.decide(job({"backoffLimit": 2}, {"startTime": stamp(0)}), failed, at(11.5))
    assert retry.create == 1


def test_retry_delays_double_and_are_capped():
    assert [jobstatus.retry_delay(n) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


def test_more_failures_than_the_backoff_limit_fail_the_job():
    pods = [pod("p1", "Failed", finished=1), pod("p2", "Failed", finished=3), pod("p3", "Failed", finished=6)]
    decision = jobstatus.decide(job({"backoffLimit": 2}, {"startTime": stamp(0)}), pods, at(7))
    assert conditions_of(decision.status)["Failed"] == ("True", "BackoffLimitExceeded")
    assert conditions_of(decision.status)["FailureTarget"][0] == "True"
    assert decision.status["failed"] == 3 and decision.create == 0
    assert "completionTime" not in decision.status


def test_backoff_limit_zero_fails_on_the_first_failure():
    decision = jobstatus.decide(job({"backoffLimit": 0}, {"startTime": stamp(0)}), [pod("p", "Failed", finished=1)], at(2))
    assert conditions_of(decision.status)["Failed"] == ("True", "BackoffLimitExceeded")


def test_container_restarts_count_against_the_backoff_limit_with_on_failure():
    spec = {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "OnFailure", "containers": []}}}
    decision = jobstatus.decide(job(spec, {"startTime": stamp(0)}), [pod("p", "Running", restarts=2)], at(5))
    assert conditions_of(decision.status)["Failed"][1] == "BackoffLimitExceeded"
    assert decision.delete == ["p"]


def test_a_vanished_active_pod_counts_as_a_failure():
    decision = jobstatus.decide(job({"backoffLimit": 0}, {"startTime": stamp(0)}), [], at(5), lost=1)
    assert conditions_of(decision.status)["Failed"][1] == "BackoffLimitExceeded"


def test_active_deadline_kills_running_pods_and_fails_the_job():
    running = [pod("p", "Running")]
    early = jobstatus.decide(job({"activeDeadlineSeconds": 10}, {"startTime": stamp(0)}), running, at(4))
    assert early.delete == [] and abs(early.requeue_after - 6) < 0.01
    late = jobstatus.decide(job({"activeDeadlineSeconds": 10}, {"startTime": stamp(0)}), running, at(10))
    assert late.delete == ["p"]
    assert conditions_of(late.status)["Failed"] == ("True", "DeadlineExceeded")


def test_a_finished_job_starts_nothing_and_deletes_leftovers():
    status = {"startTime": stamp(0), "conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": stamp(5)}]}
    decision = jobstatus.decide(job({}, status), [pod("p", "Running")], at(6))
    assert decision.create == 0 and decision.delete == ["p"] and not decision.events


def test_ttl_after_finished_deletes_the_job_when_due():
    status = {"startTime": stamp(0), "completionTime": stamp(5),
              "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": stamp(5)}]}
    waiting = jobstatus.decide(job({"ttlSecondsAfterFinished": 10}, status), [], at(8))
    assert not waiting.delete_job and abs(waiting.requeue_after - 7) < 0.01
    assert jobstatus.decide(job({"ttlSecondsAfterFinished": 10}, status), [], at(15)).delete_job


def test_ttl_zero_deletes_right_when_the_job_completes():
    decision = jobstatus.decide(job({"ttlSecondsAfterFinished": 0}, {"startTime": stamp(0)}), [pod("p", "Succeeded", finished=1)], at(2))
    assert conditions_of(decision.status)["Complete"][0] == "True" and decision.delete_job


def test_suspend_kills_pods_and_resume_restarts():
    suspended = jobstatus.decide(job({"suspend": True}, {"startTime": stamp(0)}), [pod("p", "Running")], at(3))
    assert suspended.delete == ["p"] and conditions_of(suspended.status)["Suspended"] == ("True", "JobSuspended")
    assert "startTime" not in suspended.status
    resumed = jobstatus.decide(job({}, suspended.status), [], at(9))
    assert resumed.create == 1 and conditions_of(resumed.status)["Suspended"] == ("False", "JobResumed")


def test_parallelism_and_completions():
    spec = {"parallelism": 2, "completions": 3}
    first = jobstatus.decide(job(spec, {"startTime": stamp(0)}), [], at(0))
    assert first.create == 2
    later = jobstatus.decide(job(spec, {"startTime": stamp(0)}), [pod("a", "Succeeded", finished=1), pod("b", "Succeeded", finished=2), pod("c", "Running")], at(3))
    assert later.create == 0  # one more completion is needed and one pod is on it
    done = jobstatus.decide(job(spec, {"startTime": stamp(0)}), [pod(n, "Succeeded", finished=1) for n in "abc"], at(3))
    assert conditions_of(done.status)["Complete"][0] == "True"


def test_job_pods_are_labelled_owned_and_bound():
    body = jobstatus.pod_for_job(job(), "j-abcde")
    labels = body["metadata"]["labels"]
    assert labels["app"] == "a" and labels["batch.kubernetes.io/controller-uid"] == "job-uid" and labels["job-name"] == "j"
    [owner] = body["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True, "blockOwnerDeletion": True}
    assert body["spec"]["nodeName"] == "sandbox" and body["spec"]["restartPolicy"] == "Never"


def test_status_patch_nulls_fields_that_went_away():
    assert status_patch({"active": 1, "ready": 1}, {"ready": 0, "succeeded": 1}) == {"ready": 0, "succeeded": 1, "active": None}


async def test_work_queue_deduplicates_and_delays():
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b", after=0.05)
    assert await queue.get() == "a"
    assert await queue.get() == "b"


# --- ReplicaSets and Deployments ------------------------------------------------------------------

def replicaset(replicas: int, status: dict | None = None, name: str = "d-h1", pod_hash: str = "h1", revision: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1,
                         "labels": {"app": "a", "pod-template-hash": pod_hash},
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)}},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "a"}}, "spec": {}}},
            "status": status or {}}


def test_replicaset_creates_missing_and_deletes_surplus_pods_least_ready_first():
    assert replicasets.decide(replicaset(2), [pod("a", "Running", ready=True)], T0).create == 1
    pods = [pod("a", "Running", ready=True), pod("b", "Pending"), pod("c", "Running", ready=True)]
    decision = replicasets.decide(replicaset(1), pods, T0)
    assert decision.delete[0] == "b" and len(decision.delete) == 2
    assert decision.status["replicas"] == 1


def test_replicaset_replaces_finished_pods_and_reports_readiness():
    decision = replicasets.decide(replicaset(1), [pod("a", "Failed", finished=1)], T0)
    assert decision.delete == ["a"] and decision.create == 1
    status = replicasets.decide(replicaset(2), [pod("a", "Running", ready=True), pod("b", "Running")], T0).status
    assert (status["replicas"], status["readyReplicas"], status["availableReplicas"]) == (2, 1, 1)


def deployment(replicas: int = 2, template: dict | None = None, strategy: dict | None = None, status: dict | None = None) -> dict:
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": "a"}},
            "template": template or {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ns", "uid": "dep-uid", "generation": 3}, "spec": spec, "status": status or {}}


def test_a_new_deployment_gets_a_replicaset_for_its_template():
    decision = deployments.decide(deployment(), [], T0)
    created = decision.create_replicaset
    pod_hash = deployments.template_hash(deployment()["spec"]["template"])
    assert created["metadata"]["name"] == f"d-{pod_hash}" and created["spec"]["replicas"] == 2
    assert created["spec"]["selector"]["matchLabels"] == {"app": "a", "pod-template-hash": pod_hash}
    assert created["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    assert decision.revision == "1"
    assert conditions_of(decision.status)["Progressing"] == ("True", "NewReplicaSetCreated")


def current_rs(dep: dict, replicas: int, status: dict) -> dict:
    pod_hash = deployments.template_hash(dep["spec"]["template"])
    return replicaset(replicas, status, name=f"d-{pod_hash}", pod_hash=pod_hash, revision=2)


def test_a_rolled_out_deployment_is_available_and_complete():
    dep = deployment()
    full = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    decision = deployments.decide(dep, [current_rs(dep, 2, full)], T0)
    assert decision.status["observedGeneration"] == 3
    assert (decision.status["updatedReplicas"], decision.status["availableReplicas"]) == (2, 2)
    assert conditions_of(decision.status)["Available"] == ("True", "MinimumReplicasAvailable")
    assert conditions_of(decision.status)["Progressing"] == ("True", "NewReplicaSetAvailable")
    assert not decision.scale and not decision.create_replicaset


def test_scaling_to_zero_scales_the_replicaset():
    dep = deployment(replicas=0)
    decision = deployments.decide(dep, [current_rs(dep, 2, {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2})], T0)
    assert decision.scale == {current_rs(dep, 0, {})["metadata"]["name"]: 0}


def test_rolling_update_keeps_the_old_replicaset_until_the_new_one_is_available():
    dep = deployment()
    old = replicaset(2, {"replicas": 2, "availableReplicas": 2}, name="d-old", pod_hash="old", revision=1)
    starting = deployments.decide(dep, [old, current_rs(dep, 2, {"replicas": 2})], T0)
    assert "d-old" not in starting.scale
    ready = deployments.decide(dep, [old, current_rs(dep, 2, {"replicas": 2, "availableReplicas": 2})], T0)
    assert ready.scale == {"d-old": 0}


def test_recreate_empties_old_replicasets_before_starting_new_pods():
    dep = deployment(strategy={"type": "Recreate"})
    old = replicaset(2, {"replicas": 2}, name="d-old", pod_hash="old", revision=1)
    decision = deployments.decide(dep, [old], T0)
    assert decision.scale == {"d-old": 0} and decision.create_replicaset["spec"]["replicas"] == 0


def test_template_hash_changes_with_the_template_only():
    a = deployment()["spec"]["template"]
    b = deployment(template={"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}})["spec"]["template"]
    assert deployments.template_hash(a) == deployments.template_hash(dict(a))
    assert deployments.template_hash(a) != deployments.template_hash(b)
