"""Per-attempt worker credentials (issue 14): issued just before an attempt's Job is created, revoked
when the attempt ends, and the check that every heartbeat was signed by the attempt it speaks for.

For each attempt the operator makes, from its credential key and the attempt's job id (so nothing is
stored, and a restarted operator derives the same again):

* a PostgreSQL login role bound to the attempt's business by row-level security (:mod:`tenant_db`);
* a Redis ACL user limited to the attempt's own keys (:mod:`redis_acl`);
* a heartbeat signing key;

and hands them to the worker in its ReceiptSync's credentials Secret (one per resource, in the tenant
namespace, owned by the resource), under keys prefixed by the attempt's Job name, which the Job
references by ``secretKeyRef``. One server-side apply per attempt writes that Secret: its body holds
every live attempt of the resource (all derived again, nothing is read back: the operator reads no
Secret) plus the new one, so the keys of attempts that ended drop out (the API server removes what
its field manager no longer applies). Revoking deletes nothing in Kubernetes: an ended attempt's
keys stay until the next apply or the resource's deletion, dead once its role and user are gone.

The ``attempt_credentials`` table is the durable list of what was issued (and of the live attempts
each apply writes): every few seconds :meth:`WorkerCredentials.reconcile_once` revokes what belongs
to attempts that ended (their Job finished, failed or is gone) or expired, and re-creates the Redis
users of live attempts after Redis restarted (it forgets ACL users).
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from receiptsync_common import attempt_auth, contract
from receiptsync_common.jobspec import JobPayload

from . import job_state, redis_acl, runs, tenant_db, worker_job
from .kube import core_path
from .log_throttle import Throttle
from .tenant_db import AttemptRole, DatabaseUnavailable

logger = logging.getLogger("receiptsync_operator.credentials")

RECONCILE_EVERY = 3.0
# An issued attempt whose Job the cache has not shown for this long (creation refused, Job deleted)
# has ended.
WITHOUT_JOB_GRACE = 60.0
# Credentials outlive the attempt's own deadline by this much at most.
EXPIRY_MARGIN = 300
SCHEMA_WAIT = 10.0
APPLY = {"fieldManager": contract.MANAGED_BY_VALUE, "force": "true"}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"  # JSON is YAML


class CredentialsUnavailable(OSError):
    """Credentials cannot be issued right now (database or Redis away): retried, never the entry's fault."""


# --- pure parts ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Issued:
    role: AttemptRole
    job_name: str
    database_password: str = dataclasses.field(repr=False)
    redis_password: str = dataclasses.field(repr=False)
    heartbeat_key: str = dataclasses.field(repr=False)


def expires_at(payload: JobPayload, now: dt.datetime, *, grace: float, start_timeout: float) -> dt.datetime:
    """When the attempt's credentials stop working even if nobody revokes them: its Job's own deadline
    (activeDeadlineSeconds) plus a margin."""
    return now + dt.timedelta(seconds=payload.timeout_seconds + grace + start_timeout + EXPIRY_MARGIN)


def derived(master: bytes, role: AttemptRole, job_name: str) -> Issued:
    """An attempt's credentials, derived again from the credential key and its job id."""
    return Issued(role, job_name, attempt_auth.password(master, attempt_auth.PURPOSE_DATABASE, role.job_id),
                  attempt_auth.password(master, attempt_auth.PURPOSE_REDIS, role.job_id),
                  attempt_auth.heartbeat_key(master, role.job_id))


def issue(master: bytes, payload: JobPayload, owner: Mapping[str, Any], *, job_name: str, database: str,
          expires: dt.datetime) -> Issued:
    role = AttemptRole(role_name=tenant_db.role_name(database, payload.job_id), job_id=payload.job_id,
                       business_id=payload.business_id, namespace=payload.namespace,
                       secret_name=worker_job.credentials_secret_name(owner),
                       redis_user=redis_acl.user_name(payload.job_id), expires_at=expires)
    return derived(master, role, job_name)


