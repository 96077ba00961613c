"""ReceiptSync benchmarks P1–P6 (issues 7 and 16), in one sandbox on the upstream control plane, one run,
with the machine, its load and the Kubernetes version noted.

    python -m bench [--smoke] [--only P1,P3] [--output FILE]

P1 Gmail throughput vs the quota-bound minimum and a naive loop at two latencies; CPU-bound messages/s
P2 status freshness (heartbeat → status seen by a watch; transitions and progress apart), API writes per run
P3 scale: N ReceiptSyncs at once → all Finished, operator peak RSS, API and Redis per run, and the
   overhead ratio against the same worker runs started as plain processes
P4 scale-from-zero: apply → worker JOB_START through the scheduler and the node; capacity back to zero
P5 ingest: receipts upserted/s through the worker's store vs row-by-row, on a durable PostgreSQL
P6 a scheduled incremental run that finds no new mail: worker CPU and dispatch → Finished

Prints a table and writes the figures, details and machine info to bench/results.json (a full run
also regenerates docs/benchmarks.md from it); bench/results-smoke.json with --smoke, so a smoke run
never overwrites the full run's numbers.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .common import Figure, busy_processes, load_average, machine_info, say, table, uptime

HERE = Path(__file__).resolve().parent
ALL = ("P1", "P2", "P3", "P4", "P5", "P6")
ORDER = ("P5", "P1", "P2", "P4", "P6", "P3")  # quick ones first; P3, the longest, last

SIZES = {
    "full": {"p1_messages": 5000, "p1_naive_sample": 150, "p1_unpaced_copies": 12, "p1_profile": True,
             "p2_runs": 200, "p2_mailboxes": 8, "p2_messages": 500, "p3_count": 1000, "p3_max_workers": 8,
             "p3_timeout": 2400.0, "p4_samples": 20, "p5_rows": 5000, "p5_rounds": 4, "p6_samples": 10,
             "p6_profile_runs": 3},
    "smoke": {"p1_messages": 300, "p1_naive_sample": 30, "p1_unpaced_copies": 2, "p1_profile": False,
              "p2_runs": 4, "p2_mailboxes": 4, "p2_messages": 500, "p3_count": 6, "p3_max_workers": 3,
              "p3_timeout": 180.0, "p4_samples": 3, "p5_rows": 300, "p5_rounds": 2, "p6_samples": 2,
              "p6_profile_runs": 1},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a few minutes)")
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. P1,P5")
    parser.add_argument("--output", type=Path, help="results file (default bench/results.json, "
                                                    "bench/results-smoke.json with --smoke)")
    parser.add_argument("--set", action="append", default=[], metavar="SIZE=VALUE",
                        help="override a size, e.g. --set p3_count=200 (see SIZES)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (sandbox logs, profiles)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a timeout, CI cancelling) still stops the operators and the sandbox in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mode = "smoke" if args.smoke else "full"
    sizes = dict(SIZES[mode])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in sizes:
            print(f"unknown size {key!r} (choose from {', '.join(sizes)})", file=sys.stderr)
            return 2
        sizes[key] = type(sizes[key])(json.loads(value)) if not isinstance(sizes[key], str) else value
    selected = [p.strip().upper() for p in args.only.split(",") if p.strip()] or list(ALL)
    unknown = [p for p in selected if p not in ALL]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(ALL)})", file=sys.stderr)
        return 2
    default_output = HERE / ("results-smoke.json" if args.smoke else "results.json")
    output = args.output or default_output
    work = Path(tempfile.mkdtemp(prefix="receiptsync-bench-"))
    began = time.monotonic()
    results: dict[str, Any] = {"mode": mode, "selected": selected, "sizes": sizes, "machine": machine_info(),
                               "busy_at_start": busy_processes(), "kubernetes": {}, "figures": [], "details": {},
                               "errors": {}}
    figures: list[Figure] = []

    def save() -> None:
        results["figures"] = [f.as_json() for f in figures]
        results["elapsed_seconds"] = round(time.monotonic() - began, 1)
        results["load_average_end"] = load_average()
        results["uptime_end"] = uptime()
        results["busy_at_end"] = busy_processes()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=1, default=str) + "\n")

    from .cluster import Cluster

    cluster = Cluster(work, sizes["p2_mailboxes"] if "P2" in selected else 0, sizes["p2_messages"])
    try:
        say(f"{mode} run of {', '.join(selected)} in {work}; {results['machine']['uptime_start']}")
        cluster.start()
        results["kubernetes"] = {"server_version": cluster.versions["server"], "kubectl": cluster.versions["kubectl"],
                                 "sandbox_up_seconds": round(cluster.sandbox.up_seconds or 0, 1)}
        for name in ORDER:
            if name not in selected:
                continue
            phase_began, load_before, uptime_before = time.monotonic(), load_average(), uptime()
            try:
                new, detail = _run_one(name, cluster, work, sizes)
            except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
                say(f"{name} FAILED: {exc}")
                traceback.print_exc()
                save()
                continue
            detail.update(seconds=round(time.monotonic() - phase_began, 1), load_average_before=load_before,
                          load_average_after=load_average(), uptime_before=uptime_before, uptime_after=uptime())
            figures.extend(new)
            results["details"][name] = detail
            save()
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"work folder kept: {work}")
    save()
    machine = results["machine"]
    server = results["kubernetes"].get("server_version")
    print(f"\nReceiptSync benchmarks ({mode}), {machine['date_local']}: {machine['nproc']} CPUs, "
          f"{machine['memory_gib']} GiB, Python {machine['python']}, kube-apiserver {server}, load "
          f"average {machine['load_average_start']} → {results['load_average_end']}, {results['elapsed_seconds']:.0f}s")
    print(table(figures))
    if results["errors"]:
        print("\nerrors:")
        for name, error in results["errors"].items():
            print(f"  {name}: {error}")
    print(f"\nresults: {output}")
    if mode == "full" and output == default_output and not results["errors"] and selected == list(ALL):
        from . import report

        report.write(output, report.DOC)
        print(f"doc: {report.DOC}")
    return 1 if results["errors"] else 0


def _run_one(name: str, cluster, work: Path, sizes: dict[str, Any]):
    if name == "P1":
        from . import p1_gmail
        admin_db = cluster.env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
        return p1_gmail.run(work, cluster.redis_url(5), admin_db, sizes["p1_messages"], sizes["p1_naive_sample"],
                            sizes["p1_unpaced_copies"], profile=sizes["p1_profile"])
    if name == "P2":
        from . import p2_freshness
        return p2_freshness.run(cluster, sizes["p2_runs"], sizes["p2_mailboxes"])
    if name == "P3":
        from . import p3_scale
        return p3_scale.run(cluster, sizes["p3_count"], sizes["p3_max_workers"], sizes["p3_timeout"])
    if name == "P4":
        from . import p4_from_zero
        return p4_from_zero.run(cluster, sizes["p4_samples"])
    if name == "P5":
        from . import p5_ingest
        return p5_ingest.run(work, sizes["p5_rows"], sizes["p5_rounds"])
    if name == "P6":
        from . import p6_idle
        return p6_idle.run(cluster, sizes["p6_samples"], sizes["p6_profile_runs"])
    raise ValueError(name)


if __name__ == "__main__":
    sys.exit(main())
