"""`receiptsync-sandbox down`: stop everything `up` started in a state dir, leave no process behind.

Order matters: the node agent first (it stops the pods' processes), then the control plane
(controller-manager and scheduler, the API server, etcd) and the Gmail emulator, then redis and
PostgreSQL; finally a /proc sweep for anything still carrying the sandbox's marker. Logs stay in
DIR/logs.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from . import procs, services, statefile

Say = Callable[[str], None]


def bring_down(state_dir: Path, say: Say = print) -> bool:
    """Returns whether anything was running."""
    state_dir = Path(state_dir).resolve()
    state = statefile.load(state_dir)
    was_running = bool(state and state.live_processes())
    if state:
        _stop_components(state, say)
        _stop_postgres(state, say)
    leftovers = procs.sandbox_processes(state_dir)
    if leftovers:
        say(f"stopping {len(leftovers)} leftover process(es): {', '.join(str(p.pid) for p in leftovers)}")
        procs.stop(leftovers, grace=2.0)
        was_running = True
    if state:
        state.path.unlink(missing_ok=True)
    return was_running


def _stop_components(state: statefile.SandboxState, say: Say) -> None:
    live = state.live_processes()
    # The node agent needs a few seconds to stop pods gracefully before it exits.
    groups = ((("nodeagent",), 15.0), (("kube-controller-manager", "kube-scheduler", "gmail"), 5.0),
              (("kube-apiserver",), 10.0), (("etcd",), 5.0), (("redis",), 5.0))
    for group, grace in groups:
        present = [live[name] for name in group if name in live]
        if present:
            say(f"stopping {', '.join(name for name in group if name in live)}")
            procs.stop(present, grace=grace, group=True)


def _stop_postgres(state: statefile.SandboxState, say: Say) -> None:
    info = state.postgres
    if not info:
        return
    if info.get("data_dir") and Path(info["data_dir"]).exists():
        say("stopping postgres")
        server = services.PostgresServer(port=int(info.get("port") or 0), data_dir=Path(info["data_dir"]),
                                         bindir=info["bindir"], run_as=info.get("run_as"))
        server.stop()
        _keep_log(Path(info["data_dir"]) / "server.log", state.state_dir / "logs" / "postgres.log")
    services.remove_postgres_data(Path(info.get("directory") or state.state_dir / "postgres"))


def _keep_log(source: Path, link: Path) -> None:
    """The server log lives in the data dir, which is deleted: keep a copy where the link was."""
    if not source.exists():
        return
    link.unlink(missing_ok=True)
    shutil.copyfile(source, link)
