"""Throwaway redis-server and PostgreSQL instances on free ports under a folder of our own.

Used by the sandbox (never the machine's 6379/5432) and by tests. PostgreSQL refuses to run as
root, so when we are root its processes run as the ``postgres`` system user.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise ServiceError("redis-server not found; run `make deps` (apt-get install redis-server)")
    return path


def find_pg_bindir() -> str:
    """Directory holding initdb/pg_ctl/postgres (Debian keeps them off PATH)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise ServiceError("PostgreSQL server binaries not found; run `make deps` (apt-get install postgresql)")


@dataclasses.dataclass
class RedisServer:
    port: int
    directory: Path
    pid: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        _kill(self.pid)


def start_redis(directory: Path, port: int | None = None, env: dict[str, str] | None = None) -> RedisServer:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    pidfile = directory / "redis.pid"
    # A server killed with SIGKILL leaves its pidfile behind; reading it would name a dead process,
    # and `down` could then never stop the new one.
    pidfile.unlink(missing_ok=True)
    subprocess.run(
        [
            find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory), "--daemonize", "yes",
            "--pidfile", str(pidfile), "--logfile", str(directory / "redis.log"),
        ],
        check=True,
        env=env,
    )
    wait_for_port(port)
    return RedisServer(port=port, directory=directory, pid=_read_pidfile(pidfile))


def _read_pidfile(pidfile: Path, timeout: float = 10.0) -> int:
    """The pid redis writes once it runs (it may listen before the file is complete)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise ServiceError(f"redis-server wrote no pid to {pidfile} within {timeout:.0f}s")


@dataclasses.dataclass
class PostgresServer:
    port: int
    data_dir: Path
    bindir: str
    run_as: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self, mode: str = "immediate") -> None:
        _run_pg(self, ["pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop"], check=False)

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start (or restart, after stop) with the one set of options the sandbox and tests use."""
        # fsync off only risks data on a machine crash; commits a client was told about survive a
        # PostgreSQL crash (synchronous_commit stays on), which the fault suite relies on.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir} -c fsync=off"
                   " -c full_page_writes=off -c max_connections=200")
        # Its own session: the postmaster must not belong to the caller's process group.
        result = _run_pg(self, ["pg_ctl", "-D", str(self.data_dir), "-o", options, "-l",
                                str(self.data_dir / "server.log"), "-w", "-t", "60", "start"], check=False, env=env,
                         new_session=True)
        if result.returncode != 0:
            log_file = self.data_dir / "server.log"
            log = log_file.read_text(errors="replace")[-800:] if log_file.exists() else ""
            raise ServiceError(f"postgres failed to start: {result.stderr.strip()[-500:]} {log}")
        wait_for_port(self.port)

    def pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None


def _run_pg(server: PostgresServer, argv: list[str], check: bool = True, env: dict[str, str] | None = None,
            new_session: bool = False) -> subprocess.CompletedProcess:
    argv = [os.path.join(server.bindir, argv[0]), *argv[1:]]
    if server.run_as:
        argv = ["runuser", "-u", server.run_as, "--", *argv]
    return subprocess.run(argv, check=check, capture_output=True, text=True, cwd="/", env=env,
                          start_new_session=new_session)


def start_postgres(directory: Path, port: int | None = None, env: dict[str, str] | None = None) -> PostgresServer:
    """initdb (trust auth) + start on 127.0.0.1:port. ``directory`` receives a ``postgres.datadir``
    file naming the data folder (outside it when we must run as another user who can't enter it)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    run_as = None
    if os.geteuid() == 0:
        run_as = "postgres"
        try:
            owner = pwd.getpwnam(run_as)
        except KeyError as exc:
            raise ServiceError("running as root needs the 'postgres' system user (apt-get install postgresql)") from exc
        data_dir = Path(tempfile.mkdtemp(prefix="receiptsync-pg-"))
        os.chown(data_dir, owner.pw_uid, owner.pw_gid)
    else:
        data_dir = directory / "pgdata"
        data_dir.mkdir(exist_ok=True)
    (directory / "postgres.datadir").write_text(str(data_dir))
    server = PostgresServer(port=port, data_dir=data_dir, bindir=find_pg_bindir(), run_as=run_as)
    result = _run_pg(server, ["initdb", "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                              "--no-sync"], check=False)
    if result.returncode != 0:
        raise ServiceError(f"initdb failed: {result.stderr.strip()[-500:]}")
    server.start(env)
    return server


def remove_postgres_data(directory: Path) -> None:
    marker = Path(directory) / "postgres.datadir"
    if marker.exists():
        shutil.rmtree(marker.read_text().strip(), ignore_errors=True)


def wait_for_exit(pid: int, timeout: float = 10.0) -> bool:
    """True once no process has ``pid`` (False if it still runs after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def _kill(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    if wait_for_exit(pid, timeout):
        return
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