def job_name_of(role: AttemptRole) -> str:
    """The attempt's Job, from its job id (contract.make_job_id keeps the uid's head the Job name uses).
    Rows issued before the per-resource Secret named the Secret like the Job."""
    parsed = runs.parse_job_id(role.job_id)
    if parsed is None:
        return role.secret_name
    _, name, run_id, attempt = parsed
    return contract.worker_job_name(name, role.job_id.rsplit(".", 3)[1], run_id, attempt)


def secret_labels(owner: Mapping[str, Any]) -> dict[str, str]:
    # The operator-secrets admission policy lets the operator write only Secrets labelled like this.
    return {contract.LABEL_MANAGED_BY: contract.MANAGED_BY_VALUE,
            contract.LABEL_COMPONENT: contract.COMPONENT_WORKER_CREDENTIALS,
            contract.LABEL_SYNC_NAME: worker_job.label_value(owner["name"])}


def secret_manifest(attempts: Sequence[Issued], owner: Mapping[str, Any], *, database_url: str,
                    redis_url: str) -> dict[str, Any]:
    """The apply body of the ReceiptSync's credentials Secret: for each live attempt its URLs (with its
    own role and user) and its heartbeat key, under keys prefixed by its Job's name. Owned by the
    ReceiptSync, so the garbage collector deletes it with the resource; not immutable (each apply
    rewrites it)."""
    data: dict[str, str] = {}
    for issued in attempts:
        values = {contract.CREDENTIALS_DATABASE_URL_KEY: tenant_db.worker_url(
                      database_url, issued.role.role_name, issued.database_password),
                  contract.CREDENTIALS_REDIS_URL_KEY: redis_acl.worker_url(
                      redis_url, issued.role.redis_user, issued.redis_password),
                  contract.CREDENTIALS_HEARTBEAT_KEY_KEY: issued.heartbeat_key}
        data.update({worker_job.credentials_key(issued.job_name, key): base64.b64encode(value.encode()).decode()
                     for key, value in values.items()})
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": worker_job.credentials_secret_name(owner), "namespace": owner["namespace"],
            "labels": secret_labels(owner),
            "ownerReferences": [{"apiVersion": contract.API_VERSION, "kind": contract.KIND, "name": owner["name"],
                                 "uid": owner["uid"], "controller": False, "blockOwnerDeletion": False}],
        },
        "data": dict(sorted(data.items())),  # the same attempts, the same body
    }


def ended(role: AttemptRole, job: Mapping[str, Any] | None, pods: list[Mapping[str, Any]], *, now: dt.datetime,
          jobs_synced: bool, issued_for: float) -> bool:
    """Has the attempt these credentials were issued for ended? ``issued_for``: seconds since they were
    issued (as far as this operator knows)."""
    if role.expires_at <= now:
        return True
    if job is None:
        return jobs_synced and issued_for >= WITHOUT_JOB_GRACE
    return not job_state.is_active(job) and not any(job_state.pod_is_live(p) for p in pods)


