"""The next status from a heartbeat, a failure, a retry; conditions; status.runs."""
from __future__ import annotations

import datetime as dt

from receiptsync_common import contract as c
from receiptsync_operator import status as st
from receiptsync_operator.status import apply

NOW = dt.datetime(2025, 6, 15, 12, 0, 0, tzinfo=dt.timezone.utc)
SPEC = {"businessId": "acme"}
JOB = "ns.sync.abcdef12.r1.a1"


def queued_status(**kw):
    s = apply({}, st.queued({}, run_id=1, job_id=JOB, now=NOW, generation=1, date_range=None, run_now=None,
                            trigger="generation", spec=SPEC))
    s.update(kw)
    return s


def hb(phase, **kw):
    base = {c.HB_JOB_ID: JOB, c.HB_PHASE: phase, c.HB_TIME: "2025-06-15T12:00:05Z"}
    base.update(kw)
    return base


def test_queued_sets_everything_for_a_new_run():
    s = queued_status()
    assert s["phase"] == c.PHASE_QUEUED and s["reason"] == c.REASON_WAITING_FOR_WORKER
    assert s["runId"] == 1 and s["attempt"] == 1 and s["jobId"] == JOB
    assert s["enqueuedAt"] == "2025-06-15T12:00:00Z" and s["observedGeneration"] == 1
    assert s["progress"] == {"messagesScanned": 0, "savedReceipts": 0}
    conds = {x["type"]: x for x in s["conditions"]}
    assert conds["Complete"]["status"] == "False" and conds["Failed"]["status"] == "False"
    assert s["runs"][-1]["runId"] == 1 and s["runs"][-1]["phase"] == c.PHASE_QUEUED
    assert "dateRange" not in s  # incremental without dates: the worker tells


def test_queued_clears_the_previous_run():
    old = {"phase": "Finished", "finishedAt": "x", "startedAt": "y", "workerJob": "j", "runId": 4}
    patch = st.queued(old, run_id=5, job_id=JOB, now=NOW, generation=2, date_range=("2025-01-01", "2025-01-31"),
                      run_now=None, trigger="generation", spec=SPEC)
    s = apply(old, patch)
    assert "finishedAt" not in s and "startedAt" not in s and "workerJob" not in s
    assert s["dateRange"] == {"from": "2025-01-01", "to": "2025-01-31"}


def test_started_heartbeat_is_a_transition_with_range():
    s = queued_status()
    u = st.from_heartbeat(s, SPEC, hb("Started", date_from="2025-01-01", date_to="2025-06-15", worker="pod-1"), NOW)
    assert u.transition and u.failure is None
    assert u.patch["phase"] == c.PHASE_STARTED and u.patch["reason"] == c.REASON_SYNCING
    assert u.patch["startedAt"] == "2025-06-15T12:00:05Z" and u.patch["lastHeartbeatTime"] == "2025-06-15T12:00:05Z"
    assert u.patch["dateRange"] == {"from": "2025-01-01", "to": "2025-06-15"}
    assert u.event is None  # the status says it; Events are for a run's end and for trouble


def test_progress_heartbeat_is_not_a_transition():
    s = apply(queued_status(), st.from_heartbeat(queued_status(), SPEC, hb("Started"), NOW).patch)
    u = st.from_heartbeat(s, SPEC, hb("Started", messages_scanned="10", saved_receipts="3",
                                      time="2025-06-15T12:00:07Z"), NOW)
    assert not u.transition
    assert u.patch == {"lastHeartbeatTime": "2025-06-15T12:00:07Z",
                       "progress": {"messagesScanned": 10, "savedReceipts": 3}}


