"""One container = one local process in its own process group, output appended to a log file.

Like a container's PID 1, when the main process ends everything left in its group is killed.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Collection
from pathlib import Path


class StartError(Exception):
    """The process could not be started (the runtime's StartError, exit code 128)."""


def resolve_executable(name: str, path: str) -> str:
    if "/" in name:
        if os.access(name, os.X_OK):
            return name
        raise StartError(f'exec: "{name}": no such file or directory')
    found = shutil.which(name, path=path)
    if not found:
        raise StartError(f'exec: "{name}": executable file not found in $PATH')
    return found


class ContainerProcess:
    def __init__(self, process: asyncio.subprocess.Process):
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> "ContainerProcess":
        if not argv:
            raise StartError("no command specified")
        executable = resolve_executable(argv[0], env.get("PATH", ""))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab", buffering=0) as log:
            try:
                process = await asyncio.create_subprocess_exec(
                    executable, *argv[1:], env=env, cwd=str(cwd), stdin=asyncio.subprocess.DEVNULL,
                    stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                raise StartError(f'exec: "{argv[0]}": {exc.strerror or exc}') from exc
        return cls(process)

    async def wait(self) -> int:
        returncode = await self._process.wait()
        kill_group(self.pid, signal.SIGKILL)  # leftovers die with PID 1, as in a container
        return returncode

    async def enforce_memory_limit(self, limit_bytes: int, interval: float = 0.25) -> bool:
        """Play the memory cgroup: SIGKILL the container when its processes' RSS passes the limit.
        Returns True once it did (the kubelet then reports OOMKilled, exit code 137)."""
        MEMORY.watch(self.pid)
        try:
            while self.returncode is None:
                if MEMORY.rss(self.pid, max_age=interval) > limit_bytes:
                    kill_group(self.pid, signal.SIGKILL)
                    return True
                await asyncio.sleep(interval)
            return False
        finally:
            MEMORY.unwatch(self.pid)

    async def stop(self, grace_seconds: float) -> int:
        """SIGTERM the group, then SIGKILL it after the grace period."""
        kill_group(self.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.wait()), timeout=max(grace_seconds, 0.0))
        except asyncio.TimeoutError:
            kill_group(self.pid, signal.SIGKILL)
            return await self.wait()


def groups_rss_bytes(pgids: Collection[int]) -> dict[int, int]:
    """Resident memory of every process in each group (what a memory cgroup would charge), from one
    pass over /proc."""
    totals, page = dict.fromkeys(pgids, 0), os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            pgid = int(fields[2])  # fields after "(comm)": state ppid pgrp ...
            if pgid in totals:
                with open(f"/proc/{entry.name}/statm", "rb") as statm:
                    totals[pgid] += int(statm.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return totals


class GroupMemory:
    """The groups with a memory limit on this node, sampled together: one pass over /proc serves
    every container for ``max_age`` seconds (a pass per container every 0.25 s was most of the node
    agent's CPU with eight containers running)."""

    def __init__(self) -> None:
        self._watched: set[int] = set()
        self._sample: dict[int, int] = {}
        self._sampled_at = float("-inf")

    def watch(self, pgid: int) -> None:
        self._watched.add(pgid)

    def unwatch(self, pgid: int) -> None:
        self._watched.discard(pgid)

    def rss(self, pgid: int, *, max_age: float) -> int:
        now = time.monotonic()
        # 0.9: containers check on their own timers; the first one due after a pass makes the next.
        if pgid not in self._sample or now - self._sampled_at >= max_age * 0.9:
            self._sample = groups_rss_bytes(self._watched | {pgid})
            self._sampled_at = now
        return self._sample[pgid]


MEMORY = GroupMemory()


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
