"""P1 Gmail throughput, through bench.gmail_throughput's own pieces (mailbox, emulator process, one
real worker attempt, the naive serial loop), plus a CPU-bound run with the emulator's quota and latency
off and the worker's token bucket opened up (same batch size), optionally profiled with py-spy
(worker and emulator at once) to name the top costs.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench import gmail_throughput as gt
from receiptsync_worker import joblog
from receiptsync_worker.config import Settings
from receiptsync_worker.sync import Attempt, Tuning

from .common import Figure, cpu_seconds, say
from .p5_ingest import fresh_database

MONTHS = 18


def run_unpaced(emulator: gt.EmulatorProcess, redis_url: str, database_url: str, payload) -> dict:
    """gt.run_worker with the worker's shared token bucket opened up (rate), same burst → same batch size."""
    redis.Redis.from_url(redis_url).set(gt.contract.job_key(payload.job_id), payload.to_json())
    settings = Settings(job_id=payload.job_id, redis_url=redis_url, database_url=database_url,
                        gmail_endpoint=emulator.url, credentials_json=gt.credentials_json(emulator.url + "/token"),
                        worker_name="bench-cpu")
    attempt = Attempt(settings, tuning=Tuning(quota_rate=1e9))
    lines: list[str] = []
    joblog.configure(attempt.redactor, stream=gt._Lines(lines))
    started = time.monotonic()
    code = attempt.run()
    elapsed = time.monotonic() - started
    events = [json.loads(line) for line in lines if line.strip()]
    done = [e for e in events if e.get("event") in (gt.contract.LOG_JOB_DONE, gt.contract.LOG_JOB_FAIL)][-1]
    if code != 0:
        raise RuntimeError(f"the unpaced worker attempt failed: {done}")
    return {**done, "elapsed": elapsed}


class PySpy:
    """`py-spy record --format raw` attached to a running process; stopped with SIGINT."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        self.output = output
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        self.proc = None
        if exe is None:
            return
        self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                                      "--output", str(output), "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)

    def stop(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None
        if not self.output.exists():
            return {"error": (err or b"").decode(errors="replace")[-300:]}
        return top_costs(self.output)


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"


def top_costs(path: Path, limit: int = 12) -> dict[str, Any]:
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        self_counts[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    return {"samples": total,
            "self": [(name, round(100 * n / total, 1)) for name, n in self_counts.most_common(limit)] if total else [],
            "inclusive": [(name, round(100 * n / total, 1)) for name, n in inclusive.most_common(limit * 3)
                          if total] if total else []}


def run(work: Path, redis_url: str, admin_db_url: str, messages: int, naive_sample: int, latency_ms: float = 100.0,
        profile: bool = False, seed: int = 42) -> tuple[list[Figure], dict[str, Any]]:
    end = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    say(f"P1: generating a {messages}-message mailbox")
    truth = gt.generate_mailbox(work / "p1-mail", gt.ADDRESS, messages, 0.2, months=MONTHS, seed=seed, end_date=end)
    receipts = [m for m in truth if m.is_receipt]
    database_url = fresh_database(admin_db_url)
    redis.Redis.from_url(redis_url).flushdb()
    emulator = gt.EmulatorProcess(work / "p1-mail", latency_ms)
    try:
        payload = gt.bench_payload(end, MONTHS)
        say(f"P1: worker against the quota-enforcing emulator ({latency_ms:.0f} ms/request)")
        emulator.admin("/_emulator/stats/reset", {})
        worker = gt.run_worker(emulator, redis_url, database_url, payload)
        stats = emulator.mailbox_stats()
        minimum = stats["units"] / gt.UNITS_PER_SECOND
        ratio = worker["elapsed"] / minimum
        say(f"P1: worker {worker['elapsed']:.1f}s for {stats['units']} units (minimum {minimum:.1f}s); naive loop")
        emulator.admin("/_emulator/stats/reset", {})
        naive = gt.run_naive(emulator, payload, naive_sample, seed)
        speedup = naive["estimated_total"] / worker["elapsed"]

        say("P1: CPU-bound run (quota and latency off)")
        emulator.admin("/_emulator/config", {"quota_enabled": False, "latency_ms": 0})
        emulator.admin("/_emulator/stats/reset", {})
        cpu_payload = dataclasses.replace(gt.bench_payload(end, MONTHS), business_id="bench-cpu")
        import os
        spies = []
        if profile:
            spies = [PySpy(os.getpid(), work / "p1-worker.pyspy.txt"), PySpy(emulator.process.pid, work / "p1-emulator.pyspy.txt")]
        worker_cpu0, emulator_cpu0 = cpu_seconds(os.getpid()), cpu_seconds(emulator.process.pid)
        unpaced = run_unpaced(emulator, redis_url, database_url, cpu_payload)
        worker_cpu = cpu_seconds(os.getpid()) - worker_cpu0
        emulator_cpu = cpu_seconds(emulator.process.pid) - emulator_cpu0
        profiles = [spy.stop() for spy in spies]
        rate = unpaced["messages_scanned"] / unpaced["elapsed"]
    finally:
        emulator.stop()
    result = {
        "messages": messages, "receipts": len(receipts), "latency_ms": latency_ms,
        "worker": {k: worker[k] for k in ("elapsed", "messages_scanned", "saved_receipts") if k in worker},
        "emulator_stats": stats, "quota_bound_minimum_seconds": minimum, "ratio": ratio,
        "naive": naive, "speedup": speedup,
        "unpaced": {k: unpaced[k] for k in ("elapsed", "messages_scanned", "saved_receipts") if k in unpaced},
        "unpaced_messages_per_second": rate, "unpaced_worker_cpu_seconds": worker_cpu,
        "unpaced_emulator_cpu_seconds": emulator_cpu,
        "profile_worker": profiles[0] if profiles else None, "profile_emulator": profiles[1] if profiles else None,
    }
    say(f"P1: ratio {ratio:.3f}, speed-up {speedup:.2f}x, unpaced {rate:.0f} msg/s "
        f"(worker CPU {worker_cpu:.1f}s, emulator CPU {emulator_cpu:.1f}s in {unpaced['elapsed']:.1f}s)")
    figures = [
        Figure("P1", "elapsed ÷ quota-bound minimum", ratio, "", f"<= {gt.RATIO_GOAL}",
               f"{messages} messages, {worker['elapsed']:.1f}s vs {minimum:.1f}s ({stats['units']} units / 250/s)"),
        Figure("P1", "speed-up over naive serial loop", speedup, "x", f">= {gt.SPEEDUP_GOAL}",
               f"naive {naive['estimated_total']:.1f}s" + (" (extrapolated)" if naive["extrapolated"] else "")),
        Figure("P1", "messages/s, quota and latency off", rate, "msg/s", "",
               f"worker CPU {worker_cpu:.1f}s + emulator CPU {emulator_cpu:.1f}s in {unpaced['elapsed']:.1f}s"),
    ]
    return figures, result
