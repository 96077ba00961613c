"""P6 the cost of a sync that finds nothing: a scheduled incremental ReceiptSync (hourly) whose mailbox
got no new mail since its last run. Most scheduled syncs are this one; at 10,000 tenants syncing
hourly its cost is the bill.

Through the operator as the chart installs it, one run at a time. Scheduled time is moved to each
tick with the operator's clock knob (RECEIPTSYNC_TEST_CLOCK_OFFSET_FILE, which only decides which
tick is due), so a sample does not wait for the hour. Per run:
* worker CPU: user + sys of the pod's process, exact, from the node agent's reaped-children CPU
  (the container process is its child; nothing else of it ends meanwhile);
* wall time from dispatch (kube-apiserver receiving the operator's create of the worker Job, from the
  audit log) to Finished (the status version the bench's watch received), and the way there: pod
  created, bound by the scheduler, worker JOB_START and JOB_DONE (its own log).
Then where the worker's time goes: the same job started directly as a process under py-spy, samples
sorted into interpreter start, imports (by package), token refresh, Gmail client construction, DB
connect, Redis, Gmail calls and the rest.
"""
from __future__ import annotations

import collections
import datetime as dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import redis

from receiptsync_common import contract
from receiptsync_sandbox.gmail.auth import authorized_user

from . import direct
from .cluster import IDLE_MAILBOX, BenchWorld, Cluster, audit_time, retries_of, wait_for
from .common import Figure, children_cpu_seconds, say, summary

CPU_GOAL, WALL_GOAL = 1.0, 3.0
REDIS_DB = 7
SCHEDULE = "0 * * * *"


