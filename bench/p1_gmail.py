"""P1 Gmail throughput, through bench.gmail_throughput's own pieces (mailbox, what a sync of it
requires, emulator process, real worker attempts, the naive serial loop):

* at two emulator latencies (100 ms and 20 ms per HTTP request), one worker attempt each against the
  quota (elapsed ÷ the quota-bound minimum of the units the mailbox requires), and the naive loop;
* messages/s with the emulator's quota and latency off and the worker's token bucket opened up (same
  burst, so the same batch size), over a run of at least 10 s (a mailbox of copies of the receipts),
  with no profiler attached;
* in a separate, profiled run (full size only): py-spy on the worker's process and the emulator to
  name the top costs.
"""
from __future__ import annotations

import collections
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench import gmail_throughput as gt
from receiptsync_worker.store import Store
from receiptsync_worker.config import Tuning

from .common import Figure, cpu_seconds, say

MONTHS = 18
LATENCIES_MS = (100.0, 20.0)  # the first is the one with the goal
UNPACED_ADDRESS = "unpaced@example.com"


def fresh_database(admin_url: str) -> str:
    name = "bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    Store(url).migrate()
    return url


def copy_receipts(source: Path, target: Path, copies: int, truth: list) -> int:
    """A mailbox of ``copies`` copies of the receipts in ``source`` (new file names, so new ids)."""
    target.mkdir(parents=True, exist_ok=True)
    receipts = [m.file_name for m in truth if m.is_receipt]
    for k in range(copies):
        for name in receipts:
            shutil.copyfile(source / name, target / f"c{k:02d}-{name}")
    return copies * len(receipts)


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
    # "function (path/to/module.py:123)" -> "function (to/module.py)"
    name, _, where = frame.partition(" (")
    parts = Path(where.rsplit(":", 1)[0].rstrip(")")).parts
    return f"{name} ({'/'.join(parts[-2:]) if parts else where})"


def top_costs(path: Path, limit: int = 12) -> dict[str, Any]:
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += int(count)
        self_counts[frames[-1]] += int(count)
        for name in set(frames):
            inclusive[name] += int(count)
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}
    return {"samples": total, "self": [(n, round(100 * c / total, 1)) for n, c in self_counts.most_common(limit)],
            "inclusive": [(n, round(100 * c / total, 1)) for n, c in inclusive.most_common(limit * 3)]}


