"""Issue 5 through the sandbox with the real operator, real kopf, real Redis, real kubectl: scheduled
syncs (one run per tick, concurrency policies, suspend/resume, missed ticks, outage catch-up, two
replicas), run-now, GitOps re-apply, and the worker connection Secret.

Scheduled time is moved with the operator's clock knob (RECEIPTSYNC_TEST_CLOCK_OFFSET_FILE, see
``Env.set_clock``), never by waiting for minutes. Each test first puts the clock a day behind real
time: the first tick of a new resource then comes after its creation in real time, and nothing runs
until the test moves the clock to it.
"""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from receiptsync_common import contract as c
from receiptsync_sandbox.testing import wait_until

pytestmark = pytest.mark.slow

SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start(env, **operator_env):
    env.set_clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    op = env.start_operator(**operator_env)
    env.apply(env.secret())
    return op


def next_ticks(env, *names, after: dt.datetime | None = None) -> dict[str, dt.datetime]:
    def ready():
        found = {n: env.status(n).get("nextScheduleTime") for n in names}
        if all(found.values()) and (after is None or all(parse(v) > after for v in found.values())):
            return {n: parse(v) for n, v in found.items()}
        return None
    return wait_until(ready, timeout=15, message=f"nextScheduleTime of {names}")


def advance(env, *names, after: dt.datetime | None = None) -> dt.datetime:
    """Move the clock just past the next tick of all ``names``; returns that tick."""
    tick = max(next_ticks(env, *names, after=after).values())
    env.set_clock(tick + SECOND)
    return tick


def run_count(env, name) -> int:
    return int(env.status(name).get("runId") or 0)


def run_entry(status, run_id):
    return next(r for r in status.get("runs") or [] if r["runId"] == run_id)


def test_one_run_per_tick_suspend_resume_and_run_now(env):
    """The acceptance scenario: "*/1 * * * *" runs once per minute, suspend stops it, run-now runs
    at once, and `kubectl get rsync -o wide` shows SCHEDULE and NEXT."""
    start(env)
    env.apply(env.rsync("every", schedule="*/1 * * * *", query="standin:duration=0.2"))
    first = next_ticks(env, "every")["every"]
    time.sleep(1)
    assert run_count(env, "every") == 0 and env.jobs() == []  # nothing before the first tick

    tick = None
    for i in (1, 2, 3):
        tick = advance(env, "every", after=tick)
        done = env.wait_status("every", lambda s: s.get("runId") == i and s.get("phase") == c.PHASE_FINISHED,
                               message=f"run {i} finished")
        assert done["lastScheduleTime"] == stamp(tick)
        assert done["nextScheduleTime"] == stamp(tick + MINUTE)
        entry = run_entry(done, i)
        assert entry["trigger"] == "schedule" and entry["scheduleTime"] == stamp(tick)
    assert tick == first + 2 * MINUTE  # ticks come from the schedule, one minute apart
    time.sleep(1.5)
    assert run_count(env, "every") == 3 and len(env.jobs()) == 3  # one run per tick, no more

    wide = env.kubectl("get", "rsync", "every", "-o", "wide").stdout
    header, row = wide.splitlines()[:2]
    for column in ("SCHEDULE", "LAST-SYNC", "NEXT"):
        assert column in header
    assert "*/1 * * * *" in row and "Finished" in row

    # run-now: one run at once, without any tick.
    env.kubectl("annotate", "rsync", "every", f"{c.RUN_NOW_ANNOTATION}=now-1")
    now_run = env.wait_status("every", lambda s: s.get("runId") == 4 and s.get("phase") == c.PHASE_FINISHED,
                              timeout=10, message="run-now run")
    assert run_entry(now_run, 4)["trigger"] == "run-now" and now_run["observedRunNow"] == "now-1"
    assert now_run["lastScheduleTime"] == stamp(tick)  # not a scheduled run

    # suspend: ticks start nothing, NEXT is cleared.
    env.kubectl("patch", "rsync", "every", "--type=merge", "-p", json.dumps({"spec": {"suspend": True}}))
    env.wait_status("every", lambda s: "nextScheduleTime" not in s, timeout=10, message="NEXT cleared")
    env.set_clock(tick + 3 * MINUTE + SECOND)
    time.sleep(2)
    assert run_count(env, "every") == 4
    # resume: like CronJob, the most recent missed tick runs once, then the schedule goes on.
    env.kubectl("patch", "rsync", "every", "--type=merge", "-p", json.dumps({"spec": {"suspend": False}}))
    caught_up = env.wait_status("every", lambda s: s.get("runId") == 5 and s.get("phase") == c.PHASE_FINISHED,
                                timeout=10, message="catch-up after resume")
    assert caught_up["lastScheduleTime"] == stamp(tick + 3 * MINUTE)
    time.sleep(1.5)
    assert run_count(env, "every") == 5 and len(env.jobs()) == 5
    assert "MissedSchedule" in [e["reason"] for e in env.events("every")]


