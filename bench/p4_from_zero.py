"""P4 scale-from-zero: with no worker running, create a ReceiptSync and time until its worker logs
JOB_START (the worker's own log line, read from the pod log on disk; same machine clock). One sample
at a time, each starting from zero active worker Jobs. Then a burst of 2 × maxWorkers runs: how long
after the queue drains (every queued attempt has its Job) and after the last run's Finished status
the active worker Jobs are back to zero.
"""
from __future__ import annotations

import time
from typing import Any

from receiptsync_common import contract

from .cluster import BenchError, Cluster, Watch, stream_entries, terminal, wait_for
from .common import Figure, open_operator_bench, say, summary

P95_GOAL = 3.0
REDIS_DB = 4


def run(cluster: Cluster, samples: int, max_workers: int = 4) -> tuple[list[Figure], dict[str, Any]]:
    namespace, redis_client, operator, watch = open_operator_bench(cluster, "p4", REDIS_DB, max_workers)
    say(f"P4: {samples} samples from zero workers, then a burst of {2 * max_workers}")
    applied_at: dict[str, float] = {}  # name -> epoch seconds just before the create call
    for index in range(samples):
        wait_for(lambda: cluster.active_worker_jobs(namespace) == 0, 60, "zero active worker Jobs")
        name = f"p4-{index:03d}"
        applied_at[name] = time.time()
        cluster.create_receiptsync(namespace, name, index)
        watch.wait(lambda objects: terminal(objects, [name]), 60, f"{name} to finish")
    wait_for(lambda: cluster.active_worker_jobs(namespace) == 0, 60, "zero active worker Jobs")

    # The burst: capacity up to maxWorkers, then back to zero by itself.
    burst = [f"p4-burst-{i:02d}" for i in range(2 * max_workers)]
    began = time.time()
    cluster.create_many(namespace, burst, threads=len(burst))
    queue_keys = [contract.queue_key(p) for p in contract.PRIORITIES]
    seen_queued = False
    drained_at = None
    zero_at = None
    peak_active = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        queued = sum(redis_client.zcard(k) for k in queue_keys)
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
    if zero_at is None:
        raise BenchError("P4: worker Jobs did not return to zero within 120s")
    last_finished = max(_finished_time(watch, name) or 0.0 for name in burst)

    starts = cluster.job_start_times(namespace)
    heartbeats = {}
    for written, fields in stream_entries(redis_client):
        if fields.get(contract.HB_PHASE) == contract.PHASE_STARTED:
            heartbeats.setdefault(fields.get(contract.HB_JOB_ID), written)
    delays, sources = [], {"log": 0, "heartbeat": 0}
    for name, t0 in applied_at.items():
        job_id = ((watch.latest.get(name) or {}).get("status") or {}).get("jobId")
        if job_id in starts:
            delays.append(starts[job_id] - t0)
            sources["log"] += 1
        elif job_id in heartbeats:
            delays.append(heartbeats[job_id] - t0)
            sources["heartbeat"] += 1
    watch.stop()
    operator.stop()
    stats = summary(delays)
    result = {
        "namespace": namespace, "samples": samples, "measured": len(delays), "sources": sources,
        "apply_to_job_start": stats, "delays": delays, "burst": len(burst), "burst_peak_active_jobs": peak_active,
        "queue_drained_to_zero_jobs_seconds": zero_at - drained_at,
        "last_finished_to_zero_jobs_seconds": zero_at - last_finished if last_finished else None,
        "burst_total_seconds": zero_at - began,
    }
    say(f"P4: apply→JOB_START p50 {stats['p50']} p95 {stats['p95']}; queue drained → 0 Jobs "
        f"{zero_at - drained_at:.2f}s; last Finished → 0 Jobs {result['last_finished_to_zero_jobs_seconds']}")
    figures = [
        Figure("P4", "apply → worker JOB_START p50", stats["p50"], "s", "", f"{len(delays)} samples from zero"),
        Figure("P4", "apply → worker JOB_START p95", stats["p95"], "s", f"<= {P95_GOAL}", f"{len(delays)} samples"),
        Figure("P4", "queue drained → 0 active worker Jobs", zero_at - drained_at, "s", "",
               f"burst of {len(burst)}, peak {peak_active} active"),
        Figure("P4", "last Finished → 0 active worker Jobs", result["last_finished_to_zero_jobs_seconds"], "s", ""),
    ]
    return figures, result


def _finished_time(watch: Watch, name: str) -> float | None:
    for received, _kind, obj in watch.snapshot():
        if (obj.get("metadata") or {}).get("name") == name and \
                (obj.get("status") or {}).get("phase") in contract.TERMINAL_PHASES:
            return received
    return None