def test_a_heartbeat_with_no_news_moves_last_heartbeat_time_only_every_half_minute():
    s = apply(queued_status(), st.from_heartbeat(queued_status(), SPEC, hb("Started"), NOW).patch)
    assert st.from_heartbeat(s, SPEC, hb("Started", time="2025-06-15T12:00:25Z"), NOW) is None
    later = st.from_heartbeat(s, SPEC, hb("Started", time="2025-06-15T12:00:36Z"), NOW)
    assert later.patch == {"lastHeartbeatTime": "2025-06-15T12:00:36Z"} and not later.transition
    news = st.from_heartbeat(s, SPEC, hb("Started", messages_scanned="1", time="2025-06-15T12:00:06Z"), NOW)
    assert news.patch["progress"]["messagesScanned"] == 1


def test_finished_heartbeat_completes_the_run():
    s = apply(queued_status(), st.from_heartbeat(queued_status(), SPEC, hb("Started"), NOW).patch)
    u = st.from_heartbeat(s, SPEC, hb("Finished", messages_scanned="42", saved_receipts="7"), NOW)
    done = apply(s, u.patch)
    assert done["phase"] == c.PHASE_FINISHED and done["reason"] == c.REASON_SUCCEEDED
    assert done["progress"] == {"messagesScanned": 42, "savedReceipts": 7}
    assert done["finishedAt"] == "2025-06-15T12:00:00Z"
    assert st.condition_status(done, "Complete") == "True" and st.condition_status(done, "Failed") == "False"
    assert done["runs"][-1]["phase"] == c.PHASE_FINISHED and done["runs"][-1]["messagesScanned"] == 42
    assert "42" in done["message"] and "7" in done["message"]


def test_finished_without_started_still_sets_started_at():
    u = st.from_heartbeat(queued_status(), SPEC, hb("Finished"), NOW)
    assert u.patch["phase"] == c.PHASE_FINISHED and u.patch["startedAt"]


def test_failed_heartbeat_hands_the_failure_over():
    failed = hb("Failed", reason=c.REASON_GMAIL_AUTH_ERROR, message="invalid_grant")
    u = st.from_heartbeat(queued_status(), SPEC, failed, NOW)
    assert u.failure == (c.REASON_GMAIL_AUTH_ERROR, "invalid_grant")
    assert "phase" not in u.patch


def test_failed_without_reason_is_worker_error():
    u = st.from_heartbeat(queued_status(), SPEC, hb("Failed"), NOW)
    assert u.failure[0] == c.REASON_WORKER_ERROR


def test_stale_heartbeats_are_ignored():
    s = queued_status()
    assert st.from_heartbeat(s, SPEC, hb("Started", job_id="ns.sync.abcdef12.r1.a0"), NOW) is None
    assert st.from_heartbeat(s, SPEC, {c.HB_PHASE: "Started"}, NOW) is None
    done = {**s, "phase": c.PHASE_FINISHED}
    assert st.from_heartbeat(done, SPEC, hb("Started"), NOW) is None
    assert st.from_heartbeat(done, SPEC, hb("Failed"), NOW) is None


def test_older_progress_after_newer_is_ignored():
    s = {**queued_status(), "phase": c.PHASE_STARTED, "lastHeartbeatTime": "2025-06-15T12:00:10Z"}
    assert st.from_heartbeat(s, SPEC, hb("Started"), NOW) is None


def test_replaying_a_heartbeat_is_idempotent():
    s = queued_status()
    once = apply(s, st.from_heartbeat(s, SPEC, hb("Started", messages_scanned="5"), NOW).patch)
    assert st.from_heartbeat(once, SPEC, hb("Started", messages_scanned="5"), NOW) is None  # no news: no write


def test_unknown_phase_changes_nothing():
    assert st.from_heartbeat(queued_status(), SPEC, hb("Dancing"), NOW) is None


def test_failed_patch_and_conditions():
    s = {**queued_status(), "phase": c.PHASE_STARTED}
    done = apply(s, st.failed(s, reason=c.REASON_BACKOFF_LIMIT_EXCEEDED, message="gave up", now=NOW, spec=SPEC))
    assert done["phase"] == c.PHASE_FAILED and done["reason"] == c.REASON_BACKOFF_LIMIT_EXCEEDED
    assert st.condition_status(done, "Failed") == "True" and st.condition_status(done, "Complete") == "False"
    assert done["runs"][-1]["phase"] == c.PHASE_FAILED


