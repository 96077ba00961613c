"""Prometheus metrics and the /healthz endpoint, on RECEIPTSYNC_METRICS_PORT (standbys serve them too)."""
from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()

RUNS_BY_PHASE = Gauge("receiptsync_runs", "ReceiptSyncs by the phase of their current or last run",
                      ["phase"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("receiptsync_queue_depth", "Attempts waiting for a worker, by priority", ["priority"],
                    registry=REGISTRY)
ACTIVE_WORKERS = Gauge("receiptsync_active_workers", "Worker Jobs currently holding a slot", registry=REGISTRY)
MAX_WORKERS = Gauge("receiptsync_max_workers", "Configured worker slots", registry=REGISTRY)
TRANSITIONS = Counter("receiptsync_run_transitions_total", "Status transitions written, by phase and reason",
                      ["phase", "reason"], registry=REGISTRY)
STATUS_PATCH_SECONDS = Histogram("receiptsync_status_patch_seconds", "Latency of status PATCH calls",
                                 registry=REGISTRY, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
HEARTBEAT_TO_STATUS_SECONDS = Histogram(
    "receiptsync_heartbeat_to_status_seconds",
    "From a worker heartbeat's time to the status patch carrying it (freshness)",
    registry=REGISTRY, buckets=(.05, .1, .25, .5, 1, 2, 5, 10, 30),
)
JOB_CREATE_FAILURES = Counter("receiptsync_job_create_failures_total", "Worker Job creations refused",
                              ["reason"], registry=REGISTRY)
JOBS_CREATED = Counter("receiptsync_worker_jobs_created_total", "Worker Jobs created", registry=REGISTRY)
LEADER = Gauge("receiptsync_leader", "1 while this replica is the active one", registry=REGISTRY)
WATCHDOG_PASSES = Counter("receiptsync_watchdog_passes_total", "Watchdog passes over every resource, finished",
                          registry=REGISTRY)
DEAD_LETTERS = Counter("receiptsync_dead_letters_total", "Queue entries set aside after failing to dispatch",
                       registry=REGISTRY)
_leading = False


def set_leader(leading: bool) -> None:
    global _leading
    _leading = leading
    LEADER.set(1 if leading else 0)

_started = time.monotonic()


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(_: web.Request) -> web.Response:
    # Answering at all proves the event loop is alive; standbys are healthy too.
    return web.json_response({"status": "ok", "leader": _leading,
                              "uptimeSeconds": round(time.monotonic() - _started, 1)})


async def serve(port: int, host: str | None = None) -> web.AppRunner:
    """Serve on ``port``; every address family and interface by default (``None``: IPv4 and IPv6, so
    an IPv6-only cluster's probes reach it too)."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
