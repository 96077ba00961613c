"""The operator's side of PostgreSQL (issue 14): the schema migrations, applied at start with the
administrative URL (never by a worker), and one login role per worker attempt.

An attempt's role is a member of the NOLOGIN group ``receiptsync_worker`` (row access only, no DDL;
migration 0004) and is recorded in ``attempt_credentials`` with the attempt's business: row-level
security shows it that business's rows and nothing else. It is created just before the attempt's Job,
valid until the attempt's deadline, and dropped when the attempt ends. Its password reaches the server
only as a SCRAM verifier. The SQL is built by pure functions; :class:`TenantDatabase` runs it (blocking
psycopg, called through ``asyncio.to_thread``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
import threading
import time
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from receiptsync_common import attempt_auth, migrations

logger = logging.getLogger("receiptsync_operator.tenant_db")

GROUP_ROLE = "receiptsync_worker"
ROLE_PREFIX = "rsw_"
CONNECTION_LIMIT = 16  # a worker opens two or three connections
CONNECT_TIMEOUT = 10
TERMINATE_WAIT_MS = 5000  # how long a revoke waits for each of the role's sessions to exit
DROP_RETRY_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8)  # then DROP ROLE once more, and its error stands


class DatabaseUnavailable(OSError):
    """The administrative database connection failed (an infrastructure problem, retried: never the
    queue entry's fault, so it is an OSError like Redis being away)."""


@dataclasses.dataclass(frozen=True)
class AttemptRole:
    role_name: str
    job_id: str
    business_id: str
    namespace: str
    secret_name: str
    redis_user: str
    expires_at: dt.datetime
    created_at: dt.datetime | None = None


def database_name(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "")


def role_name(database: str, job_id: str) -> str:
    """Roles are global to a PostgreSQL server: the database is part of the name, so two ReceiptSync
    databases on one server never share one (63 characters at most)."""
    return ROLE_PREFIX + hashlib.sha256(f"{database}/{job_id}".encode()).hexdigest()[:40]


def worker_url(base: str, role: str, password: str) -> str:
    """``base`` (the URL workers use to reach the database) with the attempt's role and password."""
    if base.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(base)
        host = parts.netloc.rsplit("@", 1)[-1]
        netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return make_conninfo(base, user=role, password=password)


def grant_statements(role: AttemptRole, verifier: str, exists: bool) -> list[sql.Composable]:
    """Create (or refresh) the attempt's login role, a member of the worker group only."""
    head = sql.SQL("ALTER ROLE {}" if exists else "CREATE ROLE {}").format(sql.Identifier(role.role_name))
    options = sql.SQL(" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
                      " CONNECTION LIMIT {} PASSWORD {} VALID UNTIL {}").format(
        sql.Literal(CONNECTION_LIMIT), sql.Literal(verifier), sql.Literal(role.expires_at.isoformat()))
    return [head + options,
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(GROUP_ROLE), sql.Identifier(role.role_name))]


# Issued again (a restart): a later expiry, and the Secret it is delivered in now (the per-resource one,
# for an attempt first issued by a version that gave each attempt its own Secret).
RECORD = sql.SQL(
    "INSERT INTO attempt_credentials (role_name, job_id, business_id, namespace, secret_name, redis_user, expires_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (role_name) DO UPDATE SET expires_at = EXCLUDED.expires_at,"
    " secret_name = EXCLUDED.secret_name"
    " WHERE attempt_credentials.business_id = EXCLUDED.business_id AND attempt_credentials.job_id = EXCLUDED.job_id"
    " RETURNING role_name")
LIST = ("SELECT role_name, job_id, business_id, namespace, secret_name, redis_user, expires_at, created_at"
        " FROM attempt_credentials")
# Expired roles no row names any more (a revoke that stopped half-way): no access left, only clutter.
ORPHANS = sql.SQL("SELECT rolname FROM pg_roles WHERE rolname LIKE 'rsw\\_%%' AND rolvaliduntil < now()"
                  " AND NOT EXISTS (SELECT 1 FROM attempt_credentials c WHERE c.role_name = rolname)")


class TenantDatabase:
    """Blocking, called from worker threads. One connection, kept between calls (each new one cost a
    backend fork and a SCRAM exchange, several per run) and made again when the server dropped it:
    a call that fails on a kept connection is tried once more on a fresh one."""

    def __init__(self, admin_url: str) -> None:
        self._url = admin_url
        self.database = database_name(admin_url)
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"the database is not reachable: {_first_line(exc)}") from None

    def _run(self, work):
        with self._lock:
            kept = self._conn is not None and not self._conn.closed
            for fresh in (False, True) if kept else (True,):
                if fresh:
                    self.close()
                    self._conn = self._connect()
                try:
                    return work(self._conn)
                except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
                    self.close()
                    if fresh:
                        raise DatabaseUnavailable(f"the database failed: {_first_line(exc)}") from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def migrate(self) -> list[str]:
        return self._run(migrations.apply_all)

    def grant(self, role: AttemptRole, password: str) -> None:
        verifier = attempt_auth.scram_verifier(password, os.urandom(16))

        def work(conn: psycopg.Connection) -> None:
            with conn.transaction():
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.role_name,)).fetchone()
                for statement in grant_statements(role, verifier, exists=bool(exists)):
                    conn.execute(statement)
                recorded = conn.execute(RECORD, (role.role_name, role.job_id, role.business_id, role.namespace,
                                                 role.secret_name, role.redis_user, role.expires_at)).fetchone()
                if recorded is None:
                    raise RuntimeError(f"role {role.role_name} is recorded for another attempt or business")

        self._run(work)

    def revoke(self, name: str) -> None:
        """Data access ends with the row (receiptsync_business() is NULL without it); then its sessions
        and the role go."""
        def work(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM attempt_credentials WHERE role_name = %s", (name,))
            try:
                # With a timeout it waits for each backend to exit: one that is still exiting owns
                # its temporary tables until it is gone, and DROP ROLE would fail on them.
                conn.execute("SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE usename = %s",
                             (TERMINATE_WAIT_MS, name))
            except psycopg.errors.InsufficientPrivilege:
                pass  # its sessions can no longer see or change a row anyway
            drop = sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name))
            for pause in DROP_RETRY_PAUSES:
                try:
                    conn.execute(drop)
                    return
                except psycopg.errors.DependentObjectsStillExist:
                    time.sleep(pause)  # a session that closed is still dropping its temporary tables
            conn.execute(drop)

        self._run(work)

    def roles(self, namespace: str | None = None, secret_name: str | None = None) -> list[AttemptRole]:
        """What is issued and not revoked yet: in ``namespace``, and delivered in Secret ``secret_name``."""
        def work(conn: psycopg.Connection) -> list[AttemptRole]:
            if namespace and secret_name:
                rows = conn.execute(LIST + " WHERE namespace = %s AND secret_name = %s",
                                    (namespace, secret_name)).fetchall()
            elif namespace:
                rows = conn.execute(LIST + " WHERE namespace = %s", (namespace,)).fetchall()
            else:
                rows = conn.execute(LIST).fetchall()
            return [AttemptRole(*row) for row in rows]

        return self._run(work)

    def drop_orphans(self) -> int:
        def work(conn: psycopg.Connection) -> int:
            names = [row[0] for row in conn.execute(ORPHANS).fetchall()]
            for name in names:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            return len(names)

        return self._run(work)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
