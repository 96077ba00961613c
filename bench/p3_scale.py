"""P3 scale: N ReceiptSyncs created at once against tiny mailboxes; all must reach Finished. Then the
same N worker runs started directly as processes, as many at a time as the operator's maxWorkers
(same specs with their own business ids, same mailboxes, same machine, right after): the overhead
ratio is the wall time through the operator and Kubernetes ÷ the wall time of that plain loop. Last,
the same runs as bare Kubernetes Jobs (:mod:`bare_jobs`): what the operator adds over any Job-per-run
setup.

Measured through the operator: wall time from the first create to the last Finished (seen by a
watch), the operator's peak RSS (VmHWM), its API requests and writes per run (kube-apiserver's audit
log, the operator's ServiceAccount), Redis commands per run (INFO commandstats; the database's only
users are this operator and its workers), and CPU seconds per run of every part (worker containers,
node agent, kube-apiserver, etcd, controller-manager, scheduler, operator, Redis, PostgreSQL) in both
passes, which says where an overhead goes.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from receiptsync_common import contract
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.testing import TenantWorld
from receiptsync_worker.store import Store

from . import bare_jobs, direct
from .cluster import (TINY_MAILBOXES, BenchWorld, Cluster, audit_summary, commandstats, redis_ops, tiny_address,
                      unique_suffix, wait_for)
from .common import Figure, cpu_seconds, load_average, machine_busy_seconds, proc_status, say, summary, uptime
from .kube import BenchError, count_terminal, terminal

RSS_GOAL_MB = 300.0
OVERHEAD_GOAL = 1.25
REDIS_DB, DIRECT_REDIS_DB, BARE_REDIS_DB = 3, 6, 7


def run(cluster: Cluster, count: int, max_workers: int, timeout: float) -> tuple[list[Figure], dict[str, Any]]:
    addresses = [tiny_address(i) for i in range(TINY_MAILBOXES)]
    names = [f"p3-{i:04d}" for i in range(count)]
    # The plain loop: the same specs (own business ids: the same work, not re-saves), half of them
    # before the operator's pass and half after, so a drift of the shared machine's load shows in both.
    token_uri = cluster.env["GMAIL_TOKEN_URI"]
    suffix = unique_suffix()
    jobs = [direct.DirectRun(direct.payload_for(f"direct-{suffix}", name, cluster.receiptsync(
                f"direct-{suffix}-{name}", "unused")["spec"]),
            json.dumps(authorized_user(addresses[i % len(addresses)], token_uri, client_id="bench",
                                       client_secret="bench-secret")))
            for i, name in enumerate(names)]
    # The bare Jobs likewise, half before and half after.
    halves = [_plain(cluster, jobs[:count // 2], max_workers, "before")]
    bare_halves = [_bare(cluster, names[:count // 2], max_workers, timeout, "before")]
    world = BenchWorld(cluster, "p3", REDIS_DB, max_workers, addresses)
    try:
        through = _through_operator(cluster, world, names, timeout)
    finally:
        world.close()
    halves.append(_plain(cluster, jobs[count // 2:], max_workers, "after"))
    bare_halves.append(_bare(cluster, names[count // 2:], max_workers, timeout, "after"))
    plain, bare = _combined(halves, count, max_workers), _combined(bare_halves, count, max_workers)
    ratio = through["wall_seconds"] / plain["wall_seconds"]
    cpu_ratio = sum(through["cpu_per_run"].values()) / sum(plain["cpu_per_run"].values())
    over_bare = through["wall_seconds"] / bare["wall_seconds"]
    result = {**through, "direct": plain, "bare_jobs": bare, "overhead_ratio": ratio, "cpu_ratio": cpu_ratio,
              "over_bare_jobs_ratio": over_bare}
    per = max(through["finished"] + through["failed"], 1)
    scope = f"{count} ReceiptSyncs, maxWorkers {max_workers}"
    return [
        Figure("P3", f"runs Finished (of {count})", float(through["finished"]), "", f">= {count}", scope),
        Figure("P3", "wall time, create → all Finished", through["wall_seconds"], "s", "",
               f"{scope}; {per / through['wall_seconds']:.2f} runs/s"),
        Figure("P3", "wall time, same runs as plain processes", plain["wall_seconds"], "s", "",
               f"{plain['finished']}/{count} exit 0, {max_workers} at a time, no operator or Kubernetes; half "
               f"before ({halves[0]['wall_seconds']:.0f}s), half after ({halves[1]['wall_seconds']:.0f}s)"),
        Figure("P3", "overhead ratio (operator + Kubernetes ÷ plain)", ratio, "x", f"<= {OVERHEAD_GOAL}",
               f"wall times; same runs, mailboxes, machine and run; other processes took "
               f"{100 * through['others_share']:.0f} % of the machine's CPU during the operator's pass, "
               f"{100 * plain['others_share']:.0f} % during the plain one"),
        Figure("P3", "CPU ratio (operator + Kubernetes ÷ plain)", cpu_ratio, "x", "",
               "CPU seconds per run of every part, user + sys, whatever else the shared machine runs; it counts "
               "the control plane, which shares these 2 cores with the workers here and runs elsewhere in a "
               "cluster (the goal is on wall time)"),
        Figure("P3", "wall time, same runs as bare Kubernetes Jobs", bare["wall_seconds"], "s", "",
               f"{bare['finished']}/{count} Complete, {max_workers} at a time, the operator's Job for each run "
               f"created as soon as one ended, no operator; half before ({bare_halves[0]['wall_seconds']:.0f}s), "
               f"half after ({bare_halves[1]['wall_seconds']:.0f}s); CPU per run "
               f"{sum(bare['cpu_per_run'].values()):.3f} s ({_parts(bare['cpu_per_run'])})"),
        Figure("P3", "operator ÷ bare Jobs (wall time)", over_bare, "x", "",
               f"what the operator adds over any Job-per-run setup (a KEDA ScaledJob's floor); bare Jobs ÷ plain "
               f"{bare['wall_seconds'] / plain['wall_seconds']:.2f}"),
        Figure("P3", "operator peak RSS (VmHWM)", through["operator_peak_rss_bytes"] / 2**20
               if through["operator_peak_rss_bytes"] else None, "MiB", f"<= {RSS_GOAL_MB:.0f}"),
        Figure("P3", "operator API requests per run", through["api"]["requests"] / per, "", "", "audit log"),
        Figure("P3", "operator API writes per run", through["api"]["writes"] / per, "", "", "audit log"),
        Figure("P3", "Redis commands per run", through["redis_ops_per_run"], "", "", "operator and workers"),
        Figure("P3", "CPU per run, plain processes (all parts)", sum(plain["cpu_per_run"].values()), "s", "",
               _parts(plain["cpu_per_run"])),
        Figure("P3", "CPU per run, through the operator (all parts)", sum(through["cpu_per_run"].values()), "s", "",
               _parts(through["cpu_per_run"])),
    ], result


def _plain(cluster: Cluster, jobs: list[direct.DirectRun], parallelism: int, when: str) -> dict[str, Any]:
    say(f"P3: {len(jobs)} of the worker runs started directly ({when} the operator's pass), {parallelism} at a time")
    cluster.redis(DIRECT_REDIS_DB)  # emptied
    Store(cluster.env["DATABASE_URL"]).migrate()  # the schema, as the operator makes it at its start
    connections = {"redis": cluster.redis_url(DIRECT_REDIS_DB), "database": cluster.env["DATABASE_URL"],
                   "gmail": cluster.env["GMAIL_API_ENDPOINT"]}
    load_before, cpu_before, machine0 = load_average(), _ours(cluster), machine_busy_seconds()
    began = time.monotonic()
    done = direct.run_all(jobs, parallelism, connections, cluster.work / "p3-direct")
    done["others_share"], cpu_after = _cpu_since(cluster, cpu_before, machine0, began,
                                                 workers={"direct workers": done["cpu_seconds_total"]})
    done["cpu_per_run"] = _per_run(cpu_before, cpu_after, len(jobs))
    done.update(load_average_before=load_before, load_average_after=load_average(), uptime_after=uptime(),
                process_wall=summary(done.pop("wall_seconds_each")), process_cpu=summary(done.pop("cpu_seconds")))
    say(f"P3: direct {done['finished']}/{len(jobs)} exit 0 in {done['wall_seconds']:.1f}s "
        f"(load {load_before} → {done['load_average_after']})")
    if done["finished"] != len(jobs):
        log = done["failed_logs"][0] if done["failed_logs"] else ""
        tail = Path(log).read_text(errors="replace")[-600:] if log else ""
        raise BenchError(f"{len(jobs) - done['finished']} plain worker runs failed, e.g. {log}: {tail}")
    return done


def _combined(halves: list[dict[str, Any]], count: int, parallelism: int) -> dict[str, Any]:
    """Two passes' halves as one pass: wall times added, shares and CPU per run weighted."""
    wall = sum(h["wall_seconds"] for h in halves)
    return {"runs": count, "parallelism": parallelism, "halves": halves, "wall_seconds": wall,
            "finished": sum(h["finished"] for h in halves),
            "others_share": sum(h["others_share"] * h["wall_seconds"] for h in halves) / max(wall, 1e-9),
            "cpu_per_run": {k: sum(h["cpu_per_run"].get(k, 0.0) * h["runs"] for h in halves) / count
                            for k in halves[-1]["cpu_per_run"]}}