def unpaced(emulator: gt.EmulatorProcess, redis_url: str, database_url: str, payload, address: str,
            spies: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One attempt in this process with the emulator's quota and latency off and the worker's bucket
    opened up (its rate; same burst, same batch size); CPU of this process and of the emulator."""
    profilers = [PySpy(pid, out) for pid, out in zip((os.getpid(), emulator.process.pid), spies)]
    worker0, emulator0 = cpu_seconds(os.getpid()) or 0.0, cpu_seconds(emulator.process.pid) or 0.0
    done = gt.run_worker(emulator, redis_url, database_url, payload, tuning=Tuning(quota_rate=1e9), address=address)
    worker_cpu = (cpu_seconds(os.getpid()) or 0.0) - worker0
    emulator_cpu = (cpu_seconds(emulator.process.pid) or 0.0) - emulator0
    profiles = [spy.stop() for spy in profilers]
    return {"elapsed": done["elapsed"], "messages_scanned": done["messages_scanned"],
            "saved_receipts": done["saved_receipts"], "messages_per_second": done["messages_scanned"] / done["elapsed"],
            "worker_cpu_seconds": worker_cpu, "emulator_cpu_seconds": emulator_cpu,
            "profile_worker": profiles[0] if profiles else None, "profile_emulator": profiles[1] if profiles else None}


def run(work: Path, redis_url: str, admin_db_url: str, messages: int, naive_sample: int, unpaced_copies: int,
        profile: bool = False, seed: int = 42) -> tuple[list[Figure], dict[str, Any]]:
    end = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    mail = work / "p1-mail"
    say(f"P1: generating a {messages}-message mailbox")
    truth = gt.generate_mailbox(mail, gt.ADDRESS, messages, 0.2, months=MONTHS, seed=seed, end_date=end)
    copies = copy_receipts(mail / gt.ADDRESS, mail / UNPACED_ADDRESS, unpaced_copies, truth)
    database_url = fresh_database(admin_db_url)
    redis.Redis.from_url(redis_url).flushdb()
    required = gt.required_units(mail, gt.ADDRESS, gt.receipt_query(gt.bench_payload(end, MONTHS)))
    minimum = gt.quota_minimum(required)
    emulator = gt.EmulatorProcess(mail, LATENCIES_MS[0])
    paced: dict[str, Any] = {}
    try:
        for latency in LATENCIES_MS:
            emulator.admin("/_emulator/config", {"latency_ms": latency})
            time.sleep(1.5)  # the emulator's and the worker's quota buckets full again
            emulator.admin("/_emulator/stats/reset", {})
            say(f"P1: worker against the quota ({latency:.0f} ms/request); minimum {minimum:.1f}s")
            payload = gt.bench_payload(end, MONTHS, f"p1-{latency:.0f}ms")
            worker = gt.run_worker(emulator, redis_url, database_url, payload)
            stats = emulator.mailbox_stats()
            naive = gt.run_naive(emulator, gt.bench_payload(end, MONTHS), naive_sample, seed)
            paced[f"{latency:.0f}"] = {
                "latency_ms": latency, "worker_elapsed": worker["elapsed"],
                "worker_scanned": worker["messages_scanned"], "worker_saved": worker["saved_receipts"],
                "units_spent": stats.get("units"), "responses_429": stats.get("responses_429", 0),
                "ratio": worker["elapsed"] / minimum, "naive": naive,
                "speedup": naive["estimated_total"] / worker["elapsed"]}
            say(f"P1: {latency:.0f} ms: worker {worker['elapsed']:.1f}s ({stats.get('units')} units spent, "
                f"{required['units']} required), naive {naive['estimated_total']:.1f}s")
        emulator.admin("/_emulator/config", {"quota_enabled": False, "latency_ms": 0})
        say(f"P1: CPU-bound run, quota and latency off, {copies} messages, no profiler")
        payload = gt.bench_payload(end, MONTHS, "p1-unpaced")
        cpu_run = unpaced(emulator, redis_url, database_url, payload, UNPACED_ADDRESS)
        profiled = None
        if profile:
            say("P1: the same kind of run again (the 5,000-message mailbox), profiled with py-spy")
            profiled = unpaced(emulator, redis_url, database_url, gt.bench_payload(end, MONTHS, "p1-profiled"),
                               gt.ADDRESS, spies=(work / "p1-worker.pyspy.txt", work / "p1-emulator.pyspy.txt"))
    finally:
        emulator.stop()
    headline, low = paced[f"{LATENCIES_MS[0]:.0f}"], paced[f"{LATENCIES_MS[1]:.0f}"]
    result = {"messages": messages, "receipts": sum(1 for m in truth if m.is_receipt), "required": required,
              "quota_rate": gt.UNITS_PER_SECOND, "emulator_burst": gt.EMULATOR_BURST,
              "quota_bound_minimum_seconds": minimum, "paced": paced, "unpaced": cpu_run, "profiled": profiled}
    say(f"P1: ratio {headline['ratio']:.3f}/{low['ratio']:.3f}, speed-up {headline['speedup']:.2f}x/"
        f"{low['speedup']:.2f}x, unpaced {cpu_run['messages_per_second']:.0f} msg/s over {cpu_run['elapsed']:.1f}s")
    need = (f"{required['units']} units required ({required['messages']} matching messages, "
            f"{required['attachments']} attachments), minimum ({required['units']} − {gt.EMULATOR_BURST:.0f} burst) "
            f"÷ {gt.UNITS_PER_SECOND:.0f}/s = {minimum:.1f}s")
    figures = []
    for run_ in (headline, low):
        ms = f"{run_['latency_ms']:.0f} ms"
        figures.append(Figure("P1", f"elapsed ÷ quota-bound minimum, {ms}/request", run_["ratio"], "",
                              f"<= {gt.RATIO_GOAL}", f"{run_['worker_elapsed']:.1f}s, {run_['units_spent']} units "
                              f"spent; {need}"))
    for run_ in (headline, low):
        ms = f"{run_['latency_ms']:.0f} ms"
        naive = run_["naive"]
        figures.append(Figure(
            "P1", f"speed-up over naive serial loop, {ms}/request", run_["speedup"], "x",
            f">= {gt.SPEEDUP_GOAL}" if run_ is headline else "",
            f"naive {naive['estimated_total']:.1f}s ({naive['per_message'] * 1000:.0f} ms/message"
            f"{', extrapolated from ' + str(naive['sampled']) if naive['extrapolated'] else ''}); depends on the "
            f"latency: the worker is bound by the quota, the naive loop by round trips"))
    figures.append(Figure("P1", "messages/s, quota and latency off", cpu_run["messages_per_second"], "msg/s", "",
                          f"{cpu_run['messages_scanned']} matching messages in {cpu_run['elapsed']:.1f}s, no profiler; "
                          f"worker CPU {cpu_run['worker_cpu_seconds']:.1f}s, emulator CPU "
                          f"{cpu_run['emulator_cpu_seconds']:.1f}s"))
    return figures, result

