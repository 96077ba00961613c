"""P4 scale-from-zero through the real control plane: with no worker running, create a ReceiptSync and
time until its worker logs JOB_START (the worker's own log line, read from the pod log on disk; same
machine clock). On the way: the operator's Job create, the Job controller's pod create, the
scheduler's binding (kube-apiserver's audit log) and the node agent starting the process. One sample
at a time, each from zero active worker Jobs. Then a burst of 2 × maxWorkers runs: how long after the
queue drains (every queued attempt has its Job) and after the last Finished the active worker Jobs
(the Job controller's own status) are back to zero.
"""
from __future__ import annotations

import time
from typing import Any

from receiptsync_common import contract

from .cluster import (TINY_MAILBOXES, BenchWorld, Cluster, audit_time, node_agent_pause, retries_of, stream_entries,
                      tiny_address, wait_for)
from .common import Figure, say, summary
from .kube import BenchError, Watch, terminal

P95_GOAL = 3.0
REDIS_DB = 4


def run(cluster: Cluster, samples: int, max_workers: int = 4) -> tuple[list[Figure], dict[str, Any]]:
    world = BenchWorld(cluster, "p4", REDIS_DB, max_workers, [tiny_address(i) for i in range(TINY_MAILBOXES)])
    try:
        return _run(cluster, world, samples, max_workers)
    finally:
        world.close()


def _run(cluster: Cluster, world: BenchWorld, samples: int, max_workers: int) -> tuple[list[Figure], dict[str, Any]]:
    namespace, watch = world.ns, world.watch
    say(f"P4: {samples} samples from zero workers, then a burst of {2 * max_workers}")
    mark = world.sandbox.audit_mark()
    applied_at: dict[str, float] = {}  # name -> epoch seconds just before the create call
    for index in range(samples):
        wait_for(lambda: cluster.active_worker_jobs(namespace) == 0, 60, "zero active worker Jobs")
        name = f"p4-{index:03d}"
        applied_at[name] = time.time()
        cluster.create_receiptsync(namespace, name, f"gmail-{index % TINY_MAILBOXES:02d}")
        watch.wait(lambda objects: terminal(objects, [name]), 90, f"{name} to finish")
    wait_for(lambda: cluster.active_worker_jobs(namespace) == 0, 60, "zero active worker Jobs")
    job_names = {((watch.latest.get(n) or {}).get("status") or {}).get("workerJob"): n for n in applied_at}
    steps = _steps(world.sandbox.audit(since_line=mark), namespace, job_names)

    # The burst: capacity up to maxWorkers, then back to zero by itself.
    burst = [f"p4-burst-{i:02d}" for i in range(2 * max_workers)]
    began = time.time()
    cluster.create_many(namespace, [(n, f"gmail-{i % TINY_MAILBOXES:02d}") for i, n in enumerate(burst)],
                        threads=len(burst))
    queue_keys = [contract.queue_key(p) for p in contract.PRIORITIES]
    seen_queued, drained_at, zero_at, peak_active = False, None, None, 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        queued = sum(world.redis.zcard(k) for k in queue_keys)
        seen_queued = seen_queued or queued > 0
        all_done = terminal(watch.latest, burst)
        if drained_at is None and queued == 0 and (seen_queued or all_done or time.time() - began > 2):
            drained_at = time.time()
        active = cluster.active_worker_jobs(namespace)
        peak_active = max(peak_active, active)
        if drained_at is not None and all_done and active == 0:
            zero_at = time.time()
            break
        time.sleep(0.05)
    if zero_at is None or drained_at is None:
        raise BenchError("P4: worker Jobs did not return to zero within 180s")
    last_finished = max(_finished_time(watch, name) or 0.0 for name in burst)

    logged = cluster.log_events(namespace, contract.LOG_JOB_START)
    starts = {job_id: record["epoch"] for job_id, record in logged.items()}
    heartbeats: dict[str, float] = {}
    for written, fields in stream_entries(world.redis):
        if fields.get(contract.HB_PHASE) == contract.PHASE_STARTED:
            heartbeats.setdefault(fields.get(contract.HB_JOB_ID, ""), written)
    retries = cluster.node_agent_retries(namespace)
    delays, sources, stages, per_sample = [], {"log": 0, "heartbeat": 0}, [], []
    for name, t0 in applied_at.items():
        status = (watch.latest.get(name) or {}).get("status") or {}
        job_id = status.get("jobId")
        start = starts.get(job_id) if job_id in starts else heartbeats.get(job_id)
        if start is None:
            continue
        sources["log" if job_id in starts else "heartbeat"] += 1
        delays.append(start - t0)
        per_sample.append({"name": name, "delay": start - t0,
                           "node_agent_retries": retries_of(retries, status.get("workerJob") or "")})
        step = steps.get(name)
        if step:
            stages.append({k: v - t0 for k, v in step.items()} | {"job_start": start - t0})
    stats = summary(delays)
    stage_p50 = {key: summary([s[key] for s in stages if key in s])["p50"] for key in
                 ("job_created", "pod_created", "pod_bound", "job_start")}
    result = {
        "namespace": namespace, "samples": len(applied_at), "measured": len(delays), "sources": sources,
        "apply_to_job_start": stats, "delays": delays, "stages_p50_seconds_after_apply": stage_p50,
        "samples_detail": per_sample, "node_agent_pause_seconds": node_agent_pause(),
        "node_agent_errors": sorted({e for errors in retries.values() for e in errors})[:3],
        "apply_to_job_start_without_node_agent_retries": summary(
            [x["delay"] for x in per_sample if not x["node_agent_retries"]]),
        "burst": len(burst), "burst_peak_active_jobs": peak_active,
        "queue_drained_to_zero_jobs_seconds": zero_at - drained_at,
        "last_finished_to_zero_jobs_seconds": zero_at - last_finished if last_finished else None,
        "burst_total_seconds": zero_at - began,
    }
    say(f"P4: apply→JOB_START p50 {stats['p50']} p95 {stats['p95']}; stages (p50) {stage_p50}; queue drained → "
        f"0 Jobs {zero_at - drained_at:.2f}s")
    path = ", ".join(f"{k.replace('_', ' ')} {v:.2f}s" for k, v in stage_p50.items() if v is not None)
    return [
        Figure("P4", "apply → worker JOB_START p50", stats["p50"], "s", "", f"{len(delays)} samples from zero; {path}"),
        Figure("P4", "apply → worker JOB_START p95", stats["p95"], "s", f"<= {P95_GOAL}",
               "operator → Job controller → scheduler → node agent → worker"),
        Figure("P4", "queue drained → 0 active worker Jobs", zero_at - drained_at, "s", "",
               f"burst of {len(burst)}, peak {peak_active} active"),
        Figure("P4", "last Finished → 0 active worker Jobs", result["last_finished_to_zero_jobs_seconds"], "s", ""),
    ], result


