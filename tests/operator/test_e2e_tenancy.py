"""Issue 14, end to end on the real control plane: the chart's admission policy binds a namespace to its
business ids; each worker attempt gets its own PostgreSQL role (row-level security, no DDL), Redis ACL
user and heartbeat key, under its own keys of its ReceiptSync's credentials Secret (one server-side apply
per attempt, holding the live attempts only), revoked when the attempt ends; a rewritten payload is
refused by the worker; a forged heartbeat changes nothing; the operator's RBAC is exactly what it uses.

Real workers (`receiptsync-worker`, the image's entrypoint) sync the sandbox's sample mailbox through
the Gmail emulator, paced by a low quota so an attempt lives long enough to be poked at.
"""
from __future__ import annotations

import base64
import json
import secrets
import uuid

import psycopg
import pytest
import redis

from receiptsync_common import contract as c
from receiptsync_operator import worker_job
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.testing import OperatorProcess, receiptsync_manifest, wait_until

pytestmark = pytest.mark.slow

MAILBOX = "demo@example.com"  # the session sandbox's sample mailbox (40 messages over 18 months)
CREDENTIAL_KEY = secrets.token_hex(32)
SLOW = "20"  # Gmail quota units a second: about 12 s per sync of the sample mailbox


def per_attempt(sandbox, quota: str = SLOW, **more: str | None) -> dict[str, str | None]:
    """Operator settings: the real worker, per-attempt credentials (the administrative database URL
    and a credential key), a paced Gmail quota."""
    return {c.OPERATOR_ENV_WORKER_COMMAND: None, c.OPERATOR_ENV_DATABASE_URL: sandbox.env["DATABASE_URL"],
            c.OPERATOR_ENV_CREDENTIAL_KEY: CREDENTIAL_KEY, c.WORKER_ENV_QUOTA_RATE: quota,
            c.WORKER_ENV_QUOTA_BURST: quota, c.OPERATOR_ENV_HEARTBEAT_TIMEOUT: "10", **more}


def annotate(sandbox, namespace: str, business_ids: str) -> None:
    sandbox.kubectl("annotate", "--overwrite", "namespace", namespace, f"{c.BUSINESS_IDS_ANNOTATION}={business_ids}")


def gmail_secret(sandbox) -> dict:
    credentials = authorized_user(MAILBOX, sandbox.env["GMAIL_TOKEN_URI"])
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gmail"},
            "stringData": {c.DEFAULT_CREDENTIALS_KEY: json.dumps(credentials)}}


def sync(name: str, business: str, **spec) -> dict:
    return receiptsync_manifest(name, {"businessId": business, "mode": "full", "monthsBack": 24,
                                       "gmail": {"secretRef": {"name": "gmail"}}, "timeout": "120s", **spec})


