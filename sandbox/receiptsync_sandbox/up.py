"""`receiptsync-sandbox up`: start every part of the sandbox in the background and wait until ready.

Parts: the upstream control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler;
built once per machine, see controlplane/build.py), the node agent (our kubelet), the Gmail
emulator, redis-server, PostgreSQL; the `default` namespace annotated and labelled for tenancy and
Pod Security; Secret receiptsync-connections (what the chart's defaults read); then (unless
--no-operator) the chart, installed with helm as a user would. Each background process gets its own
session and a log under DIR/logs/, and is recorded in DIR/sandbox.json.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from . import down, operator_install, services, statefile
from .controlplane import build, cluster
from .procs import MARKER, identify

READY_TIMEOUT = 60.0
SAMPLE_ADDRESS = "demo@example.com"
DATABASE_NAME = "receiptsync"


class UpError(RuntimeError):
    pass


class AlreadyRunning(UpError):
    pass


Say = Callable[[str], None]


def bin_dir() -> Path:
    return Path(sys.executable).parent


def child_env(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[MARKER] = str(state_dir)  # lets `down` find every process we started, whatever happens
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env


def spawn(name: str, argv: list[str], state_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    log_path = state_dir / "logs" / f"{name}.log"
    # A re-used state dir keeps the last run's log beside the new one; a fresh file also keeps
    # wait_ready from reading the previous run's READY line (and its dead port).
    if log_path.exists():
        log_path.replace(log_path.with_name(log_path.name + ".previous"))
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=state_dir, env=env, start_new_session=True)


def wait_ready(name: str, process: subprocess.Popen, state_dir: Path, timeout: float = READY_TIMEOUT) -> str:
    """Wait for the component's `READY [url]` line; returns what follows READY."""
    log_path = state_dir / "logs" / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY"):
                return line[len("READY"):].strip()
        if process.poll() is not None:
            raise UpError(f"{name} exited with code {process.returncode} before it was ready:\n{tail(log_path)}")
        time.sleep(0.05)
    raise UpError(f"{name} was not ready after {timeout:.0f}s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no log)"


def default_mailbox(state_dir: Path, say: Say) -> Path:
    folder = state_dir / "mailboxes"
    folder.mkdir(exist_ok=True)
    try:
        from .gmail import samples  # the emulator's sample generator, when present
    except ImportError:
        say(f"no sample mailbox generator available; the Gmail emulator serves an empty {folder}")
        return folder
    if not any(folder.iterdir()):
        samples.generate_mailbox(folder, SAMPLE_ADDRESS, count=40, seed=7)
        say(f"sample mailbox for {SAMPLE_ADDRESS} generated in {folder}")
    return folder


def record(state: statefile.SandboxState, name: str, process: subprocess.Popen) -> None:
    identity = identify(process.pid)
    if identity:
        state.processes[name] = identity
    state.save()


def start_databases(state: statefile.SandboxState, env: dict[str, str]) -> tuple[str, str]:
    state_dir = state.state_dir
    redis = services.start_redis(state_dir / "redis", env=env)
    state.redis_pid = identify(redis.pid)
    state.save()
    _link_log(state_dir / "logs" / "redis.log", state_dir / "redis" / "redis.log")
    state.postgres = {"directory": str(state_dir / "postgres")}
    state.save()  # before starting: a failed start still leaves a data dir for `down` to remove
    postgres = services.start_postgres(state_dir / "postgres", env=env)
    state.postgres.update(port=postgres.port, data_dir=str(postgres.data_dir), bindir=postgres.bindir,
                          run_as=postgres.run_as)
    state.save()
    _link_log(state_dir / "logs" / "postgres.log", postgres.data_dir / "server.log")
    return redis.url, create_database(postgres.url, DATABASE_NAME)


def create_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _link_log(link: Path, target: Path) -> None:
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def write_env_file(state_dir: Path, values: dict[str, str]) -> Path:
    lines = [f"# ReceiptSync sandbox in {state_dir}: `. {state_dir / 'env'}` points kubectl, helm and the",
             "# project's tools at it. Stop it with: receiptsync-sandbox down --state-dir "
             + shlex.quote(str(state_dir))]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    path = state_dir / "env"
    path.write_text("\n".join(lines) + "\n")
    return path


def env_path_value() -> str:
    """PATH with the venv's bin first (kubectl 1.33, helm), spelled out so simple parsers work too."""
    rest = [part for part in os.environ.get("PATH", "").split(os.pathsep) if part and part != str(bin_dir())]
    return os.pathsep.join([str(bin_dir()), *rest])


def bring_up(state_dir: Path, mailbox_dir: Path | None, with_operator: bool,
             say: Say = print) -> statefile.SandboxState:
    state_dir = state_dir.resolve()
    existing = statefile.load(state_dir)
    if existing and existing.live_processes():
        api = existing.urls.get("api", "starting")
        raise AlreadyRunning(f"a sandbox is already running in {state_dir} (API {api}); "
                             f"stop it first: receiptsync-sandbox down --state-dir {state_dir}")
    if existing:
        down.bring_down(state_dir, say=lambda _: None)  # what a crashed sandbox left behind
    for leftover in ("etcd", "pods", "audit.log"):  # a re-used dir starts a fresh cluster
        path = state_dir / leftover
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    try:
        binary = build.ensure_built(say)
    except build.BuildError as exc:
        raise UpError(str(exc)) from exc
    state = statefile.SandboxState(state_dir)
    state.save()
    env = child_env(state_dir)
    python = sys.executable
    mailbox = mailbox_dir.resolve() if mailbox_dir else default_mailbox(state_dir, say)
    if not mailbox.is_dir():
        raise UpError(f"mailbox dir {mailbox} does not exist")

    def launch(name: str, argv: list[str]) -> subprocess.Popen:
        process = spawn(name, argv, state_dir, env)
        record(state, name, process)
        return process

    plane = cluster.prepare(state_dir)
    gmail = launch("gmail", [python, "-m", "receiptsync_sandbox.gmail", "--port", "0", "--mailbox-dir", str(mailbox),
                             "--state-dir", str(state_dir / "gmail")])
    redis_url, database_url = start_databases(state, env)
    try:
        cluster.start(plane, binary, launch, timeout=READY_TIMEOUT)
    except cluster.ControlPlaneError as exc:
        raise UpError(f"{exc}; its log is under {state_dir / 'logs'}") from exc
    agent = launch("nodeagent", [python, "-m", "receiptsync_sandbox.nodeagent",
                                 "--kubeconfig", str(plane.node_kubeconfig), "--state-dir", str(state_dir),
                                 "--pki", str(plane.pki.directory),
                                 "--port", str(services.free_port()), "--node-name", cluster.NODE_NAME])
    gmail_url = wait_ready("gmail", gmail, state_dir).rstrip("/")
    wait_ready("nodeagent", agent, state_dir)

    kubeconfig_path = state_dir / "kubeconfig"
    shutil.copyfile(plane.admin_kubeconfig, kubeconfig_path)
    kubeconfig_path.chmod(0o600)
    state.urls = {"api": plane.server, "gmail": gmail_url, "redis": redis_url, "database": database_url}
    state.save()
    write_env_file(state_dir, {
        "KUBECONFIG": str(kubeconfig_path),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "GMAIL_API_ENDPOINT": f"{gmail_url}/",
        "GMAIL_TOKEN_URI": f"{gmail_url}/token",
        "RECEIPTSYNC_SANDBOX_DIR": str(state_dir),
        "RECEIPTSYNC_SANDBOX_API": plane.server,
        "PATH": env_path_value(),
    })
    kubectl = operator_install.Kubectl(str(bin_dir() / "kubectl"), kubeconfig_path)
    operator_install.prepare_namespace(kubectl, operator_install.CONNECTIONS_NAMESPACE)
    operator_install.create_connections_secret(kubectl, operator_install.CONNECTIONS_NAMESPACE, redis_url,
                                               database_url, f"{gmail_url}/")
    if with_operator:
        install(state, kubectl, redis_url, database_url, f"{gmail_url}/", say)
    return state


def install(state: statefile.SandboxState, kubectl: "operator_install.Kubectl", redis_url: str, database_url: str,
            gmail_endpoint: str, say: Say) -> None:
    try:
        operator_install.install_chart(kubectl, str(bin_dir() / "helm"), redis_url, database_url, gmail_endpoint)
    except operator_install.InstallError as exc:
        logs = state.state_dir / "logs" / operator_install.NAMESPACE
        raise UpError(f"{exc}\n(pod logs under {logs})") from exc