def test_concurrency_policies(env):
    """One tick while a run is going: Forbid skips it (for good), Replace stops the old run, Allow
    runs both side by side and tracks both to the end."""
    start(env)
    env.apply(env.rsync("forbid", schedule="*/1 * * * *", query="standin:duration=6"),
              env.rsync("replace", schedule="*/1 * * * *", concurrencyPolicy="Replace",
                        query="standin:hang_attempts=1,duration=0.2"),
              env.rsync("allow", schedule="*/1 * * * *", concurrencyPolicy="Allow",
                        query="standin:duration=6,scanned=60,saved=6"))
    names = ("forbid", "replace", "allow")
    t1 = advance(env, *names)
    for name in names:
        env.wait_phase(name, c.PHASE_STARTED, timeout=15)
    t2 = advance(env, *names, after=t1)

    # Forbid: no second run; the tick is remembered as skipped.
    skipped = env.wait_status("forbid", lambda s: s.get("lastSkippedScheduleTime") == stamp(t2), timeout=10)
    assert skipped["runId"] == 1 and skipped["lastScheduleTime"] == stamp(t1)
    # Replace: run 1 stopped and marked, its Job deleted; run 2 (attempt 1 of a fresh run) goes on.
    replaced = env.wait_status("replace", lambda s: s.get("runId") == 2 and s.get("phase") == c.PHASE_FINISHED,
                               timeout=20, message="replacing run finished")
    old = run_entry(replaced, 1)
    assert old["phase"] == c.PHASE_FAILED and old["reason"] == c.REASON_REPLACED
    replace_jobs = [j["metadata"]["name"] for j in env.jobs()
                    if j["metadata"]["labels"][c.LABEL_SYNC_NAME] == "replace"]
    assert not any(name.endswith("-r1-a1") for name in replace_jobs)
    assert c.REASON_REPLACED in [e["reason"] for e in env.events("replace")]
    # Allow: run 2 started while run 1 was still going; both finish and both are in status.runs.
    both = env.wait_status("allow", lambda s: s.get("runId") == 2 and s.get("phase") == c.PHASE_FINISHED
                           and run_entry(s, 1)["phase"] == c.PHASE_FINISHED, timeout=25, message="both runs")
    assert run_entry(both, 1)["messagesScanned"] == 60 and run_entry(both, 2)["scheduleTime"] == stamp(t2)
    first_done = parse(run_entry(both, 1)["finishTime"])
    second_started = parse(run_entry(both, 2)["startTime"])
    assert second_started < first_done  # they overlapped

    # Forbid's run 1 ends; the skipped tick never runs late; the next tick does.
    env.wait_phase("forbid", c.PHASE_FINISHED, timeout=15)
    time.sleep(1.5)
    assert run_count(env, "forbid") == 1
    assert "ScheduleSkipped" in [e["reason"] for e in env.events("forbid")]
    t3 = advance(env, "forbid", after=t2)
    done = env.wait_status("forbid", lambda s: s.get("runId") == 2 and s.get("phase") == c.PHASE_FINISHED, timeout=15)
    assert done["lastScheduleTime"] == stamp(t3)


