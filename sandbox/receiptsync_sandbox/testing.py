"""Test helpers: a whole sandbox brought up with the real command, driven with the real kubectl/helm.

    with Sandbox() as sandbox:               # `receiptsync-sandbox up --no-operator` in a temp dir
        sandbox.kubectl("get", "pods")
        sandbox.api()                         # kubernetes.client.ApiClient from its kubeconfig
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from . import procs

BIN = Path(sys.executable).parent


class SandboxError(RuntimeError):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            env[name] = value
    return env


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, message: str = "") -> Any:
    """Poll until ``condition()`` is truthy; returns that value or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message or condition}")
        time.sleep(interval)


class Sandbox:
    def __init__(self, state_dir: Path | None = None, *, operator: bool = False, mailbox_dir: Path | None = None,
                 keep: bool = False):
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="receiptsync-sandbox-")).resolve()
        self.operator = operator
        self.mailbox_dir = mailbox_dir
        self.keep = keep
        self.env: dict[str, str] = {}
        self.up_seconds: float | None = None

    def __enter__(self) -> "Sandbox":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- lifecycle ---------------------------------------------------------------------------

    def command(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `receiptsync-sandbox ARGS --state-dir DIR`."""
        argv = [sys.executable, "-m", "receiptsync_sandbox.cli", *args, "--state-dir", str(self.state_dir)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        args = ["up"]
        if not self.operator:
            args.append("--no-operator")
        if self.mailbox_dir:
            args += ["--mailbox-dir", str(self.mailbox_dir)]
        began = time.monotonic()
        result = self.command(*args)
        self.up_seconds = time.monotonic() - began
        if result.returncode != 0:
            raise SandboxError(f"sandbox up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        self.env = read_env_file(self.state_dir / "env")

    def stop(self) -> None:
        self.command("down")
        if self._own_dir and not self.keep:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def leftover_processes(self) -> list[procs.ProcessId]:
        return procs.sandbox_processes(self.state_dir)

    # --- clients -------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    def process_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60,
                kubectl: str | None = None) -> subprocess.CompletedProcess:
        return self._run([kubectl or str(BIN / "kubectl"), *args], check, input, timeout)

    def helm(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return self._run([str(BIN / "helm"), *args], check, input, timeout)

    def _run(self, argv: list[str], check: bool, input: str | None, timeout: float) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.process_env(), timeout=timeout)
        if check and result.returncode != 0:
            raise SandboxError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def apply(self, manifest: dict | list[dict] | str, namespace: str | None = None) -> None:
        """`kubectl apply -f -` of a YAML/JSON text, one object, or several (a multi-document stream)."""
        if isinstance(manifest, str):
            text = manifest
        else:
            text = "\n---\n".join(json.dumps(obj) for obj in (manifest if isinstance(manifest, list) else [manifest]))
        self.kubectl(*(["-n", namespace] if namespace else []), "apply", "-f", "-", input=text)

    def get(self, kind: str, name: str | None = None, namespace: str | None = None, check: bool = True) -> dict | None:
        args = ["get", kind, *([name] if name else []), "-o", "json", *(["-n", namespace] if namespace else [])]
        result = self.kubectl(*args, check=check)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def api(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)


def container_pids(pod: dict) -> list[int]:
    """PIDs of a pod's containers, from the node agent's `sandbox://<pid>` container IDs."""
    pids = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        container_id = status.get("containerID") or ""
        if container_id.startswith("sandbox://"):
            pids.append(int(container_id.removeprefix("sandbox://")))
    return pids


def process_running(pid: int) -> bool:
    process = procs.identify(pid)
    return bool(process and procs.is_alive(process))
