"""apps/v1 ReplicaSet controller: the I/O shell around `replicasets.decide`."""
from __future__ import annotations

import datetime as dt
import logging

from .. import events
from ..informer import Informer, Key, key_of
from ..kubeclient import PODS, REPLICASETS, ApiError, KubeClient
from . import replicasets
from .base import Controller, Expectations, controller_owner_name, controller_owner_uid, is_terminating, status_patch

log = logging.getLogger(__name__)

COMPONENT = "replicaset-controller"


class ReplicaSetController(Controller):
    name = "replicaset-controller"

    def __init__(self, client: KubeClient, replicasets_informer: Informer, pods: Informer):
        super().__init__()
        self.client = client
        self.replicasets = replicasets_informer
        self.pods = pods
        self._expected = Expectations()
        replicasets_informer.add_handler(lambda kind, rs: self.queue.add(key_of(rs)))
        pods.add_handler(self._on_pod)

    def _on_pod(self, kind: str, pod: dict) -> None:
        owner = controller_owner_name(pod, "ReplicaSet")
        if owner:
            self.queue.add((pod["metadata"].get("namespace") or "", owner))

    async def reconcile(self, key: Key) -> float | None:
        replicaset = self.replicasets.get(key)
        if replicaset is None or is_terminating(replicaset):
            return None
        uid = replicaset["metadata"]["uid"]
        pods = [pod for pod in self.pods.items() if controller_owner_uid(pod, "ReplicaSet") == uid]
        now = dt.datetime.now(dt.timezone.utc)
        unobserved = self._expected.unobserved(uid, {pod["metadata"]["name"] for pod in pods})
        decision = replicasets.decide(replicaset, pods, now, unobserved_creations=unobserved)
        for name in decision.delete:
            await self.client.delete(PODS, key[0], name)
            await events.record(self.client, replicaset, "Normal", "SuccessfulDelete", f"Deleted pod: {name}", COMPONENT)
        for _ in range(decision.create):
            name = replicasets.pod_name(key[1])
            await self.client.create(PODS, key[0], replicasets.pod_for_replicaset(replicaset, name))
            self._expected.created(uid, name)
            await events.record(self.client, replicaset, "Normal", "SuccessfulCreate", f"Created pod: {name}", COMPONENT)
        patch = status_patch(replicaset.get("status") or {}, decision.status)
        if patch:
            try:
                updated = await self.client.patch(REPLICASETS, key[0], key[1], {"status": patch}, subresource="status")
                self.replicasets.remember(updated)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        min_ready = (replicaset.get("spec") or {}).get("minReadySeconds", 0)
        waiting_for_availability = decision.status["readyReplicas"] > decision.status["availableReplicas"]
        return float(min_ready) if min_ready and waiting_for_availability else None
