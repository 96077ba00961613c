"""`python -m bench --smoke` (what `make bench-smoke` runs): every benchmark P1–P6 runs in a sandbox on
the upstream control plane with tiny sizes, and every figure is measured and sane. Goals are not
asserted: a smoke run on a busy CI machine measures, it does not judge (the full `make bench` and
docs/benchmarks.md do that)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = {"P1", "P2", "P3", "P4", "P5", "P6"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("bench") / "results.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--output", str(output)], cwd=ROOT,
                            capture_output=True, text=True, timeout=570)
    assert output.exists(), f"no results file\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    results = json.loads(output.read_text())
    assert result.returncode == 0, (f"bench --smoke failed: {results.get('errors')}\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    results["stdout"] = result.stdout
    return results


def figure(results: dict, bench: str, prefix: str) -> dict:
    found = [f for f in results["figures"] if f["bench"] == bench and f["name"].startswith(prefix)]
    assert found, f"{bench} figure {prefix!r} missing: {[f['name'] for f in results['figures']]}"
    return found[0]


def test_every_benchmark_ran_and_every_figure_was_measured(smoke):
    assert smoke["errors"] == {}
    assert set(smoke["details"]) == BENCHES
    assert {f["bench"] for f in smoke["figures"]} == BENCHES
    for f in smoke["figures"]:
        assert f["value"] is not None and f["value"] == f["value"], f  # present, not NaN
        assert f["status"] in ("pass", "MISS", "info"), f
    # The table was printed; the machine, its load and the real control plane's version noted.
    assert "P6" in smoke["stdout"] and "goal" in smoke["stdout"]
    machine = smoke["machine"]
    assert machine["nproc"] >= 1 and machine["memory_bytes"] > 0 and machine["python"]
    assert len(machine["load_average_start"]) == 3 and machine["date"] and "load average" in machine["uptime_start"]
    assert smoke["kubernetes"]["server_version"].startswith("v1.")
    for name in BENCHES:
        assert "load average" in smoke["details"][name]["uptime_after"]


def test_p1_gmail_throughput_is_sane(smoke):
    p1 = smoke["details"]["P1"]
    required = p1["required"]
    assert required["messages"] > 0 and required["units"] >= 5 * required["messages"]
    assert p1["quota_bound_minimum_seconds"] == pytest.approx(max(0, required["units"] - p1["emulator_burst"]) / 250)
    assert set(p1["paced"]) == {"100", "20"}  # two latencies, a worker run and a naive loop at each
    for run in p1["paced"].values():
        assert run["worker_scanned"] == required["messages"] and run["units_spent"] >= required["units"]
        assert run["naive"]["listed"] == required["messages"] and run["speedup"] > 0
    assert figure(smoke, "P1", "elapsed ÷ quota-bound minimum, 100 ms")["value"] > 0
    assert figure(smoke, "P1", "speed-up over naive serial loop, 20 ms")["value"] > 0
    assert p1["unpaced"]["messages_scanned"] > required["messages"] and p1["unpaced"]["messages_per_second"] > 0
    assert p1["unpaced"]["profile_worker"] is None  # no profiler on the measured run


def test_p2_freshness_separates_transitions_from_progress(smoke):
    p2 = smoke["details"]["P2"]
    assert p2["finished"] == p2["runs"] == smoke["sizes"]["p2_runs"]
    # Each run's Started and Finished reached status (Started may share a version with a progress update).
    assert p2["latency_transitions"]["n"] >= p2["runs"] and p2["unmatched_status_news"] == 0
    assert p2["latency_progress"]["n"] >= 1  # the mailboxes are big enough for progress-only updates
    for kind in ("latency_transitions", "latency_progress"):
        stats = p2[kind]
        assert 0 <= stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert p2["api_writes_per_run"] > 0 and p2["api"]["forbidden"] == 0  # from kube-apiserver's audit log


def test_p3_every_run_finished_through_the_operator_and_as_plain_processes(smoke):
    p3 = smoke["details"]["P3"]
    assert p3["complete"] and p3["finished"] == p3["count"] == smoke["sizes"]["p3_count"]
    assert p3["failed"] == 0
    assert p3["direct"]["finished"] == p3["count"] and p3["direct"]["parallelism"] == smoke["sizes"]["p3_max_workers"]
    assert p3["overhead_ratio"] == pytest.approx(p3["wall_seconds"] / p3["direct"]["wall_seconds"])
    assert 10 * 2**20 < p3["operator_peak_rss_bytes"] < 4 * 2**30
    assert p3["api_requests_per_run"] > 0 and p3["redis_ops_per_run"] > 0
    assert p3["cpu_per_run"]["worker containers"] > 0 and p3["direct"]["cpu_per_run"]["direct workers"] > 0


def test_p4_scale_from_zero_through_the_scheduler(smoke):
    p4 = smoke["details"]["P4"]
    assert p4["measured"] == p4["samples"] == smoke["sizes"]["p4_samples"]
    stages = p4["stages_p50_seconds_after_apply"]
    assert 0 < stages["job_created"] <= stages["pod_created"] <= stages["pod_bound"] <= stages["job_start"]
    assert p4["apply_to_job_start"]["p95"] > 0
    assert p4["queue_drained_to_zero_jobs_seconds"] >= 0 and p4["burst_peak_active_jobs"] >= 1


def test_p5_ingest_on_a_durable_postgres(smoke):
    p5 = smoke["details"]["P5"]
    assert p5["postgres_settings"] == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    rounds, rows = smoke["sizes"]["p5_rounds"], smoke["sizes"]["p5_rows"]
    assert len(p5["store_rates"]) == len(p5["row_by_row_rates"]) == rounds
    expected = {**{f"p5-store-{i}": rows for i in range(rounds)}, **{f"p5-baseline-{i}": rows for i in range(rounds)},
                "p5-store-500": rows}
    assert p5["rows_in_db"] == expected


def test_p6_idle_sync_cost(smoke):
    p6 = smoke["details"]["P6"]
    assert len(p6["samples"]) == smoke["sizes"]["p6_samples"]
    for sample in p6["samples"]:
        assert sample["messages_scanned"] == 0  # nothing new: the run found no mail to fetch
        assert 0 < sample["cpu"] and 0 < sample["job_start"] < sample["job_done"] < sample["wall"]
    profile = p6["profile"]
    assert profile["samples"] > 0 and profile["categories"]
    assert any(name.startswith("import") for name, _ in profile["categories"])
