"""The controller's collaborators, in-process: their pure decisions, the caches fed by list+watch,
liveness on the operator's clock, Events cut by bytes, the status writer (lossless, schema-honest)
against a real HTTP server, the kube client's retries, and the dead-letter set in a real Redis."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import yaml
from aiohttp import web
from kubernetes import client as k8s_client

from clocks import Ticker
from receiptsync_common import contract as c
from receiptsync_operator import dispatch, events, watchdog
from receiptsync_operator import status as st
from receiptsync_operator.attempts import Liveness
from receiptsync_operator.job_cache import JobCache, ObjectStore
from receiptsync_operator.kube import Kube, retry_wait
from receiptsync_operator.resource_cache import Resources
from receiptsync_operator.run_queue import Queue

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2025, 6, 15, 12, 0, 0, tzinfo=dt.timezone.utc)


# --- dispatch ---------------------------------------------------------------------------------------------
def test_a_retry_waits_for_its_time_and_is_not_in_line_meanwhile():
    entries = [dispatch.Entry("later", "high", 200.0), dispatch.Entry("now", "default", 50.0)]
    plan = dispatch.plan(entries, active=0, max_workers=4, now=100.0)
    assert plan.start == ("now",) and plan.waiting == {} and plan.total_waiting == 0
    assert dispatch.plan(entries, active=0, max_workers=4, now=200.0).start == ("later", "now")
    assert dispatch.next_due(entries, 100.0) == 200.0 and dispatch.next_due(entries, 300.0) is None


def test_slot_free_now():
    ok = dict(synced=True, dispatching=False, waiting_total=0, enqueued_since_dispatch=0, active=3, max_workers=4,
              backing_off=False)
    assert dispatch.slot_free_now(**ok)
    for change in ({"synced": False}, {"dispatching": True}, {"waiting_total": 1}, {"waiting_total": None},
                   {"enqueued_since_dispatch": 1}, {"active": 4}, {"backing_off": True}):
        assert not dispatch.slot_free_now(**{**ok, **change}), change


# --- the watchdog's choice ----------------------------------------------------------------------------
def test_needs_check():
    queued = {"phase": "Queued", "jobId": "j1"}
    assert not watchdog.needs_check(queued, job_known=False, queued_ids={"j1"})  # waiting: nothing to see
    assert watchdog.needs_check(queued, job_known=False, queued_ids=set())  # lost from the queue?
    assert watchdog.needs_check(queued, job_known=True, queued_ids={"j1"})  # its Job exists already
    assert watchdog.needs_check({**queued, "workerJob": "rs-x"}, job_known=False, queued_ids={"j1"})
    assert watchdog.needs_check({"phase": "Started", "jobId": "j1"}, job_known=False, queued_ids={"j1"})
    assert not watchdog.needs_check({"phase": "Finished", "jobId": "j1"}, job_known=True, queued_ids=set())
    background = {"phase": "Finished", "runId": 2, "runs": [{"runId": 1, "phase": "Started", "jobId": "j0"}]}
    assert watchdog.needs_check(background, job_known=False, queued_ids=set())
    assert watchdog.attempt_ids({**background, "phase": "Started", "jobId": "j1"}) == ["j1", "j0"]


# --- the Job cache: one list+watch stream, and our own creations -------------------------------------
def obj(name, rv, ns="ns"):
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv)}}


def test_a_job_created_after_the_list_snapshot_survives_the_list():
    store = ObjectStore()
    store.created(obj("new", 120))  # created at RV 120; a list taken at RV 100 does not know it yet
    store.replace([obj("old", 90)], "100")
    assert set(store.items) == {("ns", "new"), ("ns", "old")}


def test_a_job_the_list_knew_was_gone_does_not_come_back():
    store = ObjectStore()
    store.created(obj("short-lived", 80))
    store.replace([], "100")  # listed after it existed: its absence is the truth
    assert store.items == {}
    store.apply("ADDED", obj("x", 101))
    store.apply("DELETED", obj("x", 102))
    store.replace([], "102")
    assert store.items == {}


def test_job_cache_counts_slots_in_scope_and_remembers_on_its_own_clock():
    ticker = Ticker()
    cache = JobCache(monotonic=ticker)
    cache.jobs.apply("ADDED", {**obj("a", 1), "status": {}})
    cache.jobs.apply("ADDED", {**obj("b", 2, ns="other"), "status": {}})
    assert cache.slots_held() == 2 and cache.slots_held("ns") == 1
    assert cache.bad_for("ns", "a", "active") == 0.0
    cache.bad_for("ns", "a", "failed")
    ticker.advance(5)
    assert cache.bad_for("ns", "a", "failed") == 5.0
    assert cache.trouble_for("ns", "p", "Unschedulable") == 0.0
    ticker.advance(3)
    assert cache.trouble_for("ns", "p", "ErrImagePull") == 0.0  # another trouble starts again
    ticker.advance(2)
    # The kubelet alternates these two for one image it cannot pull: one trouble, still counting.
    assert cache.trouble_for("ns", "p", "ImagePullBackOff") == 2.0
    ticker.advance(10)
    assert cache.trouble_for("ns", "p", "ErrImagePull") == 12.0


# --- liveness on the operator's clock -------------------------------------------------------------------
def test_liveness_counts_only_heartbeats_new_to_us():
    ticker = Ticker()
    live = Liveness(monotonic=ticker)
    live.heard("j", "2025-01-01T00:00:00Z")
    ticker.advance(20)
    live.heard("j", "2025-01-01T00:00:00Z")  # the same hash read again is no news
    assert live.silent_for("j") == 20
    live.heard("j", "1999-01-01T00:00:00Z")  # a worker clock far behind: still news, received now
    assert live.silent_for("j") == 0
    live.started("j")
    ticker.advance(7)
    live.started("j")
    assert live.running_for("j") == 7
    live.forget("j")
    assert live.silent_for("j") == 0  # watching it afresh


# --- Events -------------------------------------------------------------------------------------------------
def test_event_messages_are_cut_by_utf8_bytes():
    hebrew = "קבלה " * 400  # 2 bytes per letter: about 3,600 bytes
    body = events.build({"name": "x", "namespace": "n"}, "Warning", "R", hebrew, NOW, "op")
    assert len(body["message"].encode("utf-8")) <= 1024 and body["message"].endswith("…")
    assert body["message"].encode("utf-8").decode("utf-8")  # never cut inside a character
    assert events.truncate_utf8("short") == "short"


# --- status keys against the CRD's schema ---------------------------------------------------------------
def _every_patch() -> list[dict]:
    spec = {"successfulRunsHistoryLimit": 3}
    queued = st.queued({}, run_id=1, job_id="ns.x.u.r1.a1", now=NOW, generation=1,
                       date_range=("2025-01-01", "2025-02-01"), run_now="a", trigger="spec", spec=spec,
                       schedule_time=NOW)
    status = st.apply({}, queued)
    hb = {c.HB_JOB_ID: "ns.x.u.r1.a1", c.HB_TIME: "2025-06-15T12:00:01Z", c.HB_SCANNED: "3", c.HB_SAVED: "1",
          c.HB_DATE_FROM: "2025-01-01", c.HB_DATE_TO: "2025-02-01"}
    started = st.from_heartbeat(status, spec, {**hb, c.HB_PHASE: "Started"}, NOW).patch
    status = st.apply(status, started)
    patches = [queued, started,
               st.from_heartbeat(status, spec, {**hb, c.HB_PHASE: "Finished"}, NOW).patch,
               st.from_heartbeat(status, spec, {**hb, c.HB_PHASE: "Failed"}, NOW).patch,
               st.failed(status, reason="X", message="m", now=NOW, spec=spec),
               st.invalid_spec(status, message="m", run_id=2, now=NOW, generation=2, run_now=None, trigger="spec",
                               spec=spec, schedule_time=NOW),
               st.retrying(status, reason="X", detail="d", next_attempt=2, max_attempts=4, job_id="j2", now=NOW,
                           spec=spec, retry_at=NOW),
               st.worker_starting(status, job_name="rs-x"), st.waiting(status, position=2, total=3, max_workers=1),
               st.pod_news(status, message="m"), st.job_create_failed(status, message="m"),
               {"observedGeneration": 3, "lastSkippedScheduleTime": "x", "nextScheduleTime": "y"}]
    overlapping = st.apply(status, {"runId": 2,
                                    "runs": status["runs"] + [{"runId": 2, "phase": "Queued", "jobId": "j"}]})
    entry = st.background_runs(overlapping)[0]
    patches += [st.end_background_run(overlapping, entry, phase="Finished", reason="R", message="m", now=NOW,
                                      spec=spec, counters={"messagesScanned": 1, "savedReceipts": 1}),
                st.background_heartbeat(overlapping, spec, {**hb, c.HB_PHASE: "Failed"}, NOW)[0],
                st.replaced(overlapping, new_run_id=3, now=NOW)[0]]
    return [p for p in patches if p]


def test_every_status_key_any_builder_writes_is_in_the_crd_schema():
    crd = yaml.safe_load((ROOT / "manifests" / "crds" / "receiptsyncs.yaml").read_text())
    allowed = st.status_keys(crd, c.VERSION)
    assert allowed and st.writer.kept("runs[].runId", allowed) and "progress.messagesScanned" in allowed
    written = set().union(*(st.writer.patch_keys(p) for p in _every_patch()))
    assert {k for k in written if not st.writer.kept(k, allowed)} == set()
    # the check itself can fail: a key the schema lacks is caught
    assert not st.writer.kept("retryAt", allowed) and not st.writer.kept("progress.skipped", allowed)
    assert st.writer.kept("runs[].anything", allowed)  # runs[] entries keep unknown fields
    assert {"phase", "runs[].workerJob", "conditions[].observedGeneration", "dateRange.from"} <= written


# --- the status writer against a real HTTP server ---------------------------------------------------------
class FlakyApi:
    """A real HTTP server standing in for the status endpoint: it can drop the connection."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.bodies: list[dict] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.mode == "drop":
            request.transport.close()  # a dropped connection: no HTTP answer at all
            raise ConnectionResetError
        if self.mode == "invalid":
            return web.json_response({"reason": "Invalid", "message": "no"}, status=422)
        self.bodies.append(body)
        return web.json_response({"metadata": {"resourceVersion": str(len(self.bodies))}, "status": body["status"]})


