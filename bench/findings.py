"""The "where the missed goals come from" section of docs/benchmarks.md: for each goal the run missed,
what its own records say the figure is made of. Numbers only from the results file; the sentences
that say what would have to change name the part (operator, node agent), never a number from
elsewhere."""
from __future__ import annotations

from typing import Any

from .common import percentile


def render(results: dict[str, Any]) -> str:
    missed = {(f["bench"], f["name"]) for f in results["figures"] if f["status"] == "MISS"}
    details = results["details"]
    parts = []
    for bench, prefix, explain in (("P2", "operator API writes per run", _p2_writes),
                                   ("P3", "overhead ratio", _p3_cpu),
                                   ("P4", "apply → worker JOB_START p95", _p4_start)):
        if bench in details and any(b == bench and n.startswith(prefix) for b, n in missed):
            text = explain(details)
            if text not in parts:
                parts.append(text)
    if not parts:
        return ""
    return "\n\n".join(["## Where the missed goals come from", *parts])


def _p2_writes(details: dict[str, Any]) -> str:
    x = details["P2"]
    runs = x["runs"]
    per = {label: n / runs for label, n in x["api"]["breakdown"].items()
           if label.split()[0] in ("create", "update", "patch", "delete")}
    versions = x.get("status_versions_per_run") or {}
    idle = versions.get("lastHeartbeatTime", 0.0)
    leases = per.get("update leases", 0.0)
    return (
        f"**P2, {x['api_writes_per_run']:.2f} operator API writes per run (goal ≤ 8).** Per run, from the audit "
        f"log: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1])) +
        f". The Lease renewals are a time-based cost ({leases * runs:.0f} in {x['elapsed_seconds']:.0f} s). "
        f"The status patches, by what the watched versions changed: " +
        ", ".join(f"{k} {v:.2f}" for k, v in versions.items() if v >= 0.01) +
        f"; {idle:.2f} per run changed only `lastHeartbeatTime`.")


def _p3_cpu(details: dict[str, Any]) -> str:
    x = details["P3"]
    plain = x["direct"]
    ours, theirs = x["cpu_per_run"], plain["cpu_per_run"]
    extra = {k: ours.get(k, 0.0) - theirs.get(k, 0.0) for k in set(ours) | set(theirs)}
    workers = ours.get("worker containers", 0.0) - theirs.get("direct workers", 0.0)
    extra.pop("worker containers", None)
    extra.pop("direct workers", None)
    big = sorted(((k, v) for k, v in extra.items() if v >= 0.005), key=lambda kv: -kv[1])
    total = sum(ours.values())
    users = ", ".join(f"{u} {n:.1f}" for u, n in x["api_requests_per_run_by_user"].items() if n >= 0.05)
    api = x["api"]["breakdown"]
    count = max(x["count"], 1)
    status = api.get("patch receiptsyncs/status", 0) / count
    room = 0.25 * sum(theirs.values())
    machinery = total - sum(theirs.values()) - workers
    floor = _p3_floor(x, sum(theirs.values()))
    steady = (details.get("P2") or {}).get("status_patches_per_run")
    steady_text = f", where P2's steady path needs {steady:.1f}" if steady is not None else ""
    return (
        f"**P3, overhead ratio {x['overhead_ratio']:.2f} (goal ≤ 1.25).** Per run the operator's path used "
        f"{total:.3f} CPU s against {sum(theirs.values()):.3f} s for the same run as a plain process (CPU ratio "
        f"{x['cpu_ratio']:.2f}). The worker itself differs by {workers:+.3f} s; the rest is the machinery: " +
        ", ".join(f"{k} {v:+.3f} s" for k, v in big) +
        f". kube-apiserver's share follows its requests: {sum(x['api_requests_per_run_by_user'].values()):.1f} "
        f"per run in the namespace ({users}). The operator's own {x['api_requests_per_run']:.1f} include "
        f"{status:.1f} status patches per run with {x['count']:,} runs queued at once{steady_text}. Within 1.25 "
        f"on CPU the machinery may use {room:.3f} CPU s per run here; it used {machinery:.3f} s. {floor} Other "
        f"processes on the shared machine took {100 * x['others_share']:.0f} % of its CPU during the operator's "
        f"pass and {100 * plain['others_share']:.0f} % during the plain one.\n")


def _p3_floor(x: dict[str, Any], plain: float) -> str:
    """What Kubernetes alone costs the same runs: the bare-Jobs pass."""
    bare = x["bare_jobs"]
    cost = sum(bare["cpu_per_run"].values())
    return (f"The same runs as bare Kubernetes Jobs (the operator's Jobs, no operator) used {cost:.3f} CPU s "
            f"per run, a CPU ratio of {cost / plain:.2f} over the plain processes (wall time "
            f"{bare['wall_seconds'] / x['direct']['wall_seconds']:.2f}) with the control plane on the workers' "
            f"cores; the operator added {sum(x['cpu_per_run'].values()) - cost:+.3f} CPU s per run to that "
            f"(wall time {x['over_bare_jobs_ratio']:.2f} of the bare Jobs').")


def _p4_start(details: dict[str, Any]) -> str:
    x = details["P4"]
    samples = x.get("samples_detail") or []
    retried = [s for s in samples if s.get("node_agent_retries")]
    clean = [s["delay"] for s in samples if not s.get("node_agent_retries")]
    slow = ", ".join(f"{s['delay']:.2f}" for s in sorted(retried, key=lambda s: s["delay"]))
    stages = x["stages_p50_seconds_after_apply"]
    errors = "; ".join(x.get("node_agent_errors") or [])
    text = (
        f"**P4, apply → JOB_START p95 {x['apply_to_job_start']['p95']:.2f} s (goal ≤ 3 s).** The median "
        f"sample goes apply → Job created {stages['job_created']:.2f} s → pod created {stages['pod_created']:.2f} s "
        f"→ bound {stages['pod_bound']:.2f} s → JOB_START {stages['job_start']:.2f} s: the control plane takes "
        f"tens of milliseconds, the rest is the node agent starting the process and the worker's start-up "
        f"(its imports, P6). ")
    if retried:
        p95 = percentile(clean, 95)
        text += (
            f"{len(retried)} of {len(samples)} samples took {slow} s: for each, the node agent's first try to "
            f"prepare the pod failed ({errors or 'an API error'}) and it tried again. kube-apiserver's Node "
            f"authorizer refuses a node the pod's Secrets until it has seen the pod bound to that node, and the "
            f"node agent, reacting to the same binding, can ask first. Without those samples the p95 is "
            f"{p95:.2f} s.")
    return text
