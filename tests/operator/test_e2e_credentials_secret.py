"""A ReceiptSync's worker-credentials Secret on the real control plane, written as the operator writes it
(its WorkerCredentials, with the chart's ServiceAccount under the chart's Role and admission policy, the
session's PostgreSQL and Redis): one server-side apply per attempt; two provisions at once both keep
their keys; an ended attempt's keys stay, dead, until the next apply drops them; the garbage collector
takes the Secret with its ReceiptSync. And what the admission policy refuses the operator's identity.

No operator runs here: the ReceiptSyncs are only owners, nothing syncs them.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import secrets
import types

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from receiptsync_common import attempt_auth
from receiptsync_common import contract as c
from receiptsync_operator import runs, worker_credentials, worker_job
from receiptsync_operator.config import Settings
from receiptsync_operator.job_cache import JobCache
from receiptsync_operator.kube import ApiError, Kube, core_path
from receiptsync_operator.tenant_db import TenantDatabase
from receiptsync_sandbox.testing import receiptsync_manifest, wait_until

pytestmark = pytest.mark.slow

SPEC = {"businessId": "ta-biz", "mode": "full", "fromDate": "2025-01-01", "toDate": "2025-01-31",
        "gmail": {"secretRef": {"name": "gmail"}}, "timeout": "120s"}


def operator_kube(env) -> Kube:
    """A client as the operator's ServiceAccount (the chart's Role, the admission policy's subject)."""
    cfg = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(env.kubeconfig), client_configuration=cfg, persist_config=False)
    return Kube(cfg)


def credentials(env, kube: Kube, admin_redis) -> worker_credentials.WorkerCredentials:
    """The operator's WorkerCredentials, its context made of the real clients (no Job exists: none ended)."""
    settings = Settings(redis_url=env.redis_url, database_url=env.sandbox.env["DATABASE_URL"], namespace=env.ns)
    ctx = types.SimpleNamespace(settings=settings, kube=kube, queue=types.SimpleNamespace(redis=admin_redis),
                                jobs=JobCache(), jobs_synced=lambda: True, in_scope=lambda ns: ns == env.ns)
    master = attempt_auth.master_key(secrets.token_hex(32))
    return worker_credentials.WorkerCredentials(ctx, master, TenantDatabase(settings.database_url))


def secret_data(env, name: str) -> dict[str, str]:
    secret = env.get("secret", name) or {}
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def keys_of(*job_names: str) -> set[str]:
    return {worker_job.credentials_key(job, key) for job in job_names
            for key in (c.CREDENTIALS_DATABASE_URL_KEY, c.CREDENTIALS_REDIS_URL_KEY, c.CREDENTIALS_HEARTBEAT_KEY_KEY)}


def works(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5).close()
        return True
    except psycopg.OperationalError:
        return False