def _bare(cluster: Cluster, names: list[str], parallelism: int, timeout: float, when: str) -> dict[str, Any]:
    say(f"P3: {len(names)} of the worker runs as bare Kubernetes Jobs ({when} the operator's pass), "
        f"{parallelism} at a time, no operator")
    assert cluster.sandbox is not None
    world = TenantWorld(cluster.sandbox, cluster.work / f"world-p3-bare-{when}", prefix="bench-p3-bare-")
    cluster.create_secrets(world.ns, [tiny_address(i) for i in range(TINY_MAILBOXES)])
    cluster.redis(BARE_REDIS_DB)  # emptied
    suffix = unique_suffix()
    runs = []
    for i, name in enumerate(names):
        spec = cluster.receiptsync(f"bare-{suffix}-{name}", f"gmail-{i % TINY_MAILBOXES:02d}")["spec"]
        runs.append(bare_jobs.BareRun(direct.payload_for(world.ns, name, spec), spec))
    connections = {"redis": cluster.redis_url(BARE_REDIS_DB), "database": cluster.env["DATABASE_URL"]}
    cpu_before, machine0, began = _ours(cluster), machine_busy_seconds(), time.monotonic()
    done = bare_jobs.run_all(cluster, world.ns, runs, parallelism, connections, timeout)
    _pods_ended(cluster, world.ns, "every bare Job's pod ended")
    done["others_share"], cpu_after = _cpu_since(cluster, cpu_before, machine0, began)
    done["cpu_per_run"] = _per_run(cpu_before, cpu_after, len(runs))
    say(f"P3: bare Jobs {done['finished']}/{len(runs)} Complete in {done['wall_seconds']:.1f}s")
    if done["finished"] != len(runs):
        raise BenchError(f"{len(runs) - done['finished']} bare worker Jobs failed (namespace {world.ns})")
    return done


