"""Issue 14's decisions as pure functions: derived per-attempt secrets and signatures, the attempt's
identity check, the Redis ACL rules, role names and worker URLs, the resource's credentials Secret (its
apply body, key names, the Job's references), when an attempt's credentials are revoked, and the
operator's settings."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json

import pytest

from receiptsync_common import attempt_auth, attempt_identity
from receiptsync_common import contract as c
from receiptsync_common.jobspec import JobPayload
from receiptsync_operator import config, redis_acl, tenant_db, worker_credentials, worker_job
from receiptsync_operator.tenant_db import AttemptRole
from receiptsync_worker import config as worker_config

MASTER = attempt_auth.master_key("k" * 64)
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
JOB = "team-a.acme.01234567.r2.a3"


def payload(**changes) -> JobPayload:
    base = JobPayload(job_id=JOB, namespace="team-a", name="acme", uid="01234567-89ab", business_id="ta-biz",
                      run_id=2, attempt=3, mode="full", priority="default", max_messages=100, timeout_seconds=600,
                      date_from="2025-01-01", date_to="2025-01-31", explicit_from=True, explicit_to=True,
                      query="from:shop.com")
    return dataclasses.replace(base, **changes)


# --- derived secrets and signatures --------------------------------------------------------------------
def test_secrets_are_derived_per_attempt_and_purpose_and_never_repeat_across_them():
    values = {attempt_auth.password(MASTER, purpose, job) for purpose in ("database", "redis", "heartbeat")
              for job in (JOB, JOB.replace("a3", "a4"))}
    assert len(values) == 6
    assert attempt_auth.password(MASTER, "redis", JOB) == attempt_auth.password(MASTER, "redis", JOB)  # restart-proof
    other_master = attempt_auth.master_key("x" * 64)
    assert attempt_auth.password(other_master, "redis", JOB) != attempt_auth.password(MASTER, "redis", JOB)
    assert len(attempt_auth.password(MASTER, "redis", JOB)) == 43 and len(attempt_auth.heartbeat_key(MASTER, JOB)) == 64
    with pytest.raises(attempt_auth.CredentialKeyError):
        attempt_auth.master_key("short")


def test_a_heartbeat_verifies_only_unchanged_and_under_its_own_attempts_key():
    key = attempt_auth.heartbeat_key(MASTER, JOB)
    fields = {c.HB_JOB_ID: JOB, c.HB_PHASE: c.PHASE_STARTED, c.HB_SCANNED: "4", c.HB_MAILBOX: "a@b.c"}
    signed = attempt_auth.sign_heartbeat(key, fields)
    assert attempt_auth.heartbeat_verifies(key, signed)
    assert not attempt_auth.heartbeat_verifies(key, fields)  # unsigned
    assert not attempt_auth.heartbeat_verifies(key, {**signed, c.HB_PHASE: c.PHASE_FAILED})  # changed
    assert not attempt_auth.heartbeat_verifies(key, {**signed, c.HB_MESSAGE: "added"})  # a field added
    other = attempt_auth.heartbeat_key(MASTER, "team-b.x.01234567.r1.a1")
    assert not attempt_auth.heartbeat_verifies(other, signed)  # another attempt's key
    assert not attempt_auth.heartbeat_verifies(key, {**signed, c.HB_MAC: "0" * 64})


def test_payload_signature_notices_any_rewrite():
    data = json.loads(payload().to_json())
    signed = attempt_auth.sign_payload(MASTER, JOB, data)
    assert attempt_auth.payload_verifies(MASTER, JOB, signed)
    assert not attempt_auth.payload_verifies(MASTER, JOB, {**signed, "business_id": "tb-biz"})
    assert not attempt_auth.payload_verifies(MASTER, "other.job.01234567.r1.a1", signed)
    assert not attempt_auth.payload_verifies(MASTER, JOB, data)
    assert JobPayload.from_json(json.dumps(signed)) == payload()  # the worker ignores the MAC field


def test_scram_verifier_has_postgresqls_format():
    verifier = attempt_auth.scram_verifier("secret", b"0123456789abcdef")
    head, keys = verifier.split("$", 1)[1].split("$")
    assert verifier.startswith("SCRAM-SHA-256$4096:") and len(base64.b64decode(head.split(":")[1])) == 16
    assert all(len(base64.b64decode(part)) == 32 for part in keys.split(":"))
    assert "secret" not in verifier


# --- the attempt's identity ----------------------------------------------------------------------------
def test_identity_round_trip_and_refusal_names_the_business():
    identity = attempt_identity.parse_identity(attempt_identity.identity_json(payload()))
    assert attempt_identity.mismatches(payload(), identity) == []
    assert attempt_identity.mismatches(payload(priority="high", enqueued_at="x"), identity) == []  # not identity
    forged = payload(business_id="tb-biz", query="in:anywhere")
    differ = attempt_identity.mismatches(forged, identity)
    assert differ == ["business_id", "query"]
    message = attempt_identity.refusal(forged, identity, differ)
    assert "business_id is 'tb-biz' in Redis but 'ta-biz' in the Job" in message and "query differs" in message
    for bad in ("[]", "{}", json.dumps({"job_id": JOB})):
        with pytest.raises(ValueError):
            attempt_identity.parse_identity(bad)


def test_worker_requires_its_identity_and_a_hex_heartbeat_key():
    env = {c.ENV_JOB_ID: JOB, c.ENV_REDIS_URL: "redis://u:p@r/0", c.ENV_DATABASE_URL: "postgresql://u:p@d/x",
           c.ENV_GMAIL_CREDENTIALS: "{}", c.ENV_ATTEMPT_IDENTITY: attempt_identity.identity_json(payload()),
           c.ENV_HEARTBEAT_KEY: "ab" * 32}
    settings = worker_config.from_env(env)
    assert settings.identity["business_id"] == "ta-biz" and settings.heartbeat_key == "ab" * 32
    assert "p@" not in repr(settings) and "ab" * 32 not in repr(settings)
    for broken, words in (({c.ENV_ATTEMPT_IDENTITY: ""}, c.ENV_ATTEMPT_IDENTITY),
                          ({c.ENV_ATTEMPT_IDENTITY: "{"}, c.ENV_ATTEMPT_IDENTITY),
                          ({c.ENV_JOB_ID: "another.job.01234567.r1.a1"}, "names another job"),
                          ({c.ENV_HEARTBEAT_KEY: "not hex"}, c.ENV_HEARTBEAT_KEY)):
        with pytest.raises(worker_config.ConfigError, match=words):
            worker_config.from_env({**env, **broken})


# --- Redis ACL -----------------------------------------------------------------------------------------
def test_acl_rules_reach_only_the_attempts_own_keys_each_with_its_own_commands():
    import hashlib

    rules = redis_acl.user_rules(JOB, "pw", mailbox="shop*?@x.com")
    assert rules[:3] == ["reset", "on", "#" + hashlib.sha256(b"pw").hexdigest()] and "pw" not in " ".join(rules)
    root_keys = [r for r in rules if "~" in r and not r.startswith("(")]
    assert root_keys == [f"%R~{c.job_key(JOB)}"]  # read-only payload
    selectors = [r for r in rules if r.startswith("(")]
    assert selectors == [f"(~{c.heartbeat_key(JOB)} +del +hset +expire)", f"(%W~{c.EVENTS_STREAM} +xadd)",
                         "(~" + c.quota_key("shop\\*\\?@x.com") + " +evalsha +eval +hmget +hset +pexpire)"]
    granted = {r[1:] for r in rules if r.startswith("+")} | {w[1:] for s in selectors for w in s[1:-1].split()[1:]}
    assert not granted & {"flushall", "flushdb", "config", "keys", "scan", "acl", "xread", "xrange", "xtrim", "set",
                          "@all", "monitor", "debug", "subscribe", "client", "shutdown", "info"}
    assert not any("quota" in r for r in redis_acl.user_rules(JOB, "pw"))  # until the mailbox is known


def test_mailboxes_a_worker_may_name_and_user_urls():
    assert redis_acl.mailbox_allowed("alice@example.com")
    for bad in ("Alice@example.com", "no-at-sign", " a@b.c", "a@b.c\n", "a b@c.d", "x" * 400 + "@a.b"):
        assert not redis_acl.mailbox_allowed(bad), bad
    assert redis_acl.user_name(JOB).startswith("rsw-") and redis_acl.user_name(JOB) != redis_acl.user_name(JOB + "x")
    assert redis_acl.worker_url("redis://:admin@redis:6379/3", "rsw-1", "pw") == "redis://rsw-1:pw@redis:6379/3"
    assert redis_acl.worker_url("rediss://redis:6380/0", "rsw-1", "pw") == "rediss://rsw-1:pw@redis:6380/0"


# --- PostgreSQL ----------------------------------------------------------------------------------------
def test_role_names_fit_and_differ_per_database_and_attempt():
    name = tenant_db.role_name("receiptsync", JOB)
    assert name.startswith("rsw_") and len(name) <= 63
    assert name != tenant_db.role_name("other", JOB) and name != tenant_db.role_name("receiptsync", JOB + "x")
    assert tenant_db.database_name("postgresql://admin:pw@db:5432/receiptsync?sslmode=require") == "receiptsync"


def test_worker_database_url_carries_only_the_attempts_role():
    url = tenant_db.worker_url("postgresql://admin:adminpw@db:5432/receiptsync?sslmode=require", "rsw_1", "p/w@:x")
    assert url == "postgresql://rsw_1:p%2Fw%40%3Ax@db:5432/receiptsync?sslmode=require" and "adminpw" not in url
    dsn = tenant_db.worker_url("host=db dbname=receiptsync user=admin password=adminpw", "rsw_1", "pw")
    assert "user=rsw_1" in dsn and "password=pw" in dsn and "adminpw" not in dsn


def test_grant_statements_make_a_login_role_in_the_worker_group_only():
    role = AttemptRole("rsw_1", JOB, "ta-biz", "team-a", "job", "rsw-1", NOW)
    create, grant = (s.as_string(None) for s in tenant_db.grant_statements(role, "SCRAM-SHA-256$v", exists=False))
    assert create.startswith('CREATE ROLE "rsw_1" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS')
    assert "PASSWORD 'SCRAM-SHA-256$v'" in create and f"VALID UNTIL '{NOW.isoformat()}'" in create
    assert grant == 'GRANT "receiptsync_worker" TO "rsw_1"'
    alter = tenant_db.grant_statements(role, "v", exists=True)[0].as_string(None)
    assert alter.startswith('ALTER ROLE "rsw_1" LOGIN')


# --- the resource's credentials Secret and when an attempt's keys go ---------------------------------------
OWNER = {"name": "acme", "uid": "01234567-89ab", "namespace": "team-a"}
SECRET = "rs-acme-01234-worker-credentials"


def issued(**changes) -> worker_credentials.Issued:
    attempt = payload(**changes)
    return worker_credentials.issue(MASTER, attempt, OWNER, job_name=c.worker_job_name("acme", OWNER["uid"],
                                                                                       attempt.run_id, attempt.attempt),
                                    database="receiptsync", expires=NOW + dt.timedelta(hours=1))


def decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_the_secret_holds_the_attempts_own_urls_and_key_under_its_job_name_labelled_for_the_policy():
    creds = issued()
    assert (creds.job_name, creds.role.secret_name) == ("rs-acme-01234-r2-a3", SECRET)
    secret = worker_credentials.secret_manifest([creds], OWNER, database_url="postgresql://admin:apw@db/rs",
                                                redis_url="redis://:rpw@redis:6379/2")
    meta = secret["metadata"]
    assert (meta["name"], meta["namespace"], secret["type"]) == (SECRET, "team-a", "Opaque")
    assert "immutable" not in secret  # every apply rewrites it
    assert meta["labels"] == {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, c.LABEL_COMPONENT: c.COMPONENT_WORKER_CREDENTIALS,
                              c.LABEL_SYNC_NAME: "acme"}
    assert meta["ownerReferences"] == [{"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "acme",
                                        "uid": OWNER["uid"], "controller": False, "blockOwnerDeletion": False}]
    data = decoded(secret)
    assert set(data) == {"rs-acme-01234-r2-a3.database-url", "rs-acme-01234-r2-a3.redis-url",
                         "rs-acme-01234-r2-a3.heartbeat-key"}
    assert data["rs-acme-01234-r2-a3.database-url"].startswith(f"postgresql://{creds.role.role_name}:")
    assert data["rs-acme-01234-r2-a3.redis-url"] == \
        f"redis://{creds.role.redis_user}:{creds.redis_password}@redis:6379/2"
    assert data["rs-acme-01234-r2-a3.heartbeat-key"] == attempt_auth.heartbeat_key(MASTER, JOB)
    assert "apw" not in json.dumps(secret) and "rpw" not in json.dumps(secret)
    assert creds.database_password not in repr(creds) and creds.heartbeat_key not in repr(creds)


def test_two_live_attempts_share_the_secret_each_under_its_own_keys():
    first, second = issued(), issued(run_id=3, attempt=1, job_id="team-a.acme.01234567.r3.a1")
    body = worker_credentials.secret_manifest([second, first], OWNER, database_url="postgresql://a:b@db/rs",
                                              redis_url="redis://redis:6379/0")
    data = decoded(body)
    assert sorted(data) == sorted(f"{job}.{key}" for job in ("rs-acme-01234-r2-a3", "rs-acme-01234-r3-a1")
                                  for key in ("database-url", "redis-url", "heartbeat-key"))
    assert list(body["data"]) == sorted(body["data"])  # the same attempts give the same body
    assert data["rs-acme-01234-r3-a1.heartbeat-key"] == attempt_auth.heartbeat_key(MASTER, second.role.job_id)
    assert data["rs-acme-01234-r3-a1.database-url"] != data["rs-acme-01234-r2-a3.database-url"]
    assert second.role.secret_name == first.role.secret_name == body["metadata"]["name"]
    # Derived again from the row alone (what each apply does for the other live attempts): the same.
    again = worker_credentials.derived(MASTER, first.role, worker_credentials.job_name_of(first.role))
    assert again == first
    assert worker_credentials.secret_manifest([again, second], OWNER, database_url="postgresql://a:b@db/rs",
                                              redis_url="redis://redis:6379/0") == body


@pytest.mark.parametrize("name", ["acme", "a" * 253, "a." * 126 + "b", "x-" * 120 + "y.z", "v1.2.3"])
def test_secret_names_and_keys_are_valid_for_every_receiptsync_name(name):
    import re

    subdomain = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    owner = {"name": name, "uid": "abcdef12-0000", "namespace": "team-a"}
    secret = worker_job.credentials_secret_name(owner)
    assert len(secret) <= 253 and subdomain.match(secret), secret
    assert secret.endswith("-abcde-worker-credentials")
    assert secret != worker_job.credentials_secret_name({**owner, "uid": "00000000-0000"})  # a namesake's
    job_name = c.worker_job_name(name, owner["uid"], 12, 3)
    for key in (c.CREDENTIALS_DATABASE_URL_KEY, c.CREDENTIALS_REDIS_URL_KEY, c.CREDENTIALS_HEARTBEAT_KEY_KEY):
        assert re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", worker_job.credentials_key(job_name, key))
    role = AttemptRole("rsw_1", c.make_job_id("team-a", name, owner["uid"], 12, 3), "ta-biz", "team-a", secret,
                       "rsw-1", NOW)
    assert worker_credentials.job_name_of(role) == job_name  # how a pass finds the attempt's Job


def test_rows_issued_with_a_secret_per_attempt_still_find_their_job():
    legacy = AttemptRole("rsw_1", "not-a-job-id", "ta-biz", "team-a", "rs-old-job", "rsw-1", NOW)
    assert worker_credentials.job_name_of(legacy) == "rs-old-job"


def test_the_worker_job_references_its_own_keys_of_the_resources_secret_and_says_what_it_is():
    settings = config.Settings(redis_url="redis://:rpw@r:6379/0", database_url="postgresql://admin:apw@db/rs")
    job = worker_job.build(payload(), OWNER, {"gmail": {"secretRef": {"name": "g"}}}, settings)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name, key in ((c.ENV_REDIS_URL, "redis-url"), (c.ENV_DATABASE_URL, "database-url"),
                      (c.ENV_HEARTBEAT_KEY, "heartbeat-key")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": f"{job['metadata']['name']}.{key}"}
    body = worker_credentials.secret_manifest([issued()], OWNER, database_url="postgresql://a:b@db/rs",
                                              redis_url="redis://r:6379/0")
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in env.values()
            if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == body["metadata"]["name"]}
    assert refs == set(body["data"])  # every key it needs is in the apply, and nothing else of it
    assert json.loads(env[c.ENV_ATTEMPT_IDENTITY]["value"]) == attempt_identity.identity_of(payload())
    assert "apw" not in json.dumps(job) and "rpw" not in json.dumps(job)
    shared = worker_job.build(payload(), OWNER, {}, dataclasses.replace(settings, worker_credentials="shared"))
    shared_env = {e["name"]: e for e in shared["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert shared_env[c.ENV_DATABASE_URL]["value"] == settings.database_url and c.ENV_HEARTBEAT_KEY not in shared_env


ACTIVE = {"status": {"active": 1}}
DONE = {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
RUNNING_POD = {"status": {"phase": "Running"}}
GONE_POD = {"status": {"phase": "Succeeded"}}


@pytest.mark.parametrize("job,pods,synced,issued_for,expired,verdict", [
    (ACTIVE, [RUNNING_POD], True, 999, False, False),  # running
    (DONE, [GONE_POD], True, 1, False, True),  # finished: revoke at once
    (DONE, [RUNNING_POD], True, 1, False, False),  # its pod is still shutting down
    (None, [], True, 5, False, False),  # just issued: the Job is being created
    (None, [], True, 120, False, True),  # never created, or deleted
    (None, [], False, 120, False, False),  # our Jobs not listed yet: cannot tell
    (ACTIVE, [RUNNING_POD], True, 1, True, True),  # past its deadline, whatever runs
])
def test_when_credentials_are_revoked(job, pods, synced, issued_for, expired, verdict):
    expires_at = NOW - dt.timedelta(seconds=1) if expired else NOW + dt.timedelta(hours=1)
    role = dataclasses.replace(issued().role, expires_at=expires_at)
    assert worker_credentials.ended(role, job, pods, now=NOW, jobs_synced=synced, issued_for=issued_for) is verdict


def test_credentials_expire_after_the_jobs_own_deadline():
    expires = worker_credentials.expires_at(payload(timeout_seconds=600), NOW, grace=60, start_timeout=300)
    assert expires == NOW + dt.timedelta(seconds=600 + 60 + 300 + worker_credentials.EXPIRY_MARGIN)


# --- operator settings -----------------------------------------------------------------------------------
def test_worker_credential_modes():
    assert not config.load(environ={}).per_attempt_credentials  # nothing to make roles with: shared
    auto = config.load(environ={c.OPERATOR_ENV_DATABASE_URL: "postgresql://a:b@db/x"})
    assert auto.per_attempt_credentials and auto.migration_url == auto.effective_worker_database_url
    assert "a:b" not in repr(auto)
    shared = config.load(environ={c.OPERATOR_ENV_DATABASE_URL: "postgresql://a:b@db/x",
                                  c.OPERATOR_ENV_WORKER_CREDENTIALS: "shared"})
    assert not shared.per_attempt_credentials
    legacy = config.load(environ={c.OPERATOR_ENV_WORKER_DATABASE_URL: "postgresql://w@db/x"})
    assert legacy.migration_url == "postgresql://w@db/x"  # the operator migrates even then; workers never
    for env, words in (({c.OPERATOR_ENV_WORKER_CREDENTIALS: "per-attempt"}, c.OPERATOR_ENV_DATABASE_URL),
                       ({c.OPERATOR_ENV_WORKER_CREDENTIALS: "sometimes"}, "must be one of"),
                       ({c.OPERATOR_ENV_CREDENTIAL_KEY: "short"}, "at least 32")):
        with pytest.raises(config.ConfigError, match=words):
            config.load(environ=env)
