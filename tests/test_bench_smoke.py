"""`python -m bench --smoke` (what `make bench-smoke` runs): every benchmark P1–P5 runs in a sandbox
with tiny sizes and every figure is measured and sane. Goals are not asserted: a smoke run on a busy
CI machine measures, it does not judge (the full `make bench` and docs/benchmarks.md do that)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(450)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("bench") / "results.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--output", str(output)], cwd=ROOT,
                            capture_output=True, text=True, timeout=420)
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
    assert set(smoke["details"]) == {"P1", "P2", "P3", "P4", "P5"}
    assert {f["bench"] for f in smoke["figures"]} == {"P1", "P2", "P3", "P4", "P5"}
    for f in smoke["figures"]:
        assert f["value"] is not None and f["value"] == f["value"], f  # present, not NaN
        assert f["status"] in ("pass", "MISS", "info"), f
    # The table was printed and the machine noted.
    assert "P3" in smoke["stdout"] and "goal" in smoke["stdout"]
    machine = smoke["machine"]
    assert machine["nproc"] >= 1 and machine["memory_bytes"] > 0 and machine["python"]
    assert len(machine["load_average_start"]) == 3 and machine["date"]


def test_p1_gmail_throughput_is_sane(smoke):
    p1 = smoke["details"]["P1"]
    assert p1["worker"]["messages_scanned"] > 0 and p1["emulator_stats"]["units"] > 0
    assert figure(smoke, "P1", "elapsed")["value"] > 0
    assert figure(smoke, "P1", "speed-up")["value"] > 0
    assert p1["unpaced_messages_per_second"] > 0


def test_p2_freshness_covers_every_run(smoke):
    p2 = smoke["details"]["P2"]
    assert p2["finished"] == p2["runs"] == smoke["sizes"]["p2_runs"]
    # Status updates were matched to the heartbeats that caused them: at least each run's Finished
    # (a run's Started can share one status version with its Finished when the worker is quick).
    assert p2["latency_all"]["n"] >= p2["runs"] and p2["unmatched_status_news"] == 0
    assert p2["latency_all"]["p95"] > 0
    assert p2["latency_all"]["p50"] <= p2["latency_all"]["p95"] <= p2["latency_all"]["p99"]
    assert p2["api_writes_per_run"] > 0


def test_p3_every_run_finished(smoke):
    p3 = smoke["details"]["P3"]
    assert p3["complete"] and p3["finished"] == p3["count"] == smoke["sizes"]["p3_count"]
    assert p3["failed"] == 0
    assert p3["wall_seconds"] > 0
    assert 10 * 2**20 < p3["operator_peak_rss_bytes"] < 4 * 2**30
    assert p3["api_requests_per_run"] > 0 and p3["redis_ops_per_run"] > 0


def test_p4_scale_from_zero(smoke):
    p4 = smoke["details"]["P4"]
    assert p4["measured"] == p4["samples"] == smoke["sizes"]["p4_samples"]
    assert p4["apply_to_job_start"]["p95"] > 0
    assert p4["queue_drained_to_zero_jobs_seconds"] >= 0
    assert p4["burst_peak_active_jobs"] >= 1


def test_p5_ingest(smoke):
    p5 = smoke["details"]["P5"]
    assert p5["store_rows_per_second"] > 0 and p5["row_by_row_rows_per_second"] > 0
    rows = smoke["sizes"]["p5_rows"]
    assert p5["rows_in_db"] == {"p5-baseline": rows, "p5-store": rows, "p5-store-500": rows}
