"""Issue 14 against real PostgreSQL and Redis servers: a worker attempt's database role (row-level
security, no DDL) runs the worker's whole Store yet sees nothing of another business; its Redis ACL
user reaches only its own keys; the queue signs payloads and filters unsigned heartbeats; a worker
refuses a rewritten payload before touching anything."""
from __future__ import annotations

import datetime as dt
import json
import threading

import psycopg
import pytest
import redis
import redis.asyncio as aioredis

from receiptsync_common import attempt_auth, attempt_identity
from receiptsync_common import contract as c
from receiptsync_common.jobspec import JobPayload
from receiptsync_operator import redis_acl, tenant_db
from receiptsync_operator.run_queue import Queue
from receiptsync_operator.tenant_db import AttemptRole, TenantDatabase
from receiptsync_worker.config import Guards, Settings
from receiptsync_worker.cursor import Cursor
from receiptsync_worker.rows import ReceiptRow
from receiptsync_worker.store import RunEnd, RunRecord, SavedBatch, Store
from receiptsync_worker.sync import Attempt

MASTER = attempt_auth.master_key("m" * 64)
NOW = dt.datetime.now(dt.timezone.utc)


def role_for(db: TenantDatabase, business: str, job: str, expires: dt.datetime | None = None) -> AttemptRole:
    return AttemptRole(tenant_db.role_name(db.database, job), job, business, "ns", f"secret-{business}",
                       redis_acl.user_name(job), expires or NOW + dt.timedelta(hours=1))


def receipt(message_id: str) -> ReceiptRow:
    return ReceiptRow(message_id, None, "s", "x", "x@y", NOW, None, None, None, 0)


def test_an_attempts_role_runs_the_store_for_its_business_and_sees_nothing_else(fresh_database):
    db = TenantDatabase(fresh_database)
    assert db.migrate()[-1] == "0004" and db.migrate() == []
    mine, theirs = role_for(db, "ta-biz", "ns.a.u.r1.a1"), role_for(db, "tb-biz", "ns.b.u.r1.a1")
    db.grant(mine, "pw-a-secret")
    db.grant(mine, "pw-a-secret")  # re-issued after a restart: the same role
    db.grant(theirs, "pw-b-secret")
    with pytest.raises(RuntimeError):
        db.grant(AttemptRole(**{**mine.__dict__, "business_id": "tb-biz"}), "x")  # one role, one business
    their_store = Store(tenant_db.worker_url(fresh_database, theirs.role_name, "pw-b-secret"))
    their_store.run_started(RunRecord("ns.b.u.r1.a1", "rb", "tb-biz", "ns", "b", 1, 1, "full", None, None, NOW))
    their_store.save(SavedBatch("tb-biz", "ns.b.u.r1.a1", "rb", [receipt("theirs")], [], ["theirs"]))

    url = tenant_db.worker_url(fresh_database, mine.role_name, "pw-a-secret")
    store = Store(url)
    store.run_started(RunRecord("ns.a.u.r1.a1", "ra", "ta-biz", "ns", "a", 1, 1, "full", None, None, NOW))
    totals = store.save(SavedBatch("ta-biz", "ns.a.u.r1.a1", "ra", [receipt("m1")], [], ["m1", "m2"],
                                   failed={"m2": "boom"}))
    assert (totals.scanned, totals.saved) == (2, 1)
    store.run_finished(RunEnd("ns.a.u.r1.a1", "Finished", "Succeeded", None, False, window_done="ra",
                              cursor_key=("ta-biz", "a@b.c"), advance=lambda old: Cursor(5, NOW)))
    assert store.cursor("ta-biz", "a@b.c").history_id == 5
    assert store.existing_message_ids("tb-biz", ["theirs"]) == set()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM receipts").fetchone() == (1,)
        for table in ("sync_runs", "sync_checkpoints", "message_failures", "business_sync_state"):
            assert {row[0] for row in conn.execute(f"SELECT business_id FROM {table}")} <= {"ta-biz"}, table
        assert conn.execute("UPDATE sync_runs SET status = 'x' WHERE business_id = 'tb-biz'").rowcount == 0
        for statement in ("CREATE TABLE t (i int)", "SELECT * FROM attempt_credentials", "DROP TABLE receipts",
                          "ALTER TABLE receipts DISABLE ROW LEVEL SECURITY", "TRUNCATE receipts",
                          "DELETE FROM receipts",
                          "INSERT INTO receipts (business_id, gmail_message_id, subject, sender, received_at,"
                          " first_job_id) VALUES ('tb-biz', 'p', 's', 'x', now(), 'j')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    store.close()

    # Expired (even before it is dropped): no rows; revoked: no login.
    with psycopg.connect(fresh_database, autocommit=True) as admin:
        admin.execute("UPDATE attempt_credentials SET expires_at = now() - interval '1 second' WHERE role_name = %s",
                      (mine.role_name,))
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM receipts").fetchone() == (0,)
    assert sorted(r.job_id for r in db.roles("ns")) == sorted([mine.job_id, theirs.job_id]) and not db.roles("other")
    db.revoke(mine.role_name)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5).close()
    assert [r.job_id for r in db.roles()] == [theirs.job_id]
    their_store.close()
    db.revoke(theirs.role_name)