def _steps(records: list[dict], namespace: str, job_names: dict[str, str]) -> dict[str, dict[str, float]]:
    """ReceiptSync name -> when kube-apiserver received its worker Job's create, the Job controller's
    pod create and the scheduler's binding (the audit log; ``job_names``: worker Job -> ReceiptSync).
    A pod create is logged without the generated name: the first one after the Job's create is its pod
    (one sample at a time)."""
    found: dict[str, dict[str, float]] = {}
    pod_creates: list[float] = []
    for record in records:
        ref = record.get("objectRef") or {}
        when = audit_time(record)
        if ref.get("namespace") != namespace or record.get("verb") != "create" or when is None or \
                (record.get("responseStatus") or {}).get("code", 500) >= 300:
            continue
        name = ref.get("name") or ""
        if ref.get("resource") == "jobs" and name in job_names:
            found.setdefault(job_names[name], {})["job_created"] = when
        elif ref.get("resource") == "pods" and not ref.get("subresource"):
            pod_creates.append(when)
        elif ref.get("resource") == "pods" and ref.get("subresource") == "binding":
            owner = next((job for job in job_names if job and name.startswith(job + "-")), None)
            if owner:
                found.setdefault(job_names[owner], {})["pod_bound"] = when
    for step in found.values():
        if "job_created" in step:
            step["pod_created"] = next((t for t in sorted(pod_creates) if t >= step["job_created"]), None)
    return {name: {k: v for k, v in step.items() if v is not None} for name, step in found.items()}


def _finished_time(watch: Watch, name: str) -> float | None:
    for received, _kind, obj in watch.snapshot():
        if (obj.get("metadata") or {}).get("name") == name and \
                (obj.get("status") or {}).get("phase") in contract.TERMINAL_PHASES:
            return received
    return None
