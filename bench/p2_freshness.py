"""P2 status freshness: heartbeat write → status patch seen by a watch, and API writes per run.

Runs go through the real operator and real workers, closed loop: as many runs in flight as the
operator has worker slots, a new ReceiptSync created whenever one finishes, so every run measures
the steady path (no queue waiting, which is P3's subject).
"""
from __future__ import annotations

import time
from typing import Any

from receiptsync_common import contract

from . import freshness
from .cluster import Cluster, audit_summary, stream_entries
from .common import Figure, open_operator_bench, say, summary

P95_GOAL = 1.0
WRITES_GOAL = 8.0
REDIS_DB = 2


def run(cluster: Cluster, runs: int, max_workers: int = 4, timeout: float = 600) -> tuple[list[Figure], dict[str, Any]]:
    namespace, redis_client, operator, watch = open_operator_bench(cluster, "p2", REDIS_DB, max_workers)
    cluster.audit_clear()
    names = [f"p2-{i:04d}" for i in range(runs)]
    say(f"P2: {runs} runs, {max_workers} in flight, operator pid {operator.pid}")
    began = time.monotonic()
    deadline = began + timeout
    in_flight: list[str] = []
    created = 0

    def done(objects: dict[str, dict], name: str) -> bool:
        return ((objects.get(name) or {}).get("status") or {}).get("phase") in contract.TERMINAL_PHASES

    while created < runs or in_flight:
        while len(in_flight) < max_workers and created < runs:
            cluster.create_receiptsync(namespace, names[created], created)
            in_flight.append(names[created])
            created += 1
        remaining = deadline - time.monotonic()
        watch.wait(lambda objects: any(done(objects, n) for n in in_flight), max(remaining, 0.1),
                   f"P2 runs to finish ({created - len(in_flight)} of {runs} done)")
        with_latest = watch.latest
        in_flight = [n for n in in_flight if not done(with_latest, n)]
    elapsed = time.monotonic() - began
    # Events and deferred writes land just after the last Finished: let them in before counting.
    time.sleep(2.0)
    audit = audit_summary(cluster.audit(operator.user))
    entries = stream_entries(redis_client)
    watch.stop()
    lat = freshness.latencies(watch.snapshot(), entries)
    phases = watch.phases(names)
    finished = sum(1 for p in phases.values() if p == contract.PHASE_FINISHED)
    operator.stop()
    all_stats = summary(lat["all"])
    transition_stats = summary(lat["transition"])
    writes_per_run = audit["writes"] / runs
    status_writes = audit["breakdown"].get("patch receiptsyncs/status", 0) / runs
    result = {
        "namespace": namespace, "runs": runs, "finished": finished,
        "failed": sum(1 for p in phases.values() if p == contract.PHASE_FAILED),
        "max_workers": max_workers, "elapsed_seconds": elapsed,
        "heartbeats": lat["heartbeats"], "latency_all": all_stats, "latency_transitions": transition_stats,
        "latency_progress": summary(lat["progress"]), "unmatched_status_news": lat["unmatched"],
        "api": audit, "api_writes_per_run": writes_per_run, "status_patches_per_run": status_writes,
        "api_requests_per_run": audit["requests"] / runs, "operator_errors": len(operator.errors()),
    }
    say(f"P2: {finished}/{runs} Finished in {elapsed:.1f}s; heartbeat→status p95 {all_stats['p95']}; "
        f"writes/run {writes_per_run:.2f}")
    detail = f"{all_stats['n']} status updates from {lat['heartbeats']} heartbeats, {finished}/{runs} runs Finished"
    figures = [
        Figure("P2", "heartbeat→status p50", all_stats["p50"], "s", "", detail),
        Figure("P2", "heartbeat→status p95", all_stats["p95"], "s", f"<= {P95_GOAL}", detail),
        Figure("P2", "heartbeat→status p99", all_stats["p99"], "s", "", detail),
        Figure("P2", "transitions only (Started/Finished) p95", transition_stats["p95"], "s", ""),
        Figure("P2", "operator API writes per run", writes_per_run, "", f"<= {WRITES_GOAL}",
               ", ".join(f"{k}: {v / runs:.2f}" for k, v in audit["breakdown"].items() if k.split()[0] in
                         ("create", "patch", "update", "delete"))),
        Figure("P2", "status patches per run", status_writes, "", ""),
    ]
    return figures, result
