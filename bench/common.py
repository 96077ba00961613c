"""What every benchmark shares: percentiles, process CPU/RSS readings, machine info and load, figures
and the results table."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else None,
            "mean": sum(values) / len(values) if values else None}


def proc_status(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (its threads included), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def uptime() -> str:
    """`uptime`'s line: the machine's load when a figure was taken (it is shared)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def children_cpu_seconds(pid: int) -> float | None:
    """cutime + cstime of a process: the CPU of its children it has reaped (and theirs), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, Any]:
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "date_local": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_bytes": mem_total,
        "memory_gib": round(mem_total / 2**30, 1) if mem_total else None,
        "load_average_start": load_average(),
        "uptime_start": uptime(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def busy_processes(limit: int = 8) -> list[str]:
    """The top CPU users right now (to note what else the machine was doing)."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip()[:160] for line in out[1:limit + 1]]


@dataclasses.dataclass
class Figure:
    """One line of the results table."""

    bench: str  # P1..P5
    name: str
    value: float | None
    unit: str = ""
    goal: str = ""  # e.g. "<= 1.10"; empty: informational
    detail: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "NOT MEASURED"
        if not self.goal:
            return "info"
        op, _, limit = self.goal.partition(" ")
        bound = float(limit)
        ok = self.value <= bound if op == "<=" else self.value >= bound
        return "pass" if ok else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or float(value).is_integer():
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(figures: list[Figure]) -> str:
    header = ("bench", "figure", "value", "goal", "result")
    rows = [(f.bench, f.name, fmt(f.value, f.unit), f.goal or "-", f.status) for f in figures]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(figures: list[Figure]) -> str:
    lines = ["| bench | figure | value | goal | result |", "|---|---|---|---|---|"]
    for f in figures:
        lines.append(f"| {f.bench} | {f.name} | {fmt(f.value, f.unit)} | {f.goal or '–'} | {f.status} |")
    return "\n".join(lines)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)