def test_condition_transition_time_kept_when_unchanged():
    first = st.conditions(None, complete=False, failed=False, reason="Running", message="m", now=NOW, generation=1)
    later = NOW + dt.timedelta(minutes=5)
    second = st.conditions(first, complete=False, failed=True, reason="X", message="m2", now=later, generation=1)
    by = {x["type"]: x for x in second}
    assert by["Complete"]["lastTransitionTime"] == "2025-06-15T12:00:00Z"
    assert by["Failed"]["lastTransitionTime"] == "2025-06-15T12:05:00Z"


def test_invalid_spec_is_a_failed_run():
    s = apply({}, st.invalid_spec({}, message="spec.fromDate: bad", run_id=1, now=NOW, generation=3,
                                  run_now=None, trigger="generation", spec=SPEC))
    assert s["phase"] == c.PHASE_FAILED and s["reason"] == c.REASON_INVALID_SPEC
    assert s["message"] == "spec.fromDate: bad" and s["observedGeneration"] == 3 and s["runId"] == 1
    assert st.condition_status(s, "Failed") == "True"
    assert s["runs"][-1]["reason"] == c.REASON_INVALID_SPEC


def test_retrying_requeues_same_run_next_attempt():
    s = {**queued_status(), "phase": c.PHASE_STARTED, "workerJob": "rs-sync-abcde-r1-a1"}
    new = apply(s, st.retrying(s, reason=c.REASON_WORKER_LOST, detail="no heartbeat for 5s", next_attempt=2,
                               max_attempts=4, job_id="ns.sync.abcdef12.r1.a2", now=NOW, spec=SPEC))
    assert new["phase"] == c.PHASE_QUEUED and new["reason"] == c.REASON_WORKER_LOST
    assert new["attempt"] == 2 and new["runId"] == 1 and new["jobId"].endswith(".a2")
    assert "workerJob" not in new and "attempt 2 of 4" in new["message"]
    assert new["runs"][-1]["attempt"] == 2


def test_waiting_message_and_no_churn():
    s = queued_status()
    p = st.waiting(s, position=2, total=3, max_workers=1)
    assert p["reason"] == c.REASON_WAITING_FOR_WORKER and "2nd in line of 3" in p["message"]
    assert st.waiting(apply(s, p), position=2, total=3, max_workers=1) is None


