"""batch/v1 Job controller: the I/O shell around `jobstatus.decide`."""
from __future__ import annotations

import datetime as dt
import logging

from .. import events
from ..informer import Informer, Key, key_of
from ..kubeclient import JOBS, PODS, ApiError, KubeClient
from . import jobstatus
from .base import Controller, Expectations, controller_owner_name, controller_owner_uid, is_terminating, status_patch

log = logging.getLogger(__name__)

COMPONENT = "job-controller"


class JobController(Controller):
    name = "job-controller"

    def __init__(self, client: KubeClient, jobs: Informer, pods: Informer):
        super().__init__()
        self.client = client
        self.jobs = jobs
        self.pods = pods
        self._expected = Expectations()
        self._deleted: set[str] = set()  # pod uids we deleted ourselves: not "lost"
        self._seen_active: dict[str, dict[str, str]] = {}  # job uid -> pod uid -> pod name
        self._lost: dict[str, int] = {}
        jobs.add_handler(self._on_job)
        pods.add_handler(self._on_pod)

    def _on_job(self, kind: str, job: dict) -> None:
        if kind == "DELETED":
            self._forget(job["metadata"].get("uid", ""))
        else:
            self.queue.add(key_of(job))

    def _on_pod(self, kind: str, pod: dict) -> None:
        owner = controller_owner_name(pod, "Job")
        if owner:
            self.queue.add(((pod["metadata"].get("namespace") or ""), owner))

    def owned_pods(self, job: dict) -> list[dict]:
        uid = job["metadata"]["uid"]
        return [pod for pod in self.pods.items() if controller_owner_uid(pod, "Job") == uid]

    async def reconcile(self, key: Key) -> float | None:
        job = self.jobs.get(key)
        if job is None or is_terminating(job):
            return None
        uid = job["metadata"]["uid"]
        pods = self.owned_pods(job)
        decision = jobstatus.decide(job, pods, dt.datetime.now(dt.timezone.utc),
                                    unobserved_creations=self._expected.unobserved(uid, {p["metadata"]["name"] for p in pods}),
                                    lost=self._count_lost(uid, pods))
        for pod_name in decision.delete:
            await self._delete_pod(job, pod_name, pods)
        for _ in range(decision.create):
            await self._create_pod(job)
        await self._update_status(job, decision.status)
        for event_type, reason, message in decision.events:
            await events.record(self.client, job, event_type, reason, message, COMPONENT)
        if decision.delete_job:
            log.info("job %s/%s: ttlSecondsAfterFinished passed; deleting", *key)
            await self.client.delete(JOBS, key[0], key[1], propagation_policy="Background", uid=uid)
            self._forget(uid)
            return None
        return decision.requeue_after

    def _count_lost(self, uid: str, pods: list[dict]) -> int:
        """Active pods that disappeared without reaching Succeeded/Failed count as failures."""
        current = {pod["metadata"]["uid"]: pod for pod in pods}
        seen = self._seen_active.setdefault(uid, {})
        for pod_uid in list(seen):
            if pod_uid not in current:
                del seen[pod_uid]
                if pod_uid not in self._deleted:
                    self._lost[uid] = self._lost.get(uid, 0) + 1
                self._deleted.discard(pod_uid)
        for pod_uid, pod in current.items():
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                seen.pop(pod_uid, None)
            else:
                seen[pod_uid] = pod["metadata"]["name"]
        return self._lost.get(uid, 0)

    def _forget(self, uid: str) -> None:
        self._expected.forget(uid)
        for table in (self._seen_active, self._lost):
            table.pop(uid, None)

    async def _create_pod(self, job: dict) -> None:
        name = jobstatus.pod_name(job["metadata"]["name"])
        body = jobstatus.pod_for_job(job, name)
        await self.client.create(PODS, job["metadata"].get("namespace"), body)
        self._expected.created(job["metadata"]["uid"], name)
        await events.record(self.client, job, "Normal", "SuccessfulCreate", f"Created pod: {name}", COMPONENT)

    async def _delete_pod(self, job: dict, name: str, pods: list[dict]) -> None:
        pod = next(p for p in pods if p["metadata"]["name"] == name)
        self._deleted.add(pod["metadata"]["uid"])
        await self.client.delete(PODS, pod["metadata"].get("namespace"), name, uid=pod["metadata"]["uid"])
        await events.record(self.client, job, "Normal", "SuccessfulDelete", f"Deleted pod: {name}", COMPONENT)

    async def _update_status(self, job: dict, status: dict) -> None:
        patch = status_patch(job.get("status") or {}, status)
        if not patch:
            return
        try:
            updated = await self.client.patch(JOBS, job["metadata"].get("namespace"), job["metadata"]["name"],
                                              {"status": patch}, subresource="status")
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        # Keep the cache ahead of the watch so the next reconcile doesn't act on stale status.
        if isinstance(updated, dict):
            self.jobs.remember(updated)