def admin_rows(sandbox, sql: str, *params) -> list[tuple]:
    with psycopg.connect(sandbox.env["DATABASE_URL"], autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def job_of(world, name: str) -> dict:
    status = world.wait_status(name, lambda s: bool(s.get("workerJob")), timeout=60, message=f"{name}'s worker Job")
    return wait_until(lambda: world.get("jobs", status["workerJob"]), timeout=30, message="the Job object")


def worker_env(job: dict) -> dict[str, dict]:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def credentials_secret(world, name: str) -> dict[str, str]:
    """The decoded credentials Secret of ReceiptSync ``name`` (read as the cluster admin)."""
    owner = dict(world.get(c.PLURAL, name)["metadata"])
    secret = wait_until(lambda: world.get("secret", worker_job.credentials_secret_name(owner)), timeout=10,
                        message="the resource's credentials Secret")
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def attempt_secret(world, job: dict) -> dict[str, str]:
    """The attempt's own keys (without their Job-name prefix) of the Secret its Job's DATABASE_URL
    points at (read as the cluster admin)."""
    ref = worker_env(job)[c.ENV_DATABASE_URL]["valueFrom"]["secretKeyRef"]
    secret = wait_until(lambda: world.get("secret", ref["name"]), timeout=10, message="the attempt's Secret")
    prefix = job["metadata"]["name"] + "."
    return {key.removeprefix(prefix): base64.b64decode(value).decode() for key, value in secret["data"].items()
            if key.startswith(prefix)}


def revoked(sandbox, job_id: str) -> bool:
    """The attempt's row is gone (its role is dropped right after it)."""
    return admin_rows(sandbox, "SELECT count(*) FROM attempt_credentials WHERE job_id = %s", job_id) == [(0,)]


class TenantB:
    """A second tenant: its own namespace (business tb-biz), the chart's identity, its own operator."""

    def __init__(self, env, overrides: dict) -> None:
        self.sandbox, self.tmp = env.sandbox, env.tmp
        self.ns = f"{env.ns}-b"
        self.sandbox.prepare_namespace(self.ns, "tb-biz")
        self.user = self.sandbox.install_operator_identity(self.ns)
        self.operator = OperatorProcess.prepare(
            self.sandbox, self.tmp / "op-b.log", namespace=self.ns, redis_url=env.redis_url,
            identity=f"op-b-{uuid.uuid4().hex[:4]}", lease_name=f"rs-{self.ns}", service_account=self.user,
            **{c.OPERATOR_ENV_LEASE_DURATION: "4", c.OPERATOR_ENV_DELETE_REDIS_TIMEOUT: "3", **overrides}).start()
        self.operator.wait_leading(timeout=30)

    def kubectl(self, *args, **kw):
        return self.sandbox.kubectl("-n", self.ns, *args, **kw)

    def status(self, name: str) -> dict:
        result = self.kubectl("get", c.PLURAL, name, "-o", "json", check=False)
        return (json.loads(result.stdout).get("status") or {}) if result.returncode == 0 else {}

    def close(self) -> list[str]:
        self.operator.stop()
        self.sandbox.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)
        return [f"{e['verb']} {e['requestURI']}" for e in self.sandbox.audit(user=self.user)
                if e["responseStatus"]["code"] == 403]


@pytest.fixture
def tenant_b(env):
    holder: list[TenantB] = []
    yield lambda overrides: holder.append(TenantB(env, overrides)) or holder[-1]
    for tenant in holder:
        refused = tenant.close()
        assert not refused, f"tenant b's operator was refused: {refused[:5]}"