def _through_operator(cluster: Cluster, world: BenchWorld, names: list[str], timeout: float) -> dict[str, Any]:
    operator, watch, count = world.operator, world.watch, len(names)
    idle_rss = proc_status(operator.pid, "VmRSS")
    mark = world.sandbox.audit_mark()
    redis_before = commandstats(world.redis)
    load_before, cpu_before, machine0 = load_average(), _ours(cluster, operator.pid), machine_busy_seconds()
    slots = world.operator.env[contract.OPERATOR_ENV_MAX_WORKERS]
    say(f"P3: creating {count} ReceiptSyncs at once (maxWorkers {slots}, operator pid {operator.pid}, "
        f"load {load_before})")
    began = time.monotonic()
    cluster.create_many(world.ns, [(name, f"gmail-{i % TINY_MAILBOXES:02d}") for i, name in enumerate(names)])
    applied = time.monotonic() - began
    say(f"P3: {count} created in {applied:.1f}s")
    timeline: list[tuple[float, int]] = []
    complete, deadline = True, began + timeout
    while True:
        try:
            watch.wait(lambda objects: terminal(objects, names), min(max(deadline - time.monotonic(), 0.1), 30.0), "P3")
            break
        except BenchError:
            finished = count_terminal(watch.latest, names)
            timeline.append((round(time.monotonic() - began, 1), finished))
            say(f"P3: {finished}/{count} done after {time.monotonic() - began:.0f}s (load {load_average()})")
            if time.monotonic() >= deadline:
                complete = False
                break
    wall = time.monotonic() - began
    redis_after = commandstats(world.redis)
    peak = proc_status(operator.pid, "VmHWM")
    _pods_ended(cluster, world.ns, "every worker pod ended and reaped")
    others, cpu_after = _cpu_since(cluster, cpu_before, machine0, began, operator_pid=operator.pid)
    load_after = load_average()
    time.sleep(1.0)
    records = world.sandbox.audit(since_line=mark)
    by_user = Counter(r["user"]["username"].split(":")[-1] for r in records
                      if (r.get("objectRef") or {}).get("namespace") == world.ns)
    audit = audit_summary([r for r in records if r["user"]["username"] == world.operator_user])
    phases = watch.phases(names)
    finished = sum(1 for p in phases.values() if p == contract.PHASE_FINISHED)
    failed = sum(1 for p in phases.values() if p == contract.PHASE_FAILED)
    ops = redis_ops(redis_before, redis_after)
    per = max(finished + failed, 1)
    say(f"P3: {finished}/{count} Finished, {failed} Failed in {wall:.1f}s; operator peak RSS "
        f"{(peak or 0) / 2**20:.0f} MiB; API {audit['requests'] / per:.1f}/run (load {load_before} → {load_after})")
    return {
        "namespace": world.ns, "count": count, "complete": complete, "finished": finished, "failed": failed,
        "not_done": count - finished - failed, "apply_seconds": applied, "wall_seconds": wall,
        "runs_per_second": per / wall, "operator_peak_rss_bytes": peak, "operator_idle_rss_bytes": idle_rss,
        "api": audit, "api_requests_per_run": audit["requests"] / per, "api_writes_per_run": audit["writes"] / per,
        "redis_ops": ops, "redis_ops_per_run": sum(ops.values()) / per, "timeline": timeline,
        "cpu_per_run": _per_run(cpu_before, cpu_after, per), "operator_errors": len(operator.errors()),
        "others_share": others, "api_requests_per_run_by_user": {u: n / per for u, n in by_user.most_common()},
        "pods_the_node_agent_retried": len(cluster.node_agent_retries(world.ns)),
        "operator_pass_load_before": load_before, "operator_pass_load_after": load_after,
        "operator_pass_uptime_after": uptime(),
    }


