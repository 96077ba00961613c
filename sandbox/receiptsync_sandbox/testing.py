"""Test helpers: a whole sandbox brought up with the real command, driven with the real kubectl/helm,
and the real operator run against it as a subprocess (the operator e2e tests, the fault suite and the
benchmarks all start it the same way).

    with Sandbox() as sandbox:               # `receiptsync-sandbox up --no-operator` in a temp dir
        sandbox.kubectl("get", "pods")
        sandbox.api()                         # kubernetes.client.ApiClient from its kubeconfig
        op = OperatorProcess.launch(sandbox, tmp / "op-0.log", namespace="t-1", redis_url=...,
                                    identity="op-0", token=service_account_token("t-1", "receiptsync-operator"))
        op.wait_leading(); op.logged("leading"); op.stop()
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

from . import procs

BIN = Path(sys.executable).parent
OPERATOR_BIN = BIN / "receiptsync-operator"
# Set it to keep the per-test operator logs (and print where they are).
KEEP_LOGS_ENV = "RECEIPTSYNC_KEEP_OPERATOR_LOGS"


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

    def helm(self, *args: str, check: bool = True, input: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
        return self._run([str(BIN / "helm"), *args], check, input, timeout)

    def _run(self, argv: list[str], check: bool, input: str | None, timeout: float) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.process_env(),
                                timeout=timeout)
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

    # --- the real API server's audit log (one JSON record per request) ---------------------------------
    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    def audit(self, user: str | None = None, since_line: int = 0) -> list[dict]:
        """Audit records (stage ResponseComplete) from line ``since_line`` on, optionally of one user."""
        records = []
        with open(self.audit_log, "rb") as log:
            for number, raw in enumerate(log):
                if number < since_line or not raw.strip():
                    continue
                record = json.loads(raw)
                if record.get("stage") != "ResponseComplete":
                    continue
                if user is None or (record.get("user") or {}).get("username") == user:
                    records.append(record)
        return records

    def audit_mark(self) -> int:
        """The audit log's current length in lines: pass it to :meth:`audit` as ``since_line``."""
        with open(self.audit_log, "rb") as log:
            return sum(1 for _ in log)

    # --- tenants and the operator's identity, as a cluster admin and the chart make them ---------------
    def prepare_namespace(self, namespace: str, business_ids: str | None = "*") -> None:
        """A namespace for workers: Pod Security `restricted` enforced, and the business ids it admits."""
        from .operator_install import Kubectl, prepare_namespace

        prepare_namespace(Kubectl(str(BIN / "kubectl"), Path(self.kubeconfig)), namespace, business_ids)

    def install_operator_identity(self, namespace: str, *, scope: str = "namespace",
                                  extra: tuple[str, ...] = ()) -> str:
        """The chart's ServiceAccount and RBAC for an operator watching ``namespace`` (helm, with no
        operator pod: the test runs the operator itself). Returns the ServiceAccount's user name."""
        from .operator_install import CHART

        release = f"rs-{namespace}"[:40]
        # --skip-crds: the suite installs the CRD from manifests/ itself.
        self.helm("upgrade", "--install", release, str(CHART), "-n", namespace, "--skip-crds",
                  "--set", "operator.replicas=0", "--set", f"rbac.scope={scope}",
                  "--set", f"watchNamespace={namespace}", "--set", "metrics.service.enabled=false",
                  "--set", "podDisruptionBudget.enabled=false", *extra)
        return f"system:serviceaccount:{namespace}:{release}-receipt-sync"

    def service_account_kubeconfig(self, user: str, path: Path) -> Path:
        """A kubeconfig holding a fresh token (TokenRequest) of ServiceAccount ``user``."""
        from .kubeconfig import for_token, write_kubeconfig

        _, _, namespace, account = user.split(":")
        token = self.kubectl("-n", namespace, "create", "token", account, "--duration=24h").stdout.strip()
        return write_kubeconfig(path, for_token(self.kubeconfig, token, user=user, namespace=namespace))