def test_ordinals():
    assert [st.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


def test_runs_history_trimmed_by_limits():
    runs = []
    for i, phase in enumerate(["Finished", "Failed", "Finished", "Failed", "Finished", "Finished", "Started"], 1):
        runs = st.upsert_run(runs, {"runId": i, "phase": phase})
    kept = st.trim_runs(runs, successful_limit=2, failed_limit=1)
    assert [r["runId"] for r in kept] == [4, 5, 6, 7]
    assert [r["runId"] for r in st.trim_runs(runs, 0, 0)] == [7]


def test_upsert_run_merges():
    runs = st.upsert_run([{"runId": 1, "phase": "Queued", "attempt": 1}], {"runId": 1, "phase": "Started"})
    assert runs == [{"runId": 1, "phase": "Started", "attempt": 1}]


def test_history_limits_defaults():
    assert st.history_limits({}) == (3, 1)
    assert st.history_limits({"successfulRunsHistoryLimit": 0, "failedRunsHistoryLimit": 5}) == (0, 5)


def test_newest_run_is_always_kept_and_remembers_run_now():
    runs = [{"runId": 1, "phase": "Finished"}, {"runId": 2, "phase": "Finished", "runNow": "v"}]
    assert [r["runId"] for r in st.trim_runs(runs, 0, 0)] == [2]


def test_status_fields_from_the_crd():
    from receiptsync_operator.status import status_fields

    crd = {"spec": {"versions": [{"name": "v1alpha1", "schema": {"openAPIV3Schema": {"properties": {
        "status": {"type": "object", "properties": {"phase": {}, "runs": {}}}}}}}]}}
    assert status_fields(crd, "v1alpha1") == {"phase", "runs"}
    assert status_fields(crd, "v2") is None
    open_crd = {"spec": {"versions": [{"name": "v1alpha1", "schema": {"openAPIV3Schema": {"properties": {
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}
    assert status_fields(open_crd, "v1alpha1") is None


# --- history trimming (the one implementation: status.trim_runs) ------------------------------------------
def _run(run_id, phase):
    return {"runId": run_id, "phase": phase, "reason": "", "startTime": "", "completionTime": "",
            "messagesScanned": 0, "savedReceipts": 0, "attempt": 1}


def _ids(runs):
    return [r["runId"] for r in runs]


def test_trim_keeps_newest_of_each_kind_and_active_ones():
    F, X, S, Q = c.PHASE_FINISHED, c.PHASE_FAILED, c.PHASE_STARTED, c.PHASE_QUEUED
    runs = [_run(1, F), _run(2, X), _run(3, F), _run(4, F), _run(5, X), _run(6, F), _run(7, X), _run(8, S), _run(9, Q)]
    assert _ids(st.trim_runs(runs, 3, 1)) == [3, 4, 6, 7, 8, 9]
    assert _ids(st.trim_runs(runs, 1, 2)) == [5, 6, 7, 8, 9]
    assert _ids(st.trim_runs(runs, 0, 0)) == [8, 9]
    assert _ids(st.trim_runs(runs, 10, 10)) == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_trim_orders_by_run_id_whatever_the_input_order():
    runs = [_run(3, "Finished"), _run(10, "Finished"), _run(2, "Failed"), _run(7, "Pending"), _run(11, "Failed")]
    assert _ids(st.trim_runs(runs, 3, 1)) == [3, 7, 10, 11]


def test_trim_does_not_modify_its_input():
    runs = [_run(i, "Finished") for i in range(1, 6)]
    before = [dict(r) for r in runs]
    out = st.trim_runs(runs, 2, 1)
    assert runs == before and _ids(out) == [4, 5]
    assert st.trim_runs([], 3, 1) == []


def test_trim_negative_limits_are_zero_but_the_newest_stays():
    assert _ids(st.trim_runs([_run(1, "Finished"), _run(2, "Failed")], -1, -5)) == [2]


# --- overlapping (Allow) and replaced (Replace) runs ---------------------------------------------------------
def _allow_status():
    """Run 1 still going in the background, run 2 current."""
    return {"runId": 2, "phase": "Started", "jobId": "ns.a.0123abcd.r2.a1", "workerJob": "rs-a-r2-a1", "attempt": 1,
            "progress": {"messagesScanned": 5, "savedReceipts": 1},
            "runs": [{"runId": 1, "phase": "Started", "jobId": "ns.a.0123abcd.r1.a1", "workerJob": "rs-a-r1-a1"},
                     {"runId": 2, "phase": "Started", "jobId": "ns.a.0123abcd.r2.a1"}]}


def test_background_runs_and_active_run():
    s = _allow_status()
    assert _ids(st.background_runs(s)) == [1]
    assert st.has_active_run(s) and st.background_run_of(s, "ns.a.0123abcd.r1.a1")["runId"] == 1
    assert st.background_run_of(s, "ns.a.0123abcd.r2.a1") is None  # that one is the current run
    assert st.is_current_job(s, "ns.a.0123abcd.r2.a1") and not st.is_current_job(s, "ns.a.0123abcd.r1.a1")
    done = {**s, "phase": "Finished", "runs": [{**s["runs"][0], "phase": "Finished"}, s["runs"][1]]}
    assert not st.has_active_run(done)


def test_background_heartbeat_ends_only_its_run():
    s = _allow_status()
    hb = {c.HB_JOB_ID: "ns.a.0123abcd.r1.a1", c.HB_PHASE: "Finished", c.HB_SCANNED: "40", c.HB_SAVED: "4"}
    patch, event = st.background_heartbeat(s, {}, hb, NOW)
    assert set(patch) == {"runs"} and event[1] == "Finished"
    first = next(r for r in patch["runs"] if r["runId"] == 1)
    assert first["phase"] == "Finished" and first["messagesScanned"] == 40 and first["completionTime"]
    after = apply(s, patch)
    assert st.background_heartbeat(after, {}, hb, NOW) is None  # replayed: nothing more
    assert after["phase"] == "Started" and after["runId"] == 2  # the current run is untouched
    failed = st.background_heartbeat(s, {}, {**hb, c.HB_PHASE: "Failed", c.HB_REASON: "GmailApiError"}, NOW)
    assert next(r for r in failed[0]["runs"] if r["runId"] == 1)["reason"] == "GmailApiError"


def test_replaced_stops_every_run_going():
    s = _allow_status()
    patch, stopped = st.replaced(s, new_run_id=3, now=NOW)
    assert sorted(r["runId"] for r in stopped) == [1, 2]
    assert all(r["phase"] == "Failed" and r["reason"] == c.REASON_REPLACED for r in patch["runs"])
    assert next(r for r in patch["runs"] if r["runId"] == 2)["messagesScanned"] == 5
    assert st.replaced({"runId": 1, "phase": "Finished"}, new_run_id=2, now=NOW) == ({}, [])


def test_scheduled_runs_record_their_tick():
    tick = dt.datetime(2025, 6, 15, 11, 0, tzinfo=dt.timezone.utc)
    p = st.queued({}, run_id=1, job_id="j", now=NOW, generation=1, date_range=None, run_now=None,
                  trigger="schedule", spec={}, schedule_time=tick)
    assert p["lastScheduleTime"] == "2025-06-15T11:00:00Z" and p["runs"][-1]["scheduleTime"] == "2025-06-15T11:00:00Z"
    bad = st.invalid_spec({}, message="m", run_id=1, now=NOW, generation=1, run_now=None, trigger="schedule",
                          spec={}, schedule_time=tick)
    assert bad["lastScheduleTime"] == "2025-06-15T11:00:00Z" and bad["phase"] == "Failed"


def test_phase_counts_are_kept_as_statuses_change():
    from receiptsync_operator.resource_cache import Resources

    def body(name, uid, rv, phase=None):
        return {"metadata": {"namespace": "n", "name": name, "uid": uid, "resourceVersion": str(rv)},
                "spec": {}, "status": {"phase": phase} if phase else {}}

    resources = Resources()
    resources.observe(body("a", "1", 1))
    resources.observe(body("b", "2", 1, "Queued"))
    assert resources.phases() == {"None": 1, "Queued": 1}
    resources.patched(("n", "a"), body("a", "1", 2, "Queued"))
    resources.observe(body("b", "2", 3, "Started"))
    resources.observe(body("b", "2", 2, "Queued"))  # older than what we have: status kept
    assert resources.phases() == {"Queued": 1, "Started": 1}
    resources.observe(body("a", "9", 1, "Finished"))  # same name, new object
    resources.forget(("n", "b"))
    resources.forget(("n", "b"))
    assert resources.phases() == {"Finished": 1}


def test_a_config_error_names_the_spec_field_to_fix():
    from receiptsync_operator.status import messages

    missing = messages.pod_trouble("CreateContainerConfigError", "p-1", 'secret "nope" not found')
    assert missing.endswith("(see spec.gmail.secretRef.name)")
    keyless = messages.pod_trouble("CreateContainerConfigError", "p-1", "couldn't find key token.json in Secret a/b")
    assert keyless.endswith("(see spec.gmail.secretRef.key)")
    assert "(see" not in messages.pod_trouble("ErrImagePull", "p-1", 'secret "nope" not found')