def _ours(cluster: Cluster, operator_pid: int | None = None) -> dict[str, float]:
    """CPU seconds so far of every part of ours: the sandbox's processes, the operator, this process."""
    parts = cluster.component_cpu()
    if operator_pid is not None:
        parts["operator"] = cpu_seconds(operator_pid) or 0.0
    parts["bench"] = cpu_seconds(os.getpid()) or 0.0
    return parts


def _pods_ended(cluster: Cluster, namespace: str, what: str) -> None:
    wait_for(lambda: all((p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                         for p in cluster.pods(namespace)), 120, what, interval=1.0)


def _cpu_since(cluster: Cluster, before: dict[str, float], machine0: float, began: float, *,
               operator_pid: int | None = None, workers: dict[str, float] | None = None
               ) -> tuple[float, dict[str, float]]:
    """After a pass: the share of the CPU other processes took since ``began`` and the CPU seconds so
    far of each part of ours but the bench itself (``workers``: the plain loop's reaped processes)."""
    after = {**_ours(cluster, operator_pid), **(workers or {})}
    others = _others_share(machine0, before, after, time.monotonic() - began)
    after.pop("bench")
    return others, after


def _others_share(machine0: float, before: dict[str, float], after: dict[str, float], seconds: float) -> float:
    """The share of the machine's CPU that processes not ours took meanwhile (other people's tests):
    a pass that got less of the machine is slower for that reason alone."""
    ours = sum(after.values()) - sum(before.get(k, 0.0) for k in after)
    return max(0.0, machine_busy_seconds() - machine0 - ours) / (seconds * (os.cpu_count() or 1))


def _per_run(before: dict[str, float], after: dict[str, float], runs: int) -> dict[str, float]:
    """CPU seconds per run of each part between two readings (largest first)."""
    delta = {name: (after.get(name, 0.0) - before.get(name, 0.0)) / max(runs, 1) for name in after}
    return dict(sorted(delta.items(), key=lambda kv: -kv[1]))


def _parts(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cpu.items() if value >= 0.005)