def test_outage_catch_up_once_and_missed_deadline(env):
    """The operator is down for ten minutes of ticks: a sync whose startingDeadlineSeconds still
    covers the latest tick runs once for it (not ten times); one whose deadline passed runs nothing."""
    op = start(env)
    env.apply(env.rsync("tight", schedule="*/1 * * * *", startingDeadlineSeconds=30, query="standin:duration=0.2"),
              env.rsync("loose", schedule="*/1 * * * *", startingDeadlineSeconds=120, query="standin:duration=0.2"))
    t1 = advance(env, "tight", "loose")
    for name in ("tight", "loose"):
        env.wait_status(name, lambda s: s.get("runId") == 1 and s.get("phase") == c.PHASE_FINISHED)
    op.stop()
    latest = t1 + 10 * MINUTE
    env.set_clock(latest + 40 * SECOND)  # the latest missed tick is 40 s old when the operator is back
    env.start_operator()
    loose = env.wait_status("loose", lambda s: s.get("runId") == 2 and s.get("phase") == c.PHASE_FINISHED,
                            timeout=20, message="catch-up run")
    assert loose["lastScheduleTime"] == stamp(latest)
    tight = env.wait_status("tight", lambda s: s.get("lastSkippedScheduleTime") == stamp(latest), timeout=10)
    assert tight["runId"] == 1 and tight["nextScheduleTime"] == stamp(latest + MINUTE)
    time.sleep(1.5)
    assert run_count(env, "loose") == 2 and run_count(env, "tight") == 1
    assert "MissedSchedule" in [e["reason"] for e in env.events("tight")]
    assert "MissedSchedule" in [e["reason"] for e in env.events("loose")]  # nine ticks skipped


def test_two_replicas_one_run_per_tick_and_failover(env):
    """Only the leader schedules; after a failover the new leader goes on from status. Both replicas
    get the same metrics port: the second logs one ERROR and works without /metrics."""
    env.set_clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    a = env.start_operator(wait=False)
    b = env.start_operator(wait=False, **{c.OPERATOR_ENV_METRICS_PORT: a.env[c.OPERATOR_ENV_METRICS_PORT]})
    leader = wait_until(lambda: next((op for op in (a, b) if op.logged("leading")), None), timeout=20)
    standby = b if leader is a else a
    env.apply(env.secret())
    env.apply(env.rsync("shared", schedule="*/1 * * * *", query="standin:duration=0.2"))
    tick = None
    for i in (1, 2):
        tick = advance(env, "shared", after=tick)
        env.wait_status("shared", lambda s: s.get("runId") == i and s.get("phase") == c.PHASE_FINISHED)
    leader.stop()
    standby.wait_leading(timeout=15)
    tick = advance(env, "shared", after=tick)
    done = env.wait_status("shared", lambda s: s.get("runId") == 3 and s.get("phase") == c.PHASE_FINISHED, timeout=20)
    assert done["lastScheduleTime"] == stamp(tick)
    time.sleep(1.5)
    assert run_count(env, "shared") == 3 and len(env.jobs()) == 3
    assert len(leader.logged("run queued")) == 2 and len(standby.logged("run queued")) == 1
    errors = [line for op in (a, b) for line in op.lines() if "metrics port" in line.get("message", "")]
    assert len(errors) == 1 and str(errors[0].get("severity", errors[0].get("levelname", ""))).upper() == "ERROR"
    assert b.env[c.OPERATOR_ENV_POD_NAME] in {a.identity, b.identity}


def _apply_file(env, path, server_side: bool):
    args = ["apply", "-f", str(path)] + (["--server-side"] if server_side else [])
    env.kubectl(*args)


def test_reapply_is_a_no_op_and_edits_behave(env, tmp_path):
    """GitOps: re-applying the same manifest (client-side and server-side apply) starts nothing and
    writes nothing; a one-off's edit runs once, a scheduled one's edit runs nothing until its tick."""
    start(env)
    manifests = {}
    for name, spec in (("once-csa", {}), ("once-ssa", {}),
                       ("sched-csa", {"schedule": "0 0 1 1 *"}), ("sched-ssa", {"schedule": "0 0 1 1 *"})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(env.rsync(name, query="standin:duration=0.2", **spec)))
        manifests[name] = path
        _apply_file(env, path, server_side=name.endswith("ssa"))
    for name in ("once-csa", "once-ssa"):
        env.wait_phase(name, c.PHASE_FINISHED)
    next_ticks(env, "sched-csa", "sched-ssa")
    time.sleep(1.5)  # let deferred writes settle
    before = {n: env.get(c.PLURAL, n) for n in manifests}
    for name, path in manifests.items():
        _apply_file(env, path, server_side=name.endswith("ssa"))
    time.sleep(3)
    for name in manifests:
        after = env.get(c.PLURAL, name)
        assert after["metadata"]["resourceVersion"] == before[name]["metadata"]["resourceVersion"], name
        assert after["status"] == before[name]["status"]
        assert not after["metadata"].get("labels")  # the operator never adds labels
        assert after["spec"] == before[name]["spec"]
    assert len(env.jobs()) == 2

    # Edits: the one-off runs once more; the scheduled one does not run (its next tick will use it).
    for name in ("once-ssa", "sched-ssa"):
        body = json.loads(manifests[name].read_text())
        body["spec"]["query"] = "standin:duration=0.1,scanned=7"
        manifests[name].write_text(json.dumps(body))
        _apply_file(env, manifests[name], server_side=True)
    edited = env.wait_status("once-ssa", lambda s: s.get("runId") == 2 and s.get("phase") == c.PHASE_FINISHED)
    assert edited["observedGeneration"] == 2 and edited["progress"]["messagesScanned"] == 7
    time.sleep(1.5)
    assert run_count(env, "sched-ssa") == 0 and len(env.jobs()) == 3


