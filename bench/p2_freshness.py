"""P2 status freshness: heartbeat write → status version seen by a watch, transitions (Started,
Finished, Failed) and progress-only updates (counters while Started) apart, and API writes per run.

Runs go through the real operator and real workers on mailboxes big enough for several saved batches
per run, closed loop: as many runs in flight as the operator has worker slots, a new ReceiptSync
whenever one finishes, so every run measures the steady path (queueing is P3's subject). Progress-only
updates are deferred by design, at least the operator's configured progress interval apart
(``Settings.progress_interval``; the gap grows with the attempt's age), so their goal is that interval
plus 1 s; transitions go out at once (goal 1 s).
"""
from __future__ import annotations

import time
from typing import Any

from receiptsync_common import contract
from receiptsync_operator.config import Settings as OperatorSettings

from . import freshness
from .cluster import BenchWorld, Cluster, audit_summary, medium_address, stream_entries
from .common import Figure, say, summary
from .kube import terminal

TRANSITION_GOAL = 1.0
WRITES_GOAL = 8.0
REDIS_DB = 2


def run(cluster: Cluster, runs: int, mailboxes: int, max_workers: int = 4,
        timeout: float = 900) -> tuple[list[Figure], dict[str, Any]]:
    progress_goal = OperatorSettings().progress_interval + 1.0
    world = BenchWorld(cluster, "p2", REDIS_DB, max_workers, [medium_address(i) for i in range(mailboxes)])
    try:
        mark = world.sandbox.audit_mark()
        names = [f"p2-{i:04d}" for i in range(runs)]
        say(f"P2: {runs} runs on {mailboxes} mailboxes, {max_workers} in flight, operator pid {world.operator.pid}")
        began = time.monotonic()
        deadline = began + timeout
        in_flight: list[str] = []
        created = 0
        while created < runs or in_flight:
            while len(in_flight) < max_workers and created < runs:
                cluster.create_receiptsync(world.ns, names[created], f"gmail-{created % mailboxes:02d}")
                in_flight.append(names[created])
                created += 1
            world.watch.wait(lambda objects: any(terminal(objects, [n]) for n in in_flight),
                             max(deadline - time.monotonic(), 0.1),
                             f"P2 runs to finish ({created - len(in_flight)} of {runs} done)")
            latest = world.watch.latest
            in_flight = [n for n in in_flight if not terminal(latest, [n])]
        elapsed = time.monotonic() - began
        time.sleep(2.0)  # Events and deferred writes land just after the last Finished: let them in
        audit = audit_summary(world.operator_audit(since_line=mark))
        entries = stream_entries(world.redis)
        events = world.watch.snapshot()
        lat = freshness.latencies(events, entries)
        changes = freshness.version_changes(events)
        phases = world.watch.phases(names)
        operator_errors = len(world.operator.errors())
    finally:
        world.close()
    finished = sum(1 for p in phases.values() if p == contract.PHASE_FINISHED)
    transitions, progress = summary(lat["transition"]), summary(lat["progress"])
    writes_per_run = audit["writes"] / runs
    status_writes = audit["breakdown"].get("patch receiptsyncs/status", 0) / runs
    result = {
        "namespace": world.ns, "runs": runs, "mailboxes": mailboxes, "messages_per_mailbox": cluster.medium[1],
        "finished": finished, "failed": sum(1 for p in phases.values() if p == contract.PHASE_FAILED),
        "max_workers": max_workers, "elapsed_seconds": elapsed, "heartbeats": lat["heartbeats"],
        "latency_transitions": transitions, "latency_progress": progress, "latency_all": summary(lat["all"]),
        "progress_goal_seconds": progress_goal, "unmatched_status_news": lat["unmatched"],
        "progress_updates_per_run": progress["n"] / runs, "api": audit, "api_writes_per_run": writes_per_run,
        "status_patches_per_run": status_writes, "api_requests_per_run": audit["requests"] / runs,
        "operator_errors": operator_errors,
        "status_versions_per_run": {label: n / runs for label, n in changes.items()},
    }
    say(f"P2: {finished}/{runs} Finished in {elapsed:.1f}s; transitions p95 {transitions['p95']}, progress p95 "
        f"{progress['p95']} (n={progress['n']}); writes/run {writes_per_run:.2f}")
    scope = f"{finished}/{runs} runs Finished, {mailboxes} mailboxes of {cluster.medium[1]} messages"
    writes = ", ".join(f"{k}: {v / runs:.2f}" for k, v in audit["breakdown"].items() if k.split()[0] in
                       ("create", "patch", "update", "delete"))
    figures = [
        Figure("P2", "heartbeat→status, transitions p50", transitions["p50"], "s", "",
               f"{transitions['n']} updates; {scope}"),
        Figure("P2", "heartbeat→status, transitions p95", transitions["p95"], "s", f"<= {TRANSITION_GOAL}",
               "Started/Finished/Failed, written at once"),
        Figure("P2", "heartbeat→status, progress-only p50", progress["p50"], "s", "",
               f"{progress['n']} counter updates while Started ({progress['n'] / runs:.2f}/run)"),
        Figure("P2", "heartbeat→status, progress-only p95", progress["p95"], "s", f"<= {progress_goal:g}",
               f"deferred: progress interval {progress_goal - 1:g} s (growing with the attempt's age) + 1 s"),
        Figure("P2", "operator API writes per run", writes_per_run, "", f"<= {WRITES_GOAL:g}",
               f"kube-apiserver audit log; {writes}"),
        Figure("P2", "status patches per run", status_writes, "", ""),
    ]
    return figures, result
