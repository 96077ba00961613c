"""P3's second baseline: the same worker runs as bare Kubernetes Jobs, as many at a time as the
operator's maxWorkers, with no operator. What any Job-per-run setup (a KEDA ScaledJob, a script
that creates Jobs) pays for Kubernetes; the operator's own cost is what its pass adds on top.

Each Job is the one the operator would create for that run (``worker_job.build`` with the chart's
settings and the worker template), less its ownerReference (no ReceiptSync exists here) and with
shared connection URLs from one Secret instead of per-attempt credentials (those are the operator's
work). Its payload goes to Redis under the operator's key first, as in the plain loop. An ideal
dispatcher creates the next Job the moment a watch shows one finished: no polling interval, no
queue reads, nothing on the API server but the Jobs themselves.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import redis

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload
from receiptsync_operator import config, job_state, worker_job

from .cluster import Cluster
from .kube import BenchError, Watch

JOBS_PATH = "/apis/batch/v1/namespaces/{ns}/jobs"
CONNECTION_SECRET = "bench-worker-connections"


@dataclasses.dataclass(frozen=True)
class BareRun:
    payload: JobPayload
    spec: dict[str, Any]  # the ReceiptSync spec it stands for (its Gmail Secret is in the namespace)


def job_for(run: BareRun, settings: config.Settings) -> dict[str, Any]:
    """The operator's Job for this run, standing alone."""
    owner = {"namespace": run.payload.namespace, "name": run.payload.name, "uid": run.payload.uid}
    job = worker_job.build(run.payload, owner, run.spec, settings)
    job["metadata"].pop("ownerReferences", None)  # no owner: the garbage collector would take it at once
    return job


def settings_for(chart_settings: dict[str, str]) -> config.Settings:
    """The chart's operator settings, workers on shared URLs from CONNECTION_SECRET."""
    env = {**chart_settings, contract.OPERATOR_ENV_WORKER_CREDENTIALS: contract.WORKER_CREDENTIALS_SHARED,
           contract.OPERATOR_ENV_WORKER_CONNECTION_SECRET: CONNECTION_SECRET}
    return config.load(env, argv=[])


def run_all(cluster: Cluster, namespace: str, runs: list[BareRun], parallelism: int, connections: dict[str, str],
            timeout: float) -> dict[str, Any]:
    """Every run as a Job, ``parallelism`` at a time; returns the wall time and how the Jobs ended."""
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": CONNECTION_SECRET},
        "stringData": {contract.CONNECTION_SECRET_REDIS_URL_KEY: connections["redis"],
                       contract.CONNECTION_SECRET_DATABASE_URL_KEY: connections["database"]}})
    settings = settings_for(cluster.chart_settings)
    client = redis.Redis.from_url(connections["redis"])
    assert cluster.kube is not None
    watch = Watch(cluster.kube, namespace, JOBS_PATH).start()
    time.sleep(0.5)  # the watch is open before the first Job
    pending, ended, seen = list(reversed(runs)), {}, 0
    began = time.monotonic()
    deadline = began + timeout
    try:
        while len(ended) < len(runs):
            while pending and len(ended) + parallelism > len(runs) - len(pending):
                run = pending.pop()
                client.set(contract.job_key(run.payload.job_id), run.payload.to_json())
                cluster.request("POST", JOBS_PATH.format(ns=namespace), job_for(run, settings))
            events = watch.snapshot(seen)
            seen += len(events)
            for _received, _kind, obj in events:
                outcome = job_state.state(obj)  # the operator's own reading of a Job
                if outcome != job_state.JOB_ACTIVE:
                    ended[obj["metadata"]["name"]] = outcome
            if time.monotonic() > deadline:
                raise BenchError(f"bare Jobs: {len(ended)}/{len(runs)} ended after {timeout:.0f}s")
            if not events:
                time.sleep(0.02)
        wall = time.monotonic() - began
    finally:
        watch.stop()
        client.close()
    succeeded = sum(1 for outcome in ended.values() if outcome == job_state.JOB_SUCCEEDED)
    return {"runs": len(runs), "parallelism": parallelism, "wall_seconds": wall,
            "finished": succeeded, "failed": len(ended) - succeeded}
