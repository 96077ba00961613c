"""A deletion's pure parts: which worker Jobs the cleanup stops (running ones, noting those the
garbage collector is deleting already; it takes the finished ones), which queue entries are the
resource's, and the guarded release of the finalizer older operators added."""
from __future__ import annotations

from receiptsync_common import contract as c
from receiptsync_operator.cleanup import queue_prefix, running_jobs
from receiptsync_operator.finalizers import has_ours, remove_ops

UID = "0123456789abcdef"


def job(name: str, *, uid: str = UID, namespace: str = "ns", status: dict | None = None, deleting: bool = False):
    meta = {"name": name, "namespace": namespace, "ownerReferences": [{"kind": c.KIND, "uid": uid}]}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": status or {}}


def test_only_the_resources_running_jobs_are_stopped_by_the_cleanup():
    done = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    failed = {"conditions": [{"type": "Failed", "status": "True"}], "failed": 1}
    jobs = [job("r-r2-a1", status={"active": 1}), job("r-r1-a1", status=done), job("r-r1-a0", status=failed),
            job("new"),  # just created: no status yet, still running for us
            job("going", status={"active": 1}, deleting=True),  # the garbage collector was first
            job("other", uid="fedcba9876543210", status={"active": 1}),
            job("elsewhere", namespace="other-ns", status={"active": 1})]
    assert running_jobs(jobs, "ns", UID, {}) == {"going": True, "new": False, "r-r2-a1": False}
    assert running_jobs(jobs, "ns", "", {}) == {}
    # The status shows a run Started whose Job the cache no longer holds: the garbage collector took it.
    started = {"phase": c.PHASE_STARTED, "workerJob": "r-r3-a1"}
    assert running_jobs(jobs, "ns", UID, started) == {"going": True, "new": False, "r-r2-a1": False,
                                                        "r-r3-a1": True}
    # ... but not one the cache holds as finished, nor one whose run is over.
    assert "r-r1-a1" not in running_jobs(jobs, "ns", UID, {**started, "workerJob": "r-r1-a1"})
    assert "r-r3-a1" not in running_jobs(jobs, "ns", UID, {**started, "phase": c.PHASE_FINISHED})


def test_queue_entries_of_one_resource_instance():
    prefix = queue_prefix({"namespace": "ns", "name": "acme", "uid": UID})
    assert c.make_job_id("ns", "acme", UID, 3, 1).startswith(prefix)
    assert not c.make_job_id("ns", "acme", "ffff" + UID[4:], 3, 1).startswith(prefix)  # a re-created one
    assert not c.make_job_id("ns", "acme-2", UID, 3, 1).startswith(prefix)


def test_the_legacy_finalizer_is_released_where_it_is_and_only_if_unchanged():
    assert remove_ops({"finalizers": ["foregroundDeletion"]}) is None
    assert remove_ops({}) is None and not has_ours({})
    meta = {"finalizers": ["example.com/other", c.FINALIZER]}
    assert has_ours(meta)
    assert remove_ops(meta) == [{"op": "test", "path": "/metadata/finalizers/1", "value": c.FINALIZER},
                                {"op": "remove", "path": "/metadata/finalizers/1"}]