# --- the shell -------------------------------------------------------------------------------------------
async def migrate_until_done(db: tenant_db.TenantDatabase, done: asyncio.Event | None = None) -> None:
    """The schema migrations, once, retried until the database answers (workers need the schema; the
    operator applies it at start whatever the worker credentials - workers never do)."""
    delay = 1.0
    while True:
        try:
            applied = await asyncio.to_thread(db.migrate)
            logger.info("database schema up to date", extra={"applied": applied})
            if done is not None:
                done.set()
            return
        except DatabaseUnavailable as exc:
            logger.warning("cannot migrate the database yet, retrying in %.0fs: %s", delay, exc)
        except Exception as exc:  # noqa: BLE001 - e.g. a role without the rights to migrate: say so, go on
            logger.error("the database schema could not be migrated, retrying in %.0fs: %s", delay,
                         str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


class WorkerCredentials:
    def __init__(self, ctx, master: bytes, database: tenant_db.TenantDatabase) -> None:
        self.ctx = ctx
        self.master = master
        self.db = database
        self.schema_ready = asyncio.Event()
        self._issued_at: dict[str, float] = {}  # role -> when this process issued (or first saw) it
        self._live: dict[str, AttemptRole] = {}  # job id -> its credentials, as of the last pass
        self._mailboxes: dict[str, str] = {}  # job id -> the mailbox its Redis user may use
        self._redis_id: str | None = None
        self._refused = Throttle(60.0)
        # (namespace, Secret) -> the lock its applies take turns on; held only while someone uses it.
        self._apply_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def redis(self):
        return self.ctx.queue.redis

    async def migrate(self) -> None:
        await migrate_until_done(self.db, self.schema_ready)

    # --- issuing -------------------------------------------------------------------------------------
    async def provision(self, payload: JobPayload, owner: Mapping[str, Any], job_name: str) -> None:
        """Everything the attempt's Job will reference, before the Job exists (CredentialsUnavailable
        when the database or Redis is away; ApiError when the Secret's apply is refused)."""
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that meets a wake-up.
            async with asyncio.timeout(SCHEMA_WAIT):
                await self.schema_ready.wait()
        except TimeoutError:
            raise CredentialsUnavailable("the database schema is not migrated yet") from None
        settings = self.ctx.settings
        issued = issue(self.master, payload, owner, job_name=job_name, database=self.db.database,
                       expires=expires_at(payload, _now(), grace=settings.worker_deadline_grace,
                                          start_timeout=settings.worker_start_timeout))
        await asyncio.to_thread(self.db.grant, issued.role, issued.database_password)
        self._issued_at.setdefault(issued.role.role_name, time.monotonic())
        try:
            await redis_acl.define(self.redis, payload.job_id, issued.redis_password,
                                   self._mailboxes.get(payload.job_id))
        except (RedisError, OSError) as exc:
            raise CredentialsUnavailable(f"Redis refused the attempt's user: {type(exc).__name__}") from None
        self._live[payload.job_id] = issued.role
        await self._apply_secret(issued, owner)

    async def _apply_secret(self, issued: Issued, owner: Mapping[str, Any]) -> None:
        """The resource's Secret with every live attempt's keys and the new one's, in one apply. Each
        apply replaces the keys this manager owns, so applies of one Secret take turns and each reads
        the live attempts only once it has the lock: the later one then includes the earlier's grant."""
        role = issued.role
        key = (role.namespace, role.secret_name)
        lock = self._apply_locks.get(key)
        if lock is None:
            lock = self._apply_locks[key] = asyncio.Lock()
        async with lock:
            # From the database (the durable list), not this process's memory: right after a restart,
            # or between two passes, memory may lack a live attempt whose pod has yet to read its keys.
            rows = await asyncio.to_thread(self.db.roles, role.namespace, role.secret_name)
            now, mono = _now(), time.monotonic()
            live = [issued]
            for row in rows:
                job_name = job_name_of(row)
                if row.job_id != role.job_id and not self._ended(row, job_name, now, mono):
                    live.append(derived(self.master, row, job_name))
            settings = self.ctx.settings
            manifest = secret_manifest(live, owner, database_url=settings.effective_worker_database_url,
                                       redis_url=settings.effective_worker_redis_url)
            await self.ctx.kube.request("PATCH", core_path("secrets", role.namespace, role.secret_name),
                                        body=manifest, params=APPLY, content_type=APPLY_CONTENT_TYPE)

    def _ended(self, role: AttemptRole, job_name: str, now: dt.datetime, mono: float) -> bool:
        issued_for = mono - self._issued_at.setdefault(role.role_name, mono)
        return ended(role, self.ctx.jobs.get(role.namespace, job_name), self.ctx.jobs.pods_of(role.namespace, job_name),
                     now=now, jobs_synced=self.ctx.jobs_synced(), issued_for=issued_for)

    # --- heartbeats ----------------------------------------------------------------------------------
    def verifies(self, hb: Mapping[str, Any]) -> bool:
        """Signed by the attempt it names (only that attempt's worker holds the key)."""
        job_id = str(hb.get(contract.HB_JOB_ID) or "")
        ok = bool(job_id) and attempt_auth.heartbeat_verifies(attempt_auth.heartbeat_key(self.master, job_id), hb)
        if not ok:
            held = self._refused.allow("unsigned")
            if held is not None:
                logger.warning("heartbeat ignored: not signed by the attempt it names%s",
                               f" ({held} more suppressed)" if held else "", extra={"job_id": job_id[:200]})
        return ok

    async def admit(self, hb: Mapping[str, Any]) -> bool:
        """A heartbeat from the stream: verified; the first time it names its mailbox, the attempt's
        Redis user may use that mailbox's quota bucket."""
        if not self.verifies(hb):
            return False
        job_id, mailbox = str(hb[contract.HB_JOB_ID]), str(hb.get(contract.HB_MAILBOX) or "")
        if mailbox and job_id in self._live and job_id not in self._mailboxes and redis_acl.mailbox_allowed(mailbox):
            try:
                await redis_acl.allow_mailbox(self.redis, job_id, mailbox)
                self._mailboxes[job_id] = mailbox
            except (RedisError, OSError) as exc:
                logger.warning("could not grant the mailbox's quota bucket: %s", type(exc).__name__,
                               extra={"job_id": job_id})
        return True

    # --- revoking ------------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.migrate()
        while True:
            try:
                await self.reconcile_once()
            except (DatabaseUnavailable, RedisError, OSError) as exc:
                logger.warning("credentials pass skipped: %s", exc)
            except Exception:
                logger.exception("credentials pass failed")
            await asyncio.sleep(RECONCILE_EVERY)

    async def reconcile_once(self) -> None:
        roles = await asyncio.to_thread(self.db.roles, self.ctx.settings.namespace or None)
        restarted = await self._redis_restarted()
        now, mono = _now(), time.monotonic()
        live: dict[str, AttemptRole] = {}
        for role in roles:
            if not self.ctx.in_scope(role.namespace):
                continue
            if self._ended(role, job_name_of(role), now, mono):
                await self.revoke(role)
                continue
            live[role.job_id] = role
            if restarted:
                await redis_acl.define(self.redis, role.job_id,
                                       attempt_auth.password(self.master, attempt_auth.PURPOSE_REDIS, role.job_id))
        self._live = live
        if await asyncio.to_thread(self.db.drop_orphans):
            logger.info("dropped expired attempt roles left behind")

    async def _redis_restarted(self) -> bool:
        current = await redis_acl.server_id(self.redis)
        restarted = self._redis_id is not None and current != self._redis_id
        self._redis_id = current
        if restarted:
            logger.warning("Redis restarted: re-creating the ACL users of running attempts")
            self._mailboxes.clear()  # granted again when their workers next name their mailbox
        return restarted

    async def revoke(self, role: AttemptRole) -> None:
        """Redis user, then the database role (its row last: it lists what is left to revoke). Its keys
        in the Secret stay, dead, until the resource's next apply or its deletion: no API write here."""
        try:
            await redis_acl.remove(self.redis, role.redis_user)
        except (RedisError, OSError) as exc:
            logger.warning("could not delete the attempt's Redis user yet: %s", type(exc).__name__,
                           extra={"job_id": role.job_id})
            return
        await asyncio.to_thread(self.db.revoke, role.role_name)
        self._issued_at.pop(role.role_name, None)
        self._mailboxes.pop(role.job_id, None)
        logger.info("attempt credentials revoked", extra={"job_id": role.job_id})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
