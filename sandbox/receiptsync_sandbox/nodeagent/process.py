"""One container = one local process in its own process group, output appended to a log file.

Like a container's PID 1, when the main process ends everything left in its group is killed.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
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
        while self.returncode is None:
            if group_rss_bytes(self.pid) > limit_bytes:
                kill_group(self.pid, signal.SIGKILL)
                return True
            await asyncio.sleep(interval)
        return False

    async def stop(self, grace_seconds: float) -> int:
        """SIGTERM the group, then SIGKILL it after the grace period."""
        kill_group(self.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.wait()), timeout=max(grace_seconds, 0.0))
        except asyncio.TimeoutError:
            kill_group(self.pid, signal.SIGKILL)
            return await self.wait()


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in the group (what a memory cgroup would charge)."""
    total, page = 0, os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ...
                with open(f"/proc/{entry.name}/statm", "rb") as statm:
                    total += int(statm.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