async def test_one_apply_per_attempt_keeps_live_keys_drops_ended_ones_and_goes_with_its_owner(env):
    env.apply(receiptsync_manifest("pair", SPEC))
    owner = dict(env.get(c.PLURAL, "pair")["metadata"])
    name = worker_job.credentials_secret_name(owner)
    mark = env.sandbox.audit_mark()
    kube, admin_redis = operator_kube(env), aioredis.from_url(env.redis_url, decode_responses=True)
    creds = credentials(env, kube, admin_redis)
    await creds.migrate()
    now = dt.datetime.now(dt.timezone.utc)
    attempts = {run: runs.build_payload(owner, SPEC, run_id=run, attempt=1, now=now) for run in (1, 2, 3)}
    jobs = {run: runs.job_name_for(owner, run, 1) for run in attempts}
    try:
        # Two attempts at once (concurrencyPolicy Allow): neither apply drops the other's keys.
        await asyncio.gather(*(creds.provision(attempts[run], owner, jobs[run]) for run in (1, 2)))
        data = secret_data(env, name)
        assert set(data) == keys_of(jobs[1], jobs[2]), sorted(data)
        assert all(works(data[worker_job.credentials_key(jobs[run], c.CREDENTIALS_DATABASE_URL_KEY)]) for run in (1, 2))
        secret = json.loads(env.kubectl("get", "secret", name, "-o", "json", "--show-managed-fields").stdout)
        assert "immutable" not in secret and secret["metadata"]["ownerReferences"][0]["uid"] == owner["uid"]
        assert [f["manager"] for f in secret["metadata"]["managedFields"]] == [c.MANAGED_BY_VALUE]

        # Attempt 1 ends: its role and Redis user go; its keys stay (no API write), dead.
        (first,) = [r for r in creds.db.roles(env.ns, name) if r.job_id == attempts[1].job_id]
        assert first.secret_name == name and worker_credentials.job_name_of(first) == jobs[1]
        await creds.revoke(first)
        stale = secret_data(env, name)
        assert set(stale) == keys_of(jobs[1], jobs[2])
        assert not works(stale[worker_job.credentials_key(jobs[1], c.CREDENTIALS_DATABASE_URL_KEY)])
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(stale[worker_job.credentials_key(jobs[1], c.CREDENTIALS_REDIS_URL_KEY)]).ping()

        # The next attempt's apply holds the live ones only.
        await creds.provision(attempts[3], owner, jobs[3])
        data = secret_data(env, name)
        assert set(data) == keys_of(jobs[2], jobs[3]), sorted(data)
        assert data == {**{k: v for k, v in stale.items() if k in keys_of(jobs[2])}, **{
            k: v for k, v in data.items() if k in keys_of(jobs[3])}}  # attempt 2's keys unchanged
        assert works(data[worker_job.credentials_key(jobs[2], c.CREDENTIALS_DATABASE_URL_KEY)])
    finally:
        for role in creds.db.roles(env.ns):
            await creds.revoke(role)
        await kube.close()
        await admin_redis.aclose()

    def secret_calls() -> list[tuple[str, int]]:
        return sorted((e["verb"], e["responseStatus"]["code"]) for e in env.sandbox.audit(
            user=env.operator_user, since_line=mark) if (e.get("objectRef") or {}).get("resource") == "secrets")

    wait_until(lambda: len(secret_calls()) >= 3, timeout=10, message="the applies in the audit log")
    # One request per attempt (the first made the Secret), nothing else: no read, no delete.
    assert secret_calls() == [("patch", 200), ("patch", 200), ("patch", 201)], secret_calls()

    # The operator deletes no Secret: the garbage collector takes it with its ReceiptSync (a CRD installed
    # moments ago is known to it only after its next discovery resync, every 30 s).
    env.kubectl("delete", c.PLURAL, "pair", "--wait=true", "--timeout=30s")
    wait_until(lambda: env.get("secret", name) is None, timeout=90, message="the Secret collected with its owner")


async def test_the_operator_identity_may_write_only_its_own_owned_credentials_secrets(env):
    env.allow_forbidden = True  # refusals provoked on purpose
    env.apply(receiptsync_manifest("owner", SPEC))
    owner = dict(env.get(c.PLURAL, "owner")["metadata"])
    env.kubectl("create", "secret", "generic", "gmail", "--from-literal=credentials.json={}")
    ours = worker_credentials.secret_manifest([], owner, database_url="postgresql://db/x", redis_url="redis://r/0")
    kube = operator_kube(env)

    async def apply(body: dict, **params: str) -> int:
        path = core_path("secrets", env.ns, body["metadata"]["name"])
        try:
            await kube.request("PATCH", path, body=body, params={**worker_credentials.APPLY, **params},
                               content_type=worker_credentials.APPLY_CONTENT_TYPE)
            return 200
        except ApiError as exc:
            return exc.status

    # Ours by its labels, but owned by nothing (it would outlive every ReceiptSync).
    stray = {**ours, "metadata": {**{k: v for k, v in ours["metadata"].items() if k != "ownerReferences"},
                                  "name": "stray"}}
    try:
        for _ in range(100):  # the API server takes a moment to enforce a policy the chart just made
            if await apply(stray, dryRun="All") == 403:
                break
            await asyncio.sleep(0.2)
        assert await apply(stray) == 403 and env.get("secret", "stray") is None
        assert await apply(ours) == 200
        # A tenant's Secret, even given our labels and owner in the apply: not one of ours before.
        assert await apply({**ours, "metadata": {**ours["metadata"], "name": "gmail"}}) == 403
        assert "worker-credentials" not in str(env.get("secret", "gmail")["metadata"].get("labels"))
        # No delete at all (RBAC), and no read.
        with pytest.raises(ApiError) as refused:
            await kube.delete(core_path("secrets", env.ns, ours["metadata"]["name"]))
        assert refused.value.status == 403
        with pytest.raises(ApiError) as refused:
            await kube.get(core_path("secrets", env.ns, "gmail"))
        assert refused.value.status == 403
    finally:
        await kube.close()