@pytest.fixture
async def flaky(unused_tcp_port):
    api = FlakyApi()
    app = web.Application()
    app.router.add_route("PATCH", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    cfg = k8s_client.Configuration()
    cfg.host = f"http://127.0.0.1:{unused_tcp_port}"
    kube = Kube(cfg)
    yield api, kube
    await kube.close()
    await runner.cleanup()


def resources_with(key=("ns", "x"), uid="u1") -> Resources:
    resources = Resources()
    resources.observe({"metadata": {"namespace": key[0], "name": key[1], "uid": uid, "resourceVersion": "1"}})
    return resources


async def test_a_dropped_connection_loses_no_transition(flaky):
    api, kube = flaky
    resources = resources_with()
    writer = st.StatusWriter(kube, resources)
    lock = resources.get(("ns", "x")).lock
    writer.defer(("ns", "x"), {"progress": {"messagesScanned": 5}}, delay=60, lock=lock)
    api.mode = "drop"
    assert not await writer.write(("ns", "x"), {"phase": "Finished", "reason": "Succeeded"})
    assert writer.pending(("ns", "x")) == {"progress": {"messagesScanned": 5}, "phase": "Finished",
                                           "reason": "Succeeded"}
    api.mode = "ok"
    assert await writer.write(("ns", "x"), {})
    assert api.bodies[-1]["status"] == {"progress": {"messagesScanned": 5}, "phase": "Finished", "reason": "Succeeded"}
    assert writer.pending(("ns", "x")) == {} and resources.get(("ns", "x")).status["phase"] == "Finished"


async def test_news_the_api_can_never_take_are_not_kept(flaky):
    api, kube = flaky
    writer = st.StatusWriter(kube, resources_with())
    api.mode = "invalid"
    assert not await writer.write(("ns", "x"), {"phase": "Finished"})
    assert writer.pending(("ns", "x")) == {}


async def test_a_replica_without_the_lease_writes_nothing_and_keeps_its_news(flaky):
    api, kube = flaky
    leading = [False]
    writer = st.StatusWriter(kube, resources_with(), may_write=lambda: leading[0])
    assert not await writer.write(("ns", "x"), {"phase": "Started"})
    assert api.bodies == [] and writer.pending(("ns", "x")) == {"phase": "Started"}
    kube.may_write = lambda: False  # the client's own fence refuses any write as well
    with pytest.raises(Exception, match="NotLeader"):
        await kube.merge_patch("/apis/x/status", {"status": {}})
    assert api.bodies == []


async def test_fields_the_crd_lacks_are_left_out_and_logged_once(flaky, caplog):
    api, kube = flaky
    writer = st.StatusWriter(kube, resources_with())
    writer.allowed_fields = frozenset({"phase"})
    await writer.write(("ns", "x"), {"phase": "Started", "observedRunNow": "a"})
    await writer.write(("ns", "x"), {"phase": "Finished", "observedRunNow": "b"})
    assert [b["status"] for b in api.bodies] == [{"phase": "Started"}, {"phase": "Finished"}]
    warnings = [r for r in caplog.records if "observedRunNow" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


async def test_news_the_status_already_carries_cost_no_api_call(flaky):
    api, kube = flaky
    writer = st.StatusWriter(kube, resources_with())
    assert await writer.write(("ns", "x"), {"phase": "Started", "progress": {"messagesScanned": 5}})
    assert await writer.write(("ns", "x"), {"progress": {"messagesScanned": 5}})  # nothing new
    assert await writer.write(("ns", "x"), {"phase": "Started", "message": None})  # removing what is absent
    assert await writer.write(("ns", "x"), {"progress": {"messagesScanned": 6}})
    assert [b["status"] for b in api.bodies] == [{"phase": "Started", "progress": {"messagesScanned": 5}},
                                                 {"progress": {"messagesScanned": 6}}]


async def test_news_for_a_deleted_object_never_land_on_its_namesake(flaky):
    api, kube = flaky
    resources = resources_with(uid="old")
    writer = st.StatusWriter(kube, resources)
    writer.defer(("ns", "x"), {"phase": "Started"}, delay=60, lock=asyncio.Lock())
    resources.observe({"metadata": {"namespace": "ns", "name": "x", "uid": "new", "resourceVersion": "9"}})
    assert writer.pending(("ns", "x")) == {}


# --- the kube client's retries ----------------------------------------------------------------------------
def test_retry_wait_honours_retry_after():
    assert retry_wait(0, "3", 0.5) == 3.0
    assert retry_wait(0, "999", 0.5) == 10.0  # capped by the budget
    assert retry_wait(2, None, 0.5) == pytest.approx(0.8)
    assert retry_wait(0, "soon", 0.5) == pytest.approx(0.2)


async def test_429_and_503_are_retried_other_errors_are_not(unused_tcp_port):
    answers = {"busy": [web.json_response({"reason": "TooManyRequests"}, status=429, headers={"Retry-After": "0"}),
                        web.json_response({"reason": "ServiceUnavailable"}, status=503)],
               "bad": [web.json_response({"reason": "Invalid", "message": "no"}, status=422)]}
    calls: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        calls.append(name)
        queue = answers[name]
        return queue.pop(0) if queue else web.json_response({"ok": name})

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    cfg = k8s_client.Configuration()
    cfg.host = f"http://127.0.0.1:{unused_tcp_port}"
    kube = Kube(cfg)
    try:
        assert await kube.get("/busy") == {"ok": "busy"} and calls.count("busy") == 3
        with pytest.raises(Exception, match="422"):
            await kube.get("/bad")
        assert calls.count("bad") == 1
    finally:
        await kube.close()
        await runner.cleanup()


# --- the dead-letter set, in a real Redis ------------------------------------------------------------------
async def test_set_aside_takes_an_entry_out_of_line_and_keeps_it(redis_url):
    client = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/14", decode_responses=True)
    await client.flushdb()
    queue = Queue(client)
    try:
        from receiptsync_common.jobspec import JobPayload

        payload = JobPayload(job_id="ns.x.u.r1.a1", namespace="ns", name="x", uid="u", business_id="b", run_id=1,
                             attempt=1, mode="full", priority="high", max_messages=1, timeout_seconds=60)
        await queue.enqueue(payload, score=1)
        await queue.set_aside("ns.x.u.r1.a1", 5.0)
        assert await queue.entries() == [] and await queue.dead_letters() == ["ns.x.u.r1.a1"]
        assert (await queue.payload("ns.x.u.r1.a1")).business_id == "b"  # kept for a look
    finally:
        await client.flushdb()
        await client.aclose()
