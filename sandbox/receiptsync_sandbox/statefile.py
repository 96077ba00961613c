"""DIR/sandbox.json: what `up` started, so `down` can stop exactly that.

Written after every step, so a half-finished `up` can still be taken down.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .procs import ProcessId, is_alive

FILE_NAME = "sandbox.json"


@dataclasses.dataclass
class SandboxState:
    state_dir: Path
    processes: dict[str, ProcessId] = dataclasses.field(default_factory=dict)  # component -> process
    redis_pid: ProcessId | None = None
    postgres: dict | None = None  # port, data_dir, bindir, run_as
    urls: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.state_dir / FILE_NAME

    def save(self) -> None:
        data = {
            "processes": {name: process.to_json() for name, process in self.processes.items()},
            "redis": self.redis_pid.to_json() if self.redis_pid else None,
            "postgres": self.postgres,
            "urls": self.urls,
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2))
        temporary.replace(self.path)

    def live_processes(self) -> dict[str, ProcessId]:
        every = dict(self.processes)
        if self.redis_pid:
            every["redis"] = self.redis_pid
        return {name: process for name, process in every.items() if is_alive(process)}


def load(state_dir: Path) -> SandboxState | None:
    path = Path(state_dir) / FILE_NAME
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return SandboxState(
        state_dir=Path(state_dir),
        processes={name: ProcessId.from_json(value) for name, value in (data.get("processes") or {}).items()},
        redis_pid=ProcessId.from_json(data["redis"]) if data.get("redis") else None,
        postgres=data.get("postgres"),
        urls=data.get("urls") or {},
    )