def test_impossible_schedule_or_time_zone_fails_naming_the_field(env):
    start(env)
    env.apply(env.rsync("feb30", schedule="0 0 30 2 *"),
              env.rsync("mars", schedule="@hourly", timeZone="Mars/Olympus"))
    for name, field in (("feb30", "spec.schedule"), ("mars", "spec.timeZone")):
        failed = env.wait_phase(name, c.PHASE_FAILED, reason=c.REASON_INVALID_SPEC)
        assert field in failed["message"] and "nextScheduleTime" not in failed
        assert failed["observedGeneration"] == 1
    rv = env.get(c.PLURAL, "feb30")["metadata"]["resourceVersion"]
    time.sleep(1.5)
    assert env.get(c.PLURAL, "feb30")["metadata"]["resourceVersion"] == rv and env.jobs() == []


def test_worker_connection_urls_from_a_secret(env):
    env.start_operator(**{c.OPERATOR_ENV_WORKER_CONNECTION_SECRET: "receiptsync-connections"})
    env.apply(env.secret())
    env.apply(env.rsync("nosecret", query="standin:duration=0.2"))
    # The operator reads no Secret (issue 14): the pod's CreateContainerConfigError names it.
    failed = env.wait_phase("nosecret", c.PHASE_FAILED, reason=c.REASON_WORKER_CONFIG_ERROR, timeout=30)
    assert "receiptsync-connections" in failed["message"] and "CreateContainerConfigError" in failed["message"]
    env.kubectl("delete", "job", "--all")
    env.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "receiptsync-connections"},
               "stringData": {c.CONNECTION_SECRET_REDIS_URL_KEY: env.redis_url,
                              c.CONNECTION_SECRET_DATABASE_URL_KEY: "postgresql://u:pw@db.invalid/x"}})
    env.apply(env.rsync("withsecret", query="standin:duration=0.2"))
    env.wait_phase("withsecret", c.PHASE_FINISHED)  # the worker reached Redis through the Secret
    (job,) = env.jobs()
    variables = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "value" not in variables[c.ENV_REDIS_URL] and "value" not in variables[c.ENV_DATABASE_URL]
    assert variables[c.ENV_REDIS_URL]["valueFrom"]["secretKeyRef"]["name"] == "receiptsync-connections"
    assert "pw@" not in json.dumps(job)


@pytest.mark.skipif(not __import__("os").environ.get("RECEIPTSYNC_REALTIME_TESTS"),
                    reason="waits for a real minute boundary (up to 70 s); set RECEIPTSYNC_REALTIME_TESTS=1")
def test_real_time_tick(env):
    """No clock knob: a "*/1 * * * *" sync runs at the next real minute."""
    env.clock_file.unlink(missing_ok=True)
    env.start_operator()
    env.apply(env.secret())
    env.apply(env.rsync("realtime", schedule="*/1 * * * *", query="standin:duration=0.2"))
    tick = next_ticks(env, "realtime")["realtime"]
    done = env.wait_status("realtime", lambda s: s.get("runId") == 1 and s.get("phase") == c.PHASE_FINISHED,
                           timeout=75, message="a run at the real tick")
    assert done["lastScheduleTime"] == stamp(tick)
    started = parse(run_entry(done, 1)["startTime"])
    assert dt.timedelta(0) <= started - tick < dt.timedelta(seconds=3)