def container_pids(pod: dict) -> list[int]:
    """PIDs of a pod's containers, from the node agent's `sandbox://<pid>` container IDs (the node
    agent's documented way to reach a container's process on this machine)."""
    pids = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        container_id = status.get("containerID") or ""
        if container_id.startswith("sandbox://"):
            pids.append(int(container_id.removeprefix("sandbox://")))
    return pids


def process_running(pid: int) -> bool:
    process = procs.identify(pid)
    return bool(process and procs.is_alive(process))


def receiptsync_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A ReceiptSync object named ``name`` with ``spec``."""
    from receiptsync_common import contract

    return {"apiVersion": contract.API_VERSION, "kind": contract.KIND, "metadata": {"name": name}, "spec": spec}


class InNamespace:
    """kubectl helpers scoped to one namespace (``self.ns``) of a running sandbox (``self.sandbox``)."""

    sandbox: Sandbox
    ns: str

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return self.sandbox.kubectl("-n", self.ns, *args, check=check, input=input)

    def get(self, kind: str, name: str | None = None) -> dict | None:
        result = self.kubectl("get", kind, *([name] if name else []), "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def status(self, name: str) -> dict:
        """A ReceiptSync's status ({} while it has none or does not exist)."""
        from receiptsync_common import contract

        return ((self.get(contract.PLURAL, name) or {}).get("status")) or {}


class TenantWorld(InNamespace):
    """One test's tenant, set up as a cluster admin and the chart would: a fresh namespace with Pod
    Security `restricted` and the business ids it admits, the chart's ServiceAccount and RBAC for an
    operator watching it, and a kubeconfig with that ServiceAccount's token for the operator the test
    runs itself. The operator tests, the fault suite and the benchmarks build on it."""

    def __init__(self, sandbox: Sandbox, tmp: Path, prefix: str = "t-", business_ids: str | None = "*") -> None:
        import uuid

        self.sandbox = sandbox
        self.tmp = tmp
        self.ns = prefix + uuid.uuid4().hex[:8]
        self.lease = "rs-" + self.ns
        self.operators: list[OperatorProcess] = []
        self.allow_forbidden = False  # set by a test that provokes refusals on purpose
        sandbox.prepare_namespace(self.ns, business_ids)
        self.operator_user = sandbox.install_operator_identity(self.ns)
        self.kubeconfig = sandbox.service_account_kubeconfig(self.operator_user, tmp / f"{self.ns}.kubeconfig")

    def forbidden_calls(self) -> list[str]:
        """The operator's API calls that kube-apiserver refused (403): RBAC the chart lacks."""
        return [f"{e['verb']} {e['requestURI']}" for e in self.sandbox.audit(user=self.operator_user)
                if e["responseStatus"]["code"] == 403]

    def close(self) -> None:
        for op in self.operators:
            op.stop()
        self.sandbox.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)
        # A 403 is a bug in the chart's RBAC or in the code, never something to tolerate.
        refused = [] if self.allow_forbidden else self.forbidden_calls()
        assert not refused, f"the operator was refused: {refused[:5]}"


def emulator_admin(endpoint: str, path: str, body: dict | None = None, timeout: float = 10) -> Any:
    """One call to the Gmail emulator's admin API (``/_emulator/...``): GET, or POST of ``body``."""
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/" + path.lstrip("/"), method="GET" if body is None else "POST",
        data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def bracket_depths(query: str) -> list[int]:
    """Gmail search text: the ``(``/``{`` nesting depth after each character (brackets inside a
    double-quoted phrase do not count)."""
    depths, depth, quoted = [], 0, False
    for ch in query:
        if ch == '"':
            quoted = not quoted
        elif not quoted:
            depth += (ch in "({") - (ch in ")}")
        depths.append(depth)
    return depths


