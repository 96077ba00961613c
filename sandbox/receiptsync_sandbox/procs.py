"""Finding and stopping the sandbox's processes through /proc, without psutil.

A pid alone can be reused, so processes are remembered as (pid, start time). Every process `up`
starts carries ``RECEIPTSYNC_SANDBOX_PROCESS_OF=<state dir>`` in its environment, and every pod
process has ``HOME=<state dir>/pods/...``; `down` sweeps whatever still carries either.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

MARKER = "RECEIPTSYNC_SANDBOX_PROCESS_OF"


@dataclasses.dataclass(frozen=True)
class ProcessId:
    pid: int
    start_time: int  # clock ticks since boot (/proc/<pid>/stat field 22)

    def to_json(self) -> dict:
        return {"pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_json(cls, data: dict) -> "ProcessId":
        return cls(int(data["pid"]), int(data["start_time"]))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is parenthesised and may contain spaces; fields resume after the last ')'.
    return text[text.rfind(")") + 2:].split()


def identify(pid: int) -> ProcessId | None:
    fields = _stat_fields(pid)
    return ProcessId(pid, int(fields[19])) if fields else None


def is_alive(process: ProcessId) -> bool:
    fields = _stat_fields(process.pid)
    return bool(fields) and fields[0] != "Z" and int(fields[19]) == process.start_time


def process_group(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[2]) if fields else None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def _environ(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ancestors() -> set[int]:
    chain, pid = set(), os.getpid()
    while pid > 1:
        chain.add(pid)
        fields = _stat_fields(pid)
        if not fields:
            break
        pid = int(fields[1])
    return chain


def belongs_to(pid: int, state_dir: Path) -> bool:
    marker = f"{MARKER}={state_dir}"
    pods_home = f"HOME={state_dir}/pods/"
    return any(entry == marker or entry.startswith(pods_home) for entry in _environ(pid))


def sandbox_processes(state_dir: Path) -> list[ProcessId]:
    """Live processes started by the sandbox in ``state_dir`` (never this process or its parents)."""
    state_dir = Path(state_dir).resolve()
    spared = _ancestors()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spared:
            continue
        pid = int(entry)
        process = identify(pid)
        if process and is_alive(process) and belongs_to(pid, state_dir):
            found.append(process)
    return found


def signal_process(process: ProcessId, sig: int, group: bool = False) -> None:
    if not is_alive(process):
        return
    try:
        if group and process_group(process.pid) == process.pid:
            os.killpg(process.pid, sig)
        else:
            os.kill(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_gone(processes: list[ProcessId], timeout: float) -> list[ProcessId]:
    """Wait until all have exited; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if is_alive(p)]
    return alive


def stop(processes: list[ProcessId], grace: float, group: bool = True) -> None:
    """SIGTERM (their groups), wait up to ``grace``, then SIGKILL what is left."""
    for process in processes:
        signal_process(process, signal.SIGTERM, group)
    for process in wait_gone(processes, grace):
        signal_process(process, signal.SIGKILL, group)
    wait_gone(processes, 5.0)