def test_the_operator_keeps_one_database_connection_and_makes_it_again_when_the_server_drops_it(fresh_database):
    db = TenantDatabase(fresh_database)
    db.migrate()
    db.grant(role_for(db, "ta-biz", "ns.a.u.r1.a1"), "pw")

    def backends() -> list[int]:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            return [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]

    first = backends()
    assert len(db.roles()) == 1 and len(db.roles("ns")) == 1
    assert backends() == first and len(first) == 1  # the same single session served every call
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (first[0],))  # as a server restart would
    assert [r.job_id for r in db.roles()] == ["ns.a.u.r1.a1"]  # answered on a fresh connection
    assert backends() != first


def test_an_attempts_redis_user_reaches_only_its_own_keys(redis_url):
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    job = "ns.acme.01234567.r1.a1"
    admin.set(c.job_key(job), "{}")
    admin.set(c.job_key("ns.other.01234567.r1.a1"), "{}")
    password = attempt_auth.password(MASTER, "redis", job)

    async def define() -> None:
        client = aioredis.from_url(redis_url)
        await redis_acl.define(client, job, password)
        await client.aclose()

    import asyncio

    asyncio.run(define())
    worker = redis.Redis.from_url(redis_acl.worker_url(redis_url, redis_acl.user_name(job), password),
                                  decode_responses=True)
    assert worker.get(c.job_key(job)) == "{}" and worker.ping()
    pipe = worker.pipeline(transaction=True)
    pipe.delete(c.heartbeat_key(job)).hset(c.heartbeat_key(job), mapping={"a": "b"}).expire(c.heartbeat_key(job), 9)
    pipe.xadd(c.EVENTS_STREAM, {"a": "b"}, maxlen=100, approximate=True)
    pipe.execute()
    quota = "return redis.call('HMGET', KEYS[1], 'tokens')"
    for denied in (lambda: worker.execute_command("FLUSHALL"), lambda: worker.execute_command("CONFIG", "GET", "*"),
                   lambda: worker.keys("*"), lambda: worker.get(c.job_key("ns.other.01234567.r1.a1")),
                   lambda: worker.xrange(c.EVENTS_STREAM), lambda: worker.eval(quota, 1, c.quota_key("a@b.c")),
                   lambda: worker.set(c.job_key(job), "x"), lambda: worker.execute_command("ACL", "WHOAMI"),
                   lambda: worker.delete(c.EVENTS_STREAM), lambda: worker.expire(c.EVENTS_STREAM, 1),
                   lambda: worker.get(c.heartbeat_key(job)), lambda: worker.delete(c.job_key(job))):
        with pytest.raises(redis.exceptions.NoPermissionError):
            denied()

    async def grant_then_remove(step: str) -> None:
        client = aioredis.from_url(redis_url)
        if step == "grant":
            await redis_acl.allow_mailbox(client, job, "a@b.c")
        else:
            await redis_acl.remove(client, redis_acl.user_name(job))
        await client.aclose()

    asyncio.run(grant_then_remove("grant"))
    assert worker.eval(quota, 1, c.quota_key("a@b.c")) == [None]
    asyncio.run(grant_then_remove("remove"))
    with pytest.raises(redis.exceptions.AuthenticationError):
        worker.ping()
    admin.delete(c.job_key(job), c.job_key("ns.other.01234567.r1.a1"), c.heartbeat_key(job), c.EVENTS_STREAM)