# --- the real operator as a subprocess --------------------------------------------------------------------
def operator_env(sandbox: Sandbox, *, namespace: str, redis_url: str, identity: str, lease_name: str,
                 kubeconfig: Path | None = None, **overrides: str | None) -> dict[str, str]:
    """The environment the operator runs with against ``sandbox``: scoped to ``namespace``, its own Redis
    database, leader election on a Lease in that namespace, a free metrics port. ``overrides`` win
    (contract.OPERATOR_ENV_* names); an override of None removes the variable."""
    from receiptsync_common import contract

    from .services import free_port

    env: dict[str, str | None] = {
        **sandbox.process_env(),
        **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {}),
        contract.OPERATOR_ENV_REDIS_URL: redis_url,
        contract.OPERATOR_ENV_NAMESPACE: namespace,
        contract.OPERATOR_ENV_WORKER_DATABASE_URL: sandbox.env.get("DATABASE_URL", ""),
        contract.OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT: sandbox.env.get("GMAIL_API_ENDPOINT", ""),
        contract.OPERATOR_ENV_METRICS_PORT: str(free_port()),
        contract.OPERATOR_ENV_LEASE_NAME: lease_name,
        contract.OPERATOR_ENV_LEASE_NAMESPACE: namespace,
        contract.OPERATOR_ENV_POD_NAME: identity,
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


class OperatorProcess:
    """`receiptsync-operator` as a subprocess; stdout and stderr go to ``log_path`` (JSON lines).

    ``user`` is the ServiceAccount it runs as (the audit log's user name for its calls)."""

    def __init__(self, env: dict[str, str], log_path: Path, user: str | None = None, *,
                 lead_timeout: float = 30, stop_timeout: float = 15) -> None:
        self.env = env
        self.log_path = log_path
        self.user = user
        self.lead_timeout = lead_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    @classmethod
    def prepare(cls, sandbox: Sandbox, log_path: Path, *, namespace: str, redis_url: str, identity: str,
                lease_name: str, service_account: str, lead_timeout: float = 30, stop_timeout: float = 15,
                **overrides: str | None) -> "OperatorProcess":
        """One to :meth:`start`, with :func:`operator_env`, running as ``service_account``
        (``system:serviceaccount:<ns>:<sa>``, e.g. from :meth:`Sandbox.install_operator_identity`)
        through a kubeconfig of its own next to its log: never the admin's credentials."""
        config_path = sandbox.service_account_kubeconfig(service_account, log_path.with_suffix(".kubeconfig"))
        env = operator_env(sandbox, namespace=namespace, redis_url=redis_url, identity=identity,
                           lease_name=lease_name, kubeconfig=config_path, **overrides)
        return cls(env, log_path, service_account, lead_timeout=lead_timeout, stop_timeout=stop_timeout)

    @classmethod
    def launch(cls, sandbox: Sandbox, log_path: Path, **kw: Any) -> "OperatorProcess":
        """:meth:`prepare` and :meth:`start` (not waiting for it to lead)."""
        return cls.prepare(sandbox, log_path, **kw).start()

    def start(self) -> "OperatorProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(OPERATOR_BIN)], env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        return self

    @property
    def identity(self) -> str:
        from receiptsync_common import contract

        return self.env[contract.OPERATOR_ENV_POD_NAME]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def lines(self) -> list[dict[str, Any]]:
        """Its log so far, one dict per line (a line that is not JSON: ``{"message": line}``)."""
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"message": raw})
        return out

    def logged(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("message") == message]

    def errors(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if str(line.get("levelname") or line.get("level") or "").lower()
                in ("error", "critical")]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_leading(self, timeout: float | None = None, interval: float = 0.1) -> None:
        """Until it logs ``leading``; AssertionError on timeout or when it exits first."""
        def leading() -> bool:
            if self.logged("leading"):
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"operator {self.identity} exited ({self.proc.returncode}) before leading;"
                                     f" log: {self.log_path}")
            return False

        wait_until(leading, self.lead_timeout if timeout is None else timeout, interval,
                   message=f"{self.identity} leading")

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM (SIGKILL after ``timeout``); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """A crash: SIGKILL, no cleanup, no lease release."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@contextlib.contextmanager
def closing_world(world: Any, log_dir: Path) -> Iterator[Any]:
    """A test's world (operators, namespace, Redis DB) for a fixture to yield, closed afterwards; with
    RECEIPTSYNC_KEEP_OPERATOR_LOGS set, says where the operator logs are."""
    try:
        yield world
    finally:
        world.close()
        if os.environ.get(KEEP_LOGS_ENV):
            print(f"operator logs in {log_dir}")