def run(cluster: Cluster, samples: int, profile_runs: int) -> tuple[list[Figure], dict[str, Any]]:
    clock = cluster.work / "p6-clock-offset"
    set_clock(clock, dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    # Runs here are seconds apart, not an hour: with the cursor's index-lag overlap at 0 (a cluster
    # admin's worker.extraEnv) the cursor moves at once, as it does between hourly runs, so from the
    # second run on every run reads Gmail history since it, as scheduled runs do.
    overlap = json.dumps([{"name": "RECEIPTSYNC_CURSOR_OVERLAP_SECONDS", "value": "0"}])
    world = BenchWorld(cluster, "p6", REDIS_DB, 4, [IDLE_MAILBOX],
                       chart_values=("--set-json", f"worker.extraEnv={overlap}"),
                       **{contract.OPERATOR_ENV_TEST_CLOCK_OFFSET_FILE: str(clock)})
    try:
        spec = {"mode": contract.MODE_INCREMENTAL, "schedule": SCHEDULE, "fromDate": None, "toDate": None}
        cluster.create_receiptsync(world.ns, "p6", "gmail-00", **spec)
        tick = None
        for run_id in (1, 2):  # the initial sync; a run that sets the cursor
            tick = advance(world, clock, tick)
            wait_run(world, run_id, 90)
        say(f"P6: initial runs Finished; now {samples} scheduled runs that find no new mail")
        agent = cluster.node_agent_pid()
        measured = []
        for index in range(samples):
            run_id = index + 3
            wait_pods_done(cluster, world.ns)
            cpu0, mark = children_cpu_seconds(agent), world.sandbox.audit_mark()
            tick = advance(world, clock, tick)
            status = wait_run(world, run_id, 60)
            finished_at = finished_seen(world, run_id)
            wait_pods_done(cluster, world.ns)
            cpu = (children_cpu_seconds(agent) or 0.0) - (cpu0 or 0.0)
            measured.append(sample(cluster, world, status, mark, cpu, finished_at))
            wall = measured[-1].get("wall", float("nan"))
            say(f"P6: run {run_id}: worker CPU {cpu:.2f}s, dispatch → Finished {wall:.2f}s")
        job = status
    finally:
        world.close()
    profile = profile_direct(cluster, world, job, profile_runs) if profile_runs else None
    cpu_stats = summary([m["cpu"] for m in measured])
    wall_stats = summary([m["wall"] for m in measured if "wall" in m])
    stages = {key: summary([m[key] for m in measured if key in m])["p50"] for key in
              ("pod_created", "pod_bound", "job_start", "job_done", "wall")}
    result = {"namespace": world.ns, "samples": measured, "worker_cpu_seconds": cpu_stats,
              "dispatch_to_finished_seconds": wall_stats, "stages_p50_seconds_after_dispatch": stages,
              "scanned": [m.get("messages_scanned") for m in measured], "profile": profile}
    path = ", ".join(f"{k.replace('_', ' ')} {v:.2f}s" for k, v in stages.items() if v is not None and k != "wall")
    where = ", ".join(f"{name} {share:.0f}%" for name, share in (profile or {}).get("categories", [])[:6])
    return [
        Figure("P6", "worker CPU, scheduled run finding no new mail (p50)", cpu_stats["p50"], "s", "",
               f"{len(measured)} runs; user+sys of the pod's process"),
        Figure("P6", "worker CPU, scheduled run finding no new mail (max)", cpu_stats["max"], "s", f"<= {CPU_GOAL}",
               f"where it goes (direct run, py-spy): {where}" if where else ""),
        Figure("P6", "dispatch → Finished (p50)", wall_stats["p50"], "s", "", f"after dispatch (p50): {path}"),
        Figure("P6", "dispatch → Finished (max)", wall_stats["max"], "s", f"<= {WALL_GOAL}",
               "the operator's Job create → Finished seen by a watch"),
    ], result


def set_clock(path: Path, moment: dt.datetime) -> None:
    """The operator's scheduler reads ``moment`` now (and runs on in real time)."""
    offset = (moment - dt.datetime.now(dt.timezone.utc)).total_seconds()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{offset:.3f}")
    tmp.replace(path)


def advance(world: BenchWorld, clock: Path, after: dt.datetime | None) -> dt.datetime:
    """Move the scheduler's clock just past the next tick (after ``after``); returns the tick."""
    def next_tick():
        text = (((world.watch.latest.get("p6") or {}).get("status")) or {}).get("nextScheduleTime")
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
        return moment if moment and (after is None or moment > after) else None
    tick = wait_for(next_tick, 30, "nextScheduleTime")
    set_clock(clock, tick + dt.timedelta(seconds=1))
    return tick


def wait_run(world: BenchWorld, run_id: int, timeout: float) -> dict:
    def done(objects: dict[str, dict]) -> bool:
        status = (objects.get("p6") or {}).get("status") or {}
        return status.get("runId") == run_id and status.get("phase") in contract.TERMINAL_PHASES
    world.watch.wait(done, timeout, f"P6 run {run_id}")
    status = world.watch.latest["p6"]["status"]
    if status.get("phase") != contract.PHASE_FINISHED:
        raise RuntimeError(f"P6 run {run_id} ended {status.get('phase')}: {status.get('message')}")
    return status


def finished_seen(world: BenchWorld, run_id: int) -> float | None:
    for received, _kind, obj in world.watch.snapshot():
        status = obj.get("status") or {}
        if status.get("runId") == run_id and status.get("phase") == contract.PHASE_FINISHED:
            return received
    return None


def wait_pods_done(cluster: Cluster, namespace: str) -> None:
    """Every worker pod has ended and been reaped (the node agent reports a phase only after that)."""
    wait_for(lambda: all((p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                         for p in cluster.pods(namespace)), 60, "worker pods ended", interval=0.1)


def sample(cluster: Cluster, world: BenchWorld, status: dict, mark: int, cpu: float,
           finished_at: float | None) -> dict[str, Any]:
    job_name, job_id = status.get("workerJob") or "", status.get("jobId") or ""
    out: dict[str, Any] = {"run_id": status.get("runId"), "cpu": cpu}
    dispatched = None
    for record in world.sandbox.audit(since_line=mark):  # this run's only: one run at a time
        ref = record.get("objectRef") or {}
        if record.get("verb") != "create" or ref.get("namespace") != world.ns:
            continue
        name, when = ref.get("name") or "", audit_time(record)
        if ref.get("resource") == "jobs" and name == job_name and when:
            dispatched = when
        elif ref.get("resource") == "pods" and ref.get("subresource") == "binding" and when:
            out["pod_bound"] = when
        elif ref.get("resource") == "pods" and not ref.get("subresource") and when:
            out.setdefault("pod_created", when)  # logged without the generated name
    start = cluster.log_events(world.ns, contract.LOG_JOB_START).get(job_id)
    done = cluster.log_events(world.ns, contract.LOG_JOB_DONE).get(job_id) or {}
    out["job_start"], out["job_done"] = (start or {}).get("epoch"), done.get("epoch")
    out["messages_scanned"], out["used_history"] = done.get("messages_scanned"), done.get("used_history")
    out["node_agent_retries"] = retries_of(cluster.node_agent_retries(world.ns), job_name)
    if dispatched is None:
        return {"run_id": out["run_id"], "cpu": cpu, "error": "no Job create in the audit log"}
    for key in ("pod_created", "pod_bound", "job_start", "job_done"):
        if out.get(key) is not None:
            out[key] -= dispatched
    if finished_at is not None:
        out["wall"] = finished_at - dispatched
    return out


def profile_direct(cluster: Cluster, world: BenchWorld, status: dict, runs: int) -> dict[str, Any]:
    """The same no-new-mail job (next run id, same business, same mailbox) started directly as a
    process: once plain (its CPU), then ``runs`` times under py-spy; samples put in categories."""
    rs = cluster.request("GET", f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{world.ns}/{contract.PLURAL}/p6")
    credentials = json.dumps(authorized_user(IDLE_MAILBOX, cluster.env["GMAIL_TOKEN_URI"], client_id="bench",
                                             client_secret="bench-secret"))
    connections = {"redis": world.redis_url, "database": cluster.env["DATABASE_URL"],
                   "gmail": cluster.env["GMAIL_API_ENDPOINT"]}
    folder = cluster.work / "p6-direct"
    client = redis.Redis.from_url(world.redis_url)
    run_id = int(status.get("runId") or 1)
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    plain, raw = [], []
    for index in range(runs + 1):
        run_id += 1
        payload = direct.payload_for(world.ns, "p6", rs["spec"], run_id, rs["metadata"]["uid"])
        job = direct.DirectRun(payload, credentials)
        out = folder / f"pyspy-{index}.txt"
        prefix = () if index == 0 or pyspy is None else (
            pyspy, "record", "-r", "500", "--format", "raw", "-o", str(out), "--")
        outcome = direct.run_one(job, client, connections, folder, prefix)
        if index == 0:
            plain.append(outcome.cpu_seconds)
        elif out.exists():
            raw.append(out)
    done = direct.job_done(folder / f"{job.payload.job_id}.log") or {}
    return {"plain_process_cpu_seconds": plain[0] if plain else None, "profiled_runs": len(raw),
            "last_scanned": done.get("messages_scanned"), **categorize(raw)}


# py-spy names modules of the `google` namespace package without it.
SHORT_NAMES = {"auth": "google.auth", "oauth2": "google.oauth2", "api_core": "google.api_core"}
CATEGORIES = (  # (name, a frame that puts a sample in it), first match wins, leaf-most frame decides
    ("token refresh", "refresh (google/oauth2/credentials.py"),
    ("Gmail client construction", "build_from_document ("),
    ("Gmail client construction", "GmailResources"),
    ("DB connect", "connect (psycopg/connection.py"),
)


def categorize(paths: list[Path]) -> dict[str, Any]:
    """py-spy raw stacks → share of samples per category: imports by top-level package, and the run's
    parts (token refresh, client construction, DB connect, Redis, Gmail calls, other)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            total += int(count)
            counts[_category(stack.split(";"))] += int(count)
    shares = [(name, 100.0 * n / total) for name, n in counts.most_common()] if total else []
    return {"samples": total, "categories": shares}


def _category(frames: list[str]) -> str:
    if any(f.startswith("_find_and_load") for f in frames):
        for frame in frames:
            if frame.startswith("<module> (") and not frame.startswith(("<module> (receiptsync", "<module> (<")):
                package = frame[len("<module> ("):].split("/")[0].split(".py")[0].split(":")[0]
                return f"import {SHORT_NAMES.get(package, package)}"
        return "import (own modules)"
    if any(f.startswith("<module> (site.py") or "site.py" in f for f in frames[:2]):
        return "interpreter start"
    for name, marker in CATEGORIES:
        if any(marker in f for f in frames):
            return name
    text = ";".join(frames)
    if "googleapiclient/http.py" in text or "httplib2" in text:
        return "Gmail calls"
    if "redis/" in text:
        return "Redis"
    if "psycopg/" in text:
        return "PostgreSQL queries"
    return "other"
