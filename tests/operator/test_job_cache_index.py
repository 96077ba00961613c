"""The Job cache's indexes (live objects, pods by Job) agree with a full scan after any sequence of
lists, watch events and our own creations."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as s

from receiptsync_operator import job_state
from receiptsync_operator.job_cache import JobCache


def job(ns: str, name: str, rv: int, active: bool) -> dict:
    status = {"active": 1} if active else {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": str(rv)}, "spec": {}, "status": status}


def pod(ns: str, name: str, job_name: str, rv: int, phase: str) -> dict:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": str(rv),
                         "labels": {"batch.kubernetes.io/job-name": job_name}}, "status": {"phase": phase}}


NAMES = s.sampled_from(["a", "b", "c", "d"])
NAMESPACES = s.sampled_from(["n1", "n2"])
STEP = s.one_of(
    s.tuples(s.just("job"), s.sampled_from(["ADDED", "MODIFIED", "DELETED"]), NAMESPACES, NAMES, s.booleans()),
    s.tuples(s.just("pod"), s.sampled_from(["ADDED", "MODIFIED", "DELETED"]), NAMESPACES, NAMES,
             s.sampled_from(["Pending", "Running", "Succeeded", "Failed"])),
    s.tuples(s.just("list"), s.just(""), NAMESPACES, NAMES, s.booleans()),
    s.tuples(s.just("created"), s.just(""), NAMESPACES, NAMES, s.booleans()),
)


@settings(max_examples=200, deadline=None)
@given(s.lists(STEP, max_size=40))
def test_indexes_match_a_full_scan(steps):
    cache = JobCache()
    for rv, (kind, event, ns, name, value) in enumerate(steps, start=1):
        if kind == "job":
            cache.jobs.apply(event, job(ns, name, rv, value))
        elif kind == "pod":
            cache.pods.apply(event, pod(ns, f"{name}-x", name, rv, value))
        elif kind == "list":  # a fresh list of Jobs: what the cache holds, with one more changed
            items = [dict(o) for o in cache.jobs.items.values()] + [job(ns, name, rv, value)]
            cache.jobs.replace(list({(o["metadata"]["namespace"], o["metadata"]["name"]): o
                                     for o in items}.values()), str(rv))
        else:
            cache.created(job(ns, name, rv, value))
        for scope in (None, "n1", "n2"):
            jobs = [(k[0], o) for k, o in cache.jobs.items.items() if scope in (None, k[0])]
            pods = [(k[0], o) for k, o in cache.pods.items.items() if scope in (None, k[0])]
            assert cache.slots_held(scope) == job_state.slots_held(jobs, pods)
        for ns in ("n1", "n2"):
            for name in ("a", "b", "c", "d"):
                expected = [p for k, p in cache.pods.items.items()
                            if k[0] == ns and job_state.job_name_of_pod(p) == name]
                assert sorted(p["metadata"]["name"] for p in cache.pods_of(ns, name)) == \
                    sorted(p["metadata"]["name"] for p in expected)
