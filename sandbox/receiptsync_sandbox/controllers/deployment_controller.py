"""apps/v1 Deployment controller: the I/O shell around `deployments.decide`."""
from __future__ import annotations

import datetime as dt
import logging

from .. import events
from ..informer import Informer, Key, key_of
from ..kubeclient import DEPLOYMENTS, REPLICASETS, ApiError, KubeClient
from . import deployments
from .base import Controller, controller_owner_name, controller_owner_uid, is_terminating, status_patch

log = logging.getLogger(__name__)

COMPONENT = "deployment-controller"


class DeploymentController(Controller):
    name = "deployment-controller"

    def __init__(self, client: KubeClient, deployments_informer: Informer, replicasets_informer: Informer):
        super().__init__()
        self.client = client
        self.deployments = deployments_informer
        self.replicasets = replicasets_informer
        deployments_informer.add_handler(lambda kind, deployment: self.queue.add(key_of(deployment)))
        replicasets_informer.add_handler(self._on_replicaset)

    def _on_replicaset(self, kind: str, replicaset: dict) -> None:
        owner = controller_owner_name(replicaset, "Deployment")
        if owner:
            self.queue.add((replicaset["metadata"].get("namespace") or "", owner))

    async def reconcile(self, key: Key) -> float | None:
        deployment = self.deployments.get(key)
        if deployment is None or is_terminating(deployment):
            return None
        uid = deployment["metadata"]["uid"]
        owned = [rs for rs in self.replicasets.items() if controller_owner_uid(rs, "Deployment") == uid]
        decision = deployments.decide(deployment, owned, dt.datetime.now(dt.timezone.utc))
        if decision.create_replicaset:
            await self._create_replicaset(deployment, decision.create_replicaset)
        for name, replicas in decision.scale.items():
            self.replicasets.remember(await self.client.patch(REPLICASETS, key[0], name, {"spec": {"replicas": replicas}}))
            await events.record(self.client, deployment, "Normal", "ScalingReplicaSet",
                                f"Scaled replica set {name} to {replicas}", COMPONENT)
        for name in decision.delete_replicasets:
            await self.client.delete(REPLICASETS, key[0], name, propagation_policy="Background")
        if decision.revision:
            await self.client.patch(DEPLOYMENTS, key[0], key[1],
                                    {"metadata": {"annotations": {deployments.REVISION_ANNOTATION: decision.revision}}})
        await self._update_status(deployment, decision.status)
        return decision.requeue_after

    async def _create_replicaset(self, deployment: dict, replicaset: dict) -> None:
        namespace = deployment["metadata"].get("namespace")
        try:
            created = await self.client.create(REPLICASETS, namespace, replicaset)
        except ApiError as exc:
            if exc.status != 409:  # already there: our cache is behind; the next pass adopts it
                raise
            return
        # Make the next reconcile see it even before the watch delivers it.
        self.replicasets.cache[key_of(created)] = {"kind": "ReplicaSet", "apiVersion": "apps/v1", **created}
        replicas = replicaset["spec"]["replicas"]
        await events.record(self.client, deployment, "Normal", "ScalingReplicaSet",
                            f"Scaled up replica set {replicaset['metadata']['name']} to {replicas}", COMPONENT)

    async def _update_status(self, deployment: dict, status: dict) -> None:
        patch = status_patch(deployment.get("status") or {}, status)
        if not patch:
            return
        try:
            updated = await self.client.patch(DEPLOYMENTS, deployment["metadata"].get("namespace"),
                                              deployment["metadata"]["name"], {"status": patch}, subresource="status")
            self.deployments.remember(updated)
        except ApiError as exc:
            if exc.status != 404:
                raise