def test_namespace_admits_only_its_businesses_and_a_worker_can_touch_only_its_own(env, tenant_b):
    annotate(env.sandbox, env.ns, "ta-biz")
    settings = per_attempt(env.sandbox)
    env.start_operator(**settings)
    other = tenant_b(settings)
    env.apply(gmail_secret(env.sandbox))
    other.kubectl("apply", "-f", "-", input=json.dumps(gmail_secret(env.sandbox)))

    # Admission: the namespace of ta-biz refuses another business at apply, naming the field.
    refused = env.kubectl("apply", "-f", "-", check=False, input=json.dumps(sync("intruder", "tb-biz")))
    assert refused.returncode != 0 and "spec.businessId" in refused.stderr and "tb-biz" in refused.stderr
    assert env.get(c.PLURAL, "intruder") is None

    # Another tenant's rows, already there.
    admin_rows(env.sandbox, "INSERT INTO receipts (business_id, gmail_message_id, subject, sender, received_at,"
                            " first_job_id) VALUES ('tb-biz', %s, 'theirs', 'x', now(), 'seed')", uuid.uuid4().hex)
    theirs_before = admin_rows(env.sandbox, "SELECT count(*), count(*) FILTER (WHERE subject = 'pwned')"
                                            " FROM receipts WHERE business_id = 'tb-biz'")[0]
    other.kubectl("apply", "-f", "-", input=json.dumps(sync("theirs", "tb-biz")))
    env.apply(sync("mine", "ta-biz"))
    job = job_of(env, "mine")

    # The Job carries no credential, only references to its own keys of the resource's Secret, and says
    # what it is.
    variables = worker_env(job)
    secret_name = worker_job.credentials_secret_name(env.get(c.PLURAL, "mine")["metadata"])
    for name, key in ((c.ENV_DATABASE_URL, c.CREDENTIALS_DATABASE_URL_KEY),
                      (c.ENV_REDIS_URL, c.CREDENTIALS_REDIS_URL_KEY),
                      (c.ENV_HEARTBEAT_KEY, c.CREDENTIALS_HEARTBEAT_KEY_KEY)):
        assert variables[name]["valueFrom"]["secretKeyRef"] == {"name": secret_name,
                                                                "key": f"{job['metadata']['name']}.{key}"}
    identity = json.loads(variables[c.ENV_ATTEMPT_IDENTITY]["value"])
    assert (identity["business_id"], identity["namespace"], identity["name"]) == ("ta-biz", env.ns, "mine")
    creds = attempt_secret(env, job)
    assert creds[c.CREDENTIALS_DATABASE_URL_KEY].split("@")[0].split(":")[-1] not in json.dumps(job)

    # Redis, as the worker: its own payload only; no FLUSHALL, CONFIG, KEYS, other attempts, reading heartbeats.
    env.redis.set(c.job_key("elsewhere.other.0123abcd.r1.a1"), '{"business_id": "tb-biz"}')
    worker_redis = redis.Redis.from_url(creds[c.CREDENTIALS_REDIS_URL_KEY], decode_responses=True)
    assert json.loads(worker_redis.get(c.job_key(identity["job_id"])))["business_id"] == "ta-biz"
    for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"),
                    ("GET", c.job_key("elsewhere.other.0123abcd.r1.a1")), ("XREAD", "STREAMS", c.EVENTS_STREAM, "0"),
                    ("ACL", "LIST"), ("SET", c.job_key(identity["job_id"]), "x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker_redis.execute_command(*command)

    # Its mailbox's quota bucket, once the worker named the mailbox in a signed heartbeat; no other.
    user = creds[c.CREDENTIALS_REDIS_URL_KEY].split("://", 1)[1].split(":", 1)[0]
    wait_until(lambda: c.quota_key(MAILBOX) in json.dumps(env.redis.execute_command("ACL", "GETUSER", user)),
               timeout=30, message="the mailbox's quota bucket granted")
    peek = "return redis.call('HMGET', KEYS[1], 'tokens')"
    assert worker_redis.eval(peek, 1, c.quota_key(MAILBOX)) is not None
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker_redis.eval(peek, 1, c.quota_key("someone-else@example.com"))

    # PostgreSQL, as the worker: no DDL, and nothing of tb-biz to see or change.
    with psycopg.connect(creds[c.CREDENTIALS_DATABASE_URL_KEY], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE stolen (data text)")
        assert conn.execute("SELECT count(*) FROM receipts WHERE business_id = 'tb-biz'").fetchone() == (0,)
        assert conn.execute("UPDATE receipts SET subject = 'pwned' WHERE business_id = 'tb-biz'").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO receipts (business_id, gmail_message_id, subject, sender, received_at,"
                         " first_job_id) VALUES ('tb-biz', 'planted', 'x', 'x', now(), 'x')")
    # tb-biz's own sync may still be saving (its count only grows); ours changed nothing of it.
    after = admin_rows(env.sandbox, "SELECT count(*), count(*) FILTER (WHERE subject = 'pwned') FROM receipts"
                                    " WHERE business_id = 'tb-biz'")[0]
    assert after[1] == 0 and after[0] >= theirs_before[0], (after, theirs_before)

    # Forged heartbeats for tb-biz's running attempt - from the ta-biz worker's Redis user and from an
    # unrestricted Redis client - change nothing in its status.
    started = wait_until(lambda: (lambda s: s if s.get("phase") == c.PHASE_STARTED else None)(other.status("theirs")),
                         timeout=60, message="tb-biz's attempt Started")
    forged = {c.HB_JOB_ID: started["jobId"], c.HB_PHASE: c.PHASE_FAILED, c.HB_REASON: c.REASON_GMAIL_AUTH_ERROR,
              c.HB_MESSAGE: "forged", c.HB_SCANNED: "999999", c.HB_SAVED: "999999", c.HB_TIME: "2099-01-01T00:00:00Z",
              c.HB_MAC: "0" * 64}
    worker_redis.xadd(c.EVENTS_STREAM, forged)  # XADD is all the worker's user may do with the stream
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker_redis.hset(c.heartbeat_key(started["jobId"]), mapping=forged)
    env.redis.xadd(c.EVENTS_STREAM, forged)
    env.redis.hset(c.heartbeat_key(started["jobId"]), mapping=forged)
    wait_until(lambda: other.operator.logged("heartbeat ignored: not signed by the attempt it names") or
               [line for line in other.operator.lines() if "heartbeat ignored" in str(line.get("message"))],
               timeout=10, message="tb-biz's operator ignoring the forgery")
    after = other.status("theirs")
    assert after.get("phase") != c.PHASE_FAILED and after.get("message") != "forged"
    assert (after.get("progress") or {}).get("messagesScanned", 0) < 999999
    worker_redis.close()

    # Both runs finish with their own receipts; then the attempt's credentials are gone.
    done = env.wait_phase("mine", c.PHASE_FINISHED, timeout=120, reason=c.REASON_SUCCEEDED)
    assert done["progress"]["savedReceipts"] > 0
    theirs = wait_until(lambda: (lambda s: s if s.get("phase") in c.TERMINAL_PHASES else None)(other.status("theirs")),
                        timeout=120, message="tb-biz's run ended")
    assert theirs["phase"] == c.PHASE_FINISHED and theirs["message"] != "forged", theirs
    assert admin_rows(env.sandbox, "SELECT count(*) FROM receipts WHERE business_id = 'ta-biz'")[0][0] >= \
        done["progress"]["savedReceipts"]
    wait_until(lambda: revoked(env.sandbox, identity["job_id"]), timeout=30, message="the attempt's role revoked")
    dead_keys = {f"{job['metadata']['name']}.{key}" for key in creds}
    lingering = credentials_secret(env, "mine")
    assert dead_keys <= set(lingering)  # still in the Secret (no write to take them out)...
    with pytest.raises(psycopg.OperationalError):  # ...but dead: the role is dropped, the Redis user gone
        psycopg.connect(lingering[f"{job['metadata']['name']}.{c.CREDENTIALS_DATABASE_URL_KEY}"],
                        connect_timeout=5).close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(lingering[f"{job['metadata']['name']}.{c.CREDENTIALS_REDIS_URL_KEY}"]).ping()

    # The next attempt's apply leaves only the live attempts' keys: its own.
    env.kubectl("annotate", "rsync", "mine", f"{c.RUN_NOW_ANNOTATION}=again")
    again = env.wait_status("mine", lambda s: s.get("runId", 0) > done["runId"] and bool(s.get("workerJob")),
                            timeout=60, message="mine's next run's worker Job")
    assert again["workerJob"] != job["metadata"]["name"]
    data = credentials_secret(env, "mine")
    assert set(data) == {f"{again['workerJob']}.{key}" for key in creds}, sorted(data)
    with psycopg.connect(data[f"{again['workerJob']}.{c.CREDENTIALS_DATABASE_URL_KEY}"], autocommit=True) as conn:
        assert conn.execute("SELECT receiptsync_business()").fetchone() == ("ta-biz",)
    env.wait_phase("mine", c.PHASE_FINISHED, timeout=120)


def test_a_payload_rewritten_to_another_business_is_refused_by_the_worker(env):
    annotate(env.sandbox, env.ns, "ta-biz")
    env.start_operator(**per_attempt(env.sandbox, **{c.OPERATOR_ENV_MAX_WORKERS: "1"}))
    env.apply(gmail_secret(env.sandbox))
    env.apply(sync("first", "ta-biz"))  # holds the one worker slot for a while
    env.wait_phase("first", c.PHASE_STARTED, timeout=60)
    env.apply(sync("second", "ta-biz"))
    queued = env.wait_phase("second", c.PHASE_QUEUED, timeout=30)
    key = c.job_key(queued["jobId"])
    payload = json.loads(env.redis.get(key))
    assert payload["business_id"] == "ta-biz" and payload.get("mac")  # the operator signs what it writes
    env.redis.set(key, json.dumps({**payload, "business_id": "tb-biz"}))  # someone with Redis access

    failed = env.wait_phase("second", c.PHASE_FAILED, timeout=120)
    assert failed["reason"] == c.REASON_PAYLOAD_REJECTED, failed
    assert "business_id is 'tb-biz' in Redis but 'ta-biz' in the Job" in failed["message"]
    assert failed["attempt"] == 1  # refused for good, not retried
    job = env.get("jobs", failed["workerJob"])
    assert json.loads(worker_env(job)[c.ENV_ATTEMPT_IDENTITY]["value"])["business_id"] == "ta-biz"
    assert admin_rows(env.sandbox, "SELECT count(*) FROM sync_runs WHERE job_id = %s", queued["jobId"]) == [(0,)]
    env.wait_phase("first", c.PHASE_FINISHED, timeout=120)


# Grants the operator holds without a short run calling them, and why (all else must be called).
GRANTS_NOT_CALLED = {
    ("update", c.GROUP, "receiptsyncs/finalizers"): "checked by OwnerReferencesPermissionEnforcement, never called",
    ("patch", c.GROUP, "receiptsyncs"): "releases the finalizer an older operator put on a ReceiptSync, at deletion",
    ("update", c.GROUP, "receiptsyncs"): "kopf versions that PUT instead of PATCH",
    ("update", c.GROUP, "receiptsyncs/status"): "kopf versions that PUT instead of PATCH",
    ("get", c.GROUP, "receiptsyncs/status"): "kopf reads status through the main resource today",
    ("get", c.GROUP, "receiptsyncs"): "a heartbeat naming a resource the watch has not delivered yet",
    ("patch", "", "events"): "a repeated Event is counted on the existing one",
    ("list", "", "events"): "a worker Job's FailedCreate is told only in an Event",
    ("get", "batch", "jobs"): "a Job the cache misses (created before a restart)",
    ("get", "", "pods"): "not called: pods are listed and watched",
    ("create", "", "secrets"): "authorizes the server-side apply that makes a Secret (audited as patch)",
    ("delete", "batch", "jobs"): "cancel, timeout, Replace, deletion of a ReceiptSync while it runs",
}


def test_rbac_of_the_chart_is_what_the_operator_uses(env):
    """On the real server's audit log, under the chart's Role: no call refused (env checks it at the
    end), every call granted, and every grant either called in a per-attempt sync or listed above."""
    annotate(env.sandbox, env.ns, "ta-biz")
    mark = env.sandbox.audit_mark()
    env.start_operator(**per_attempt(env.sandbox, quota="250"))
    env.apply(gmail_secret(env.sandbox))
    env.apply(sync("audited", "ta-biz"))
    done = env.wait_phase("audited", c.PHASE_FINISHED, timeout=120)
    wait_until(lambda: revoked(env.sandbox, done["jobId"]), timeout=30, message="credentials revoked")
    secret_name = worker_job.credentials_secret_name(env.get(c.PLURAL, "audited")["metadata"])
    env.kubectl("delete", c.PLURAL, "audited", "--wait=true", "--timeout=30s")
    # The operator deletes no Secret: the garbage collector takes it with its owner.
    wait_until(lambda: env.get("secret", secret_name) is None, timeout=90,  # GC's discovery resync: 30 s
               message="the Secret collected")
    env.operators[0].stop()  # its watches end: the audit log completes their records

    calls = {(e["verb"], ref.get("apiGroup", ""), "/".join(filter(None, (ref["resource"], ref.get("subresource")))))
             for e in env.sandbox.audit(user=env.operator_user, since_line=mark)
             if (ref := e.get("objectRef") or {}).get("resource")}  # not discovery (/api, /version)
    role = env.get("role", f"rs-{env.ns}"[:40] + "-receipt-sync")
    granted = {(verb, group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert {call[0] for call in calls if call[2] == "secrets"} == {"patch"}  # one apply; no read, no delete
    unused = granted - calls
    assert unused <= set(GRANTS_NOT_CALLED), f"granted but never used: {sorted(unused - set(GRANTS_NOT_CALLED))}"
    ours = {call for call in calls if call[2] not in ("leases", "customresourcedefinitions", "namespaces")}
    assert ours <= granted, f"called without a grant in the Role: {sorted(ours - granted)}"


@pytest.mark.parametrize("query,admitted", [
    ("in:spam", False), ("from:shop.com OR in:anywhere", False), ("(label:Trash)", False),
    ("{in:trash in:inbox}", False),
    ("-in:spam from:shop.com", True), ("in:inbox label:receipts", True), ('"in:trash" subject words', True),
])
def test_query_cannot_reach_into_spam_or_trash(env, query, admitted):
    """The CRD refuses at apply a query that would widen the search (the worker drops such terms too, and
    its fixed group excludes spam and trash)."""
    result = env.kubectl("apply", "--dry-run=server", "-f", "-", check=False,
                         input=json.dumps(sync("q", "anything", query=query)))
    assert (result.returncode == 0) == admitted, result.stderr
    if not admitted:
        assert "spec.query" in result.stderr


def test_a_running_attempt_gets_its_redis_user_back_after_redis_restarts(env, tmp_path):
    """Redis forgets ACL users when it restarts: the operator notices (the server's run id) and
    re-creates those of running attempts, so their workers carry on and the run finishes."""
    import os
    import signal

    from receiptsync_sandbox import services

    own = services.start_redis(tmp_path / "redis")
    try:
        annotate(env.sandbox, env.ns, "ta-biz")
        op = env.start_operator(**per_attempt(env.sandbox), **{c.OPERATOR_ENV_REDIS_URL: own.url})
        env.apply(gmail_secret(env.sandbox))
        env.apply(sync("survivor", "ta-biz"))
        job = job_of(env, "survivor")
        user = attempt_secret(env, job)[c.CREDENTIALS_REDIS_URL_KEY].split("://", 1)[1].split(":", 1)[0]
        admin = redis.Redis.from_url(own.url, decode_responses=True)
        wait_until(lambda: c.quota_key(MAILBOX) in json.dumps(admin.execute_command("ACL", "GETUSER", user)),
                   timeout=60, message="the worker syncing (its mailbox's bucket granted)")
        os.kill(own.pid, signal.SIGKILL)
        services.wait_for_exit(own.pid)
        own = services.start_redis(tmp_path / "redis", port=own.port)  # empty: no ACL users
        wait_until(lambda: op.logged("Redis restarted: re-creating the ACL users of running attempts"), timeout=20,
                   message="the operator noticing the restart")
        admin = redis.Redis.from_url(own.url, decode_responses=True)
        assert admin.execute_command("ACL", "GETUSER", user) is not None
        done = env.wait_phase("survivor", c.PHASE_FINISHED, timeout=120)
        assert done["reason"] == c.REASON_SUCCEEDED and done["attempt"] == 1, done
        wait_until(lambda: admin.execute_command("ACL", "GETUSER", user) is None, timeout=30,
                   message="the Redis user removed after the attempt")
    finally:
        own.stop()