def payload(job_id: str = "ns.acme.01234567.r1.a1", **more) -> JobPayload:
    return JobPayload(job_id=job_id, namespace="ns", name="acme", uid="01234567", business_id="ta-biz", run_id=1,
                      attempt=1, mode="full", priority="default", max_messages=10, timeout_seconds=60, **more)


async def test_the_queue_reads_back_only_what_it_signed_and_only_signed_heartbeats(redis_url):
    client = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/14", decode_responses=True)
    await client.flushdb()
    queue = Queue(client)
    queue.payload_key = MASTER
    queue.heartbeat_verifies = lambda hb: attempt_auth.heartbeat_verifies(
        attempt_auth.heartbeat_key(MASTER, hb[c.HB_JOB_ID]), hb)
    await queue.enqueue(payload(), score=1)
    assert await queue.payload(payload().job_id) == payload()
    stored = json.loads(await client.get(c.job_key(payload().job_id)))
    await client.set(c.job_key(payload().job_id), json.dumps({**stored, "business_id": "tb-biz"}))
    assert await queue.payload(payload().job_id) is None  # rewritten: rebuilt from the spec by the caller
    job = payload().job_id
    forged = {c.HB_JOB_ID: job, c.HB_PHASE: c.PHASE_FAILED, c.HB_MAC: "0" * 64}
    await client.hset(c.heartbeat_key(job), mapping=forged)
    assert await queue.heartbeat(job) == {} and await queue.heartbeats([job]) == {job: {}}
    signed = attempt_auth.sign_heartbeat(attempt_auth.heartbeat_key(MASTER, job),
                                         {c.HB_JOB_ID: job, c.HB_PHASE: "Started"})
    await client.delete(c.heartbeat_key(job))
    await client.hset(c.heartbeat_key(job), mapping=signed)
    assert await queue.heartbeat(job) == signed
    await client.flushdb()
    await client.aclose()


def test_a_worker_refuses_a_rewritten_payload_and_says_so_signed(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    real = payload("ns.refuse.01234567.r1.a1")
    client.set(c.job_key(real.job_id), JobPayload(**{**real.__dict__, "business_id": "tb-biz"}).to_json())
    key = attempt_auth.heartbeat_key(MASTER, real.job_id)
    settings = Settings(job_id=real.job_id, redis_url=redis_url, database_url="postgresql://nobody@127.0.0.1:1/none",
                        gmail_endpoint="http://127.0.0.1:1", credentials_json="{}",
                        identity=attempt_identity.identity_of(real), heartbeat_key=key,
                        guards=Guards(final_heartbeat_seconds=2, termination_message_path=str(tmp_path / "term")))
    attempt = Attempt(settings, stop=threading.Event())
    assert attempt.run() == 1
    hb = client.hgetall(c.heartbeat_key(real.job_id))
    assert hb[c.HB_PHASE] == c.PHASE_FAILED and hb[c.HB_REASON] == c.REASON_PAYLOAD_REJECTED
    assert "business_id is 'tb-biz' in Redis but 'ta-biz' in the Job" in hb[c.HB_MESSAGE]
    assert attempt_auth.heartbeat_verifies(key, hb)
    assert json.loads((tmp_path / "term").read_text())["reason"] == c.REASON_PAYLOAD_REJECTED
    assert attempt.store is None  # refused before any database work
    client.delete(c.job_key(real.job_id), c.heartbeat_key(real.job_id))
