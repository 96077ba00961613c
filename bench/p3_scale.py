"""P3 scale: N ReceiptSyncs created at once against tiny mailboxes; all must reach Finished.

Measured: wall time from the first create to the last Finished (seen by a watch), the operator's
peak RSS (VmHWM of its process), its API requests per run (the sandbox audit, the operator's own
kubeconfig user) and Redis commands per run (INFO commandstats before/after; the bench's own INFO
calls excluded; the Redis database is used by this operator and its workers only).
"""
from __future__ import annotations

import time
from typing import Any

from receiptsync_common import contract

from .cluster import BenchError, Cluster, audit_summary, commandstats, count_terminal, redis_ops, terminal
from .common import Figure, cpu_seconds, load_average, open_operator_bench, proc_status, say

RSS_GOAL_MB = 300.0
REDIS_DB = 3


def run(cluster: Cluster, count: int, max_workers: int, timeout: float) -> tuple[list[Figure], dict[str, Any]]:
    namespace, redis_client, operator, watch = open_operator_bench(cluster, "p3", REDIS_DB, max_workers)
    idle_rss = proc_status(operator.pid, "VmRSS")
    cpu_before = cpu_seconds(operator.pid)
    cluster.audit_clear()
    redis_before = commandstats(redis_client)
    names = [f"p3-{i:04d}" for i in range(count)]
    say(f"P3: creating {count} ReceiptSyncs at once (max {max_workers} workers, operator pid {operator.pid})")
    began = time.monotonic()
    cluster.create_many(namespace, names)
    applied = time.monotonic() - began
    say(f"P3: {count} created in {applied:.1f}s")
    timeline: list[tuple[float, int]] = []
    complete = True
    deadline = began + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            watch.wait(lambda objects: terminal(objects, names), min(max(remaining, 0.1), 15.0), "P3")
            break
        except BenchError:
            finished = count_terminal(watch.latest, names)
            timeline.append((round(time.monotonic() - began, 1), finished))
            say(f"P3: {finished}/{count} done after {time.monotonic() - began:.0f}s (load {load_average()})")
            if time.monotonic() >= deadline:
                complete = False
                break
    wall = time.monotonic() - began
    redis_after = commandstats(redis_client)
    peak = proc_status(operator.pid, "VmHWM")
    cpu_after = cpu_seconds(operator.pid)
    time.sleep(1.0)
    audit = audit_summary(cluster.audit(operator.user))
    phases = watch.phases(names)
    watch.stop()
    finished = sum(1 for p in phases.values() if p == contract.PHASE_FINISHED)
    failed = sum(1 for p in phases.values() if p == contract.PHASE_FAILED)
    done = finished + failed
    ops = redis_ops(redis_before, redis_after)
    redis_total = sum(ops.values())
    operator_errors = len(operator.errors())
    operator.stop()
    per = max(done, 1)
    result: dict[str, Any] = {
        "namespace": namespace, "count": count, "max_workers": max_workers, "complete": complete,
        "finished": finished, "failed": failed, "not_done": count - done, "apply_seconds": applied,
        "wall_seconds": wall, "runs_per_second": done / wall if wall else None,
        "operator_peak_rss_bytes": peak, "operator_idle_rss_bytes": idle_rss,
        "operator_cpu_seconds": (cpu_after - cpu_before) if cpu_before is not None and cpu_after is not None else None,
        "api": audit, "api_requests_per_run": audit["requests"] / per, "api_writes_per_run": audit["writes"] / per,
        "redis_ops": ops, "redis_ops_per_run": redis_total / per, "timeline": timeline,
        "operator_errors": operator_errors,
    }
    say(f"P3: {finished}/{count} Finished, {failed} Failed in {wall:.1f}s; operator peak RSS "
        f"{(peak or 0) / 2**20:.0f} MB; API {audit['requests'] / per:.1f}/run; Redis {redis_total / per:.1f}/run")
    scope = f"{count} ReceiptSyncs, max {max_workers} workers"
    figures = [
        Figure("P3", f"runs Finished (of {count})", float(finished), "", f">= {count}", scope),
        Figure("P3", "wall time, create → all Finished", wall, "s", "", f"{scope}; {done / wall:.2f} runs/s"),
        Figure("P3", "operator peak RSS (VmHWM)", (peak or 0) / 2**20 if peak else None, "MB", f"<= {RSS_GOAL_MB:.0f}"),
        Figure("P3", "operator API requests per run", audit["requests"] / per, "", ""),
        Figure("P3", "operator API writes per run", audit["writes"] / per, "", ""),
        Figure("P3", "Redis commands per run", redis_total / per, "", ""),
    ]
    return figures, result
