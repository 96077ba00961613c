"""ReceiptSync benchmarks P1–P5 (issue 7), in one sandbox, one run, with the machine noted.

    python -m bench [--smoke] [--only P1,P3] [--output FILE]

P1 Gmail throughput vs the quota ceiling and a naive loop (+ CPU-bound messages/s, profiled)
P2 status freshness (heartbeat → status seen by a watch) and operator API writes per run
P3 scale: N ReceiptSyncs at once → all Finished, wall time, operator peak RSS, API and Redis per run
P4 scale-from-zero: apply → worker JOB_START, and capacity back to zero after the queue drains
P5 ingest: receipts upserted/s through the worker's store vs a row-by-row INSERT baseline

Prints a table and writes the figures, details and machine info to bench/results.json
(bench/results-smoke.json with --smoke, so a smoke run never overwrites the full run's numbers).
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

from .common import Figure, busy_processes, load_average, machine_info, say, table

HERE = Path(__file__).resolve().parent
STARTED = time.monotonic()
ALL = ("P1", "P2", "P3", "P4", "P5")
ORDER = ("P5", "P1", "P2", "P4", "P3")  # quick ones first; P3, the longest, last

SIZES = {
    "full": {"p1_messages": 5000, "p1_naive_sample": 150, "p1_profile": True, "p2_runs": 200, "p3_count": 1000,
             "p3_timeout": 900.0, "p4_samples": 20, "p5_rows": 20000, "budget": 1110.0},
    "smoke": {"p1_messages": 300, "p1_naive_sample": 30, "p1_profile": False, "p2_runs": 10, "p3_count": 20,
              "p3_timeout": 90.0, "p4_samples": 5, "p5_rows": 2000, "budget": 110.0},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (< 2 minutes)")
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. P1,P5")
    parser.add_argument("--output", type=Path, help="results file (default bench/results.json, "
                                                    "bench/results-smoke.json with --smoke)")
    parser.add_argument("--p3-count", type=int, help="ReceiptSyncs in P3 (default 1000; smoke 20)")
    parser.add_argument("--p3-max-workers", type=int, default=8, help="operator maxWorkers in P3 (default 8)")
    parser.add_argument("--p3-timeout", type=float, help="seconds P3 may take before it reports what finished")
    parser.add_argument("--p2-runs", type=int)
    parser.add_argument("--p1-messages", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (sandbox logs, profiles)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a timeout, CI cancelling) still stops the operators and the sandbox in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mode = "smoke" if args.smoke else "full"
    sizes = dict(SIZES[mode])
    for key in ("p3_count", "p3_timeout", "p2_runs", "p1_messages"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    selected = [p.strip().upper() for p in args.only.split(",") if p.strip()] or list(ALL)
    unknown = [p for p in selected if p not in ALL]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(ALL)})", file=sys.stderr)
        return 2
    output = args.output or HERE / ("results-smoke.json" if args.smoke else "results.json")
    work = Path(tempfile.mkdtemp(prefix="receiptsync-bench-"))
    began = time.monotonic()
    results: dict[str, Any] = {"mode": mode, "selected": selected, "sizes": sizes, "machine": machine_info(),
                               "busy_at_start": busy_processes(), "figures": [], "details": {}, "errors": {}}
    figures: list[Figure] = []

    def save() -> None:
        results["figures"] = [f.as_json() for f in figures]
        results["elapsed_seconds"] = round(time.monotonic() - began, 1)
        results["load_average_end"] = load_average()
        results["busy_at_end"] = busy_processes()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=1, default=str) + "\n")

    from .cluster import Cluster

    cluster = Cluster(work)
    try:
        say(f"{mode} run of {', '.join(selected)} in {work}; load average {load_average()}")
        cluster.start()
        for name in ORDER:
            if name not in selected:
                continue
            phase_began = time.monotonic()
            load_before = load_average()
            try:
                new, detail = _run_one(name, cluster, work, sizes, args)
            except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
                say(f"{name} FAILED: {exc}")
                traceback.print_exc()
                save()
                continue
            detail["seconds"] = round(time.monotonic() - phase_began, 1)
            detail["load_average_before"] = load_before
            detail["load_average_after"] = load_average()
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
    print()
    print(f"ReceiptSync benchmarks ({mode}), {results['machine']['date_local']}: {results['machine']['nproc']} CPUs, "
          f"{results['machine']['memory_gib']} GiB, Python {results['machine']['python']}, load average "
          f"{results['machine']['load_average_start']} → {results['load_average_end']}, "
          f"{results['elapsed_seconds']:.0f}s")
    print(table(figures))
    if results["errors"]:
        print("\nerrors:")
        for name, error in results["errors"].items():
            print(f"  {name}: {error}")
    print(f"\nresults: {output}")
    return 1 if results["errors"] else 0


def _run_one(name: str, cluster, work: Path, sizes: dict[str, Any], args: argparse.Namespace):
    if name == "P1":
        from . import p1_gmail
        return p1_gmail.run(work, cluster.redis_url(5), cluster.env["DATABASE_URL"], sizes["p1_messages"],
                            sizes["p1_naive_sample"], profile=sizes["p1_profile"])
    if name == "P2":
        from . import p2_freshness
        return p2_freshness.run(cluster, sizes["p2_runs"])
    if name == "P3":
        from . import p3_scale
        # P3 runs last; it gets what is left of the run's time budget (make bench must end in < 20 min),
        # and if the runs do not all finish by then it reports how many did.
        timeout = sizes["p3_timeout"]
        if args.p3_timeout is None:
            timeout = max(60.0, min(timeout, sizes["budget"] - (time.monotonic() - STARTED)))
        return p3_scale.run(cluster, sizes["p3_count"], args.p3_max_workers, timeout)
    if name == "P4":
        from . import p4_from_zero
        return p4_from_zero.run(cluster, sizes["p4_samples"])
    if name == "P5":
        from . import p5_ingest
        return p5_ingest.run(cluster.env["DATABASE_URL"], sizes["p5_rows"])
    raise ValueError(name)


if __name__ == "__main__":
    sys.exit(main())
