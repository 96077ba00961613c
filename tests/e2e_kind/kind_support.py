"""What the kind e2e needs, and the one decision whether it can run here.

pytest-kind's own ``kind_cluster`` fixture downloads ``kind`` and ``kubectl`` from the internet
when they are missing; our machines reach package registries only, so the suite never lets it:
``kind`` comes from ``--kind-bin`` or PATH, ``kubectl`` from ``--kind-kubectl-bin``, the venv
(``make`` puts it in ``.venv/bin``) or PATH, and without them (or without a Docker engine, which
kind runs its nodes in and ``docker build`` needs) the tests skip with the reason.

:func:`skip_reason` is pure (tested everywhere); :func:`probe` is the thin shell that looks at the
machine.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
DOCKER_PROBE_TIMEOUT_SECONDS = 20
_MAX_DETAIL = 160


@dataclasses.dataclass(frozen=True)
class KindEnvironment:
    """What the machine offers. Paths are None when the tool was not found."""

    docker_cli: str | None
    # The engine's server version when `docker info` reached it, else None.
    docker_engine: str | None
    # Why the engine was not reachable (first line of `docker info`'s error), for the skip reason.
    docker_error: str = ""
    kind_bin: str | None = None
    kubectl_bin: str | None = None
    helm_bin: str | None = None


def _detail(text: str) -> str:
    """The first non-empty line of a tool's error, shortened: enough to tell why, never a wall."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"
    return ""


def skip_reason(env: KindEnvironment) -> str | None:
    """None when the kind e2e can run; else the reason it is skipped (one line)."""
    if not env.docker_cli:
        return "needs a Docker engine for kind: none reachable here (no docker CLI on PATH)"
    if not env.docker_engine:
        why = _detail(env.docker_error) or "docker info failed"
        return f"needs a Docker engine for kind: none reachable here ({why})"
    if not env.kind_bin:
        return ("needs the kind binary: none on PATH and no --kind-bin given "
                "(pytest-kind would download it; this suite never downloads binaries)")
    if not env.kubectl_bin:
        return ("needs kubectl: none in .venv/bin or on PATH and no --kind-kubectl-bin given "
                "(run `make deps`; this suite never downloads binaries)")
    if not env.helm_bin:
        return "needs helm: none in .venv/bin or on PATH (run `make deps`)"
    return None


# --- looking at the machine ------------------------------------------------------------------------
def _existing(path: str | None) -> str | None:
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return str(Path(path).resolve())
    return None


def find_tool(name: str, explicit: str | None = None, *, venv_first: bool = True) -> str | None:
    """An explicitly given path (must exist), else .venv/bin/NAME, else NAME on PATH."""
    if explicit:
        return _existing(explicit)
    if venv_first:
        found = _existing(str(VENV_BIN / name))
        if found:
            return found
    return shutil.which(name)


def probe_docker(docker_cli: str | None, timeout: float = DOCKER_PROBE_TIMEOUT_SECONDS) -> tuple[str | None, str]:
    """(server version, "") when the engine answers, else (None, why)."""
    if not docker_cli:
        return None, "no docker CLI"
    try:
        done = subprocess.run(
            [docker_cli, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, f"docker info did not answer within {timeout:g}s"
    except OSError as exc:
        return None, f"docker CLI could not run: {exc}"
    version = done.stdout.strip()
    if done.returncode == 0 and version and "error" not in version.lower():
        return version, ""
    return None, _detail(done.stderr) or _detail(done.stdout) or f"docker info exited {done.returncode}"


def probe(kind_bin: str | None = None, kubectl_bin: str | None = None) -> KindEnvironment:
    """Look at this machine. ``kind_bin``/``kubectl_bin``: pytest-kind's --kind-bin/--kind-kubectl-bin."""
    docker_cli = shutil.which("docker")
    version, error = probe_docker(docker_cli)
    return KindEnvironment(
        docker_cli=docker_cli,
        docker_engine=version,
        docker_error=error,
        # kind is not a Python package: PATH (or the explicit option) only.
        kind_bin=find_tool("kind", kind_bin, venv_first=False),
        kubectl_bin=find_tool("kubectl", kubectl_bin),
        helm_bin=find_tool("helm"),
    )
