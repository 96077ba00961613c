"""The node agent: the sandbox's one "kubelet". It registers its Node and renews the Node's Lease,
watches the Pods the scheduler bound to it (fieldSelector spec.nodeName), keeps one PodRunner per
pod uid, and serves container logs to the API server (`kubectl logs`)."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil

from ..informer import Informer
from ..kubeclient import LEASES, NODES, PODS, STRATEGIC_MERGE_PATCH, ApiError, KubeClient
from . import node as nodelib
from .runner import AgentConfig, PodRunner, delete_pod_object, grace_seconds

log = logging.getLogger(__name__)

TERMINAL_PHASES = ("Succeeded", "Failed")


class NodeAgent:
    def __init__(self, client: KubeClient, config: AgentConfig, kubelet_port: int = 0):
        self.client = client
        self.config = config
        self.kubelet_port = kubelet_port
        self.informer = Informer(client, PODS, field_selector=f"spec.nodeName={config.node_name}")
        self.informer.add_handler(self._on_pod_event)
        # Finished runners stay until their pod is gone, so a stale event can't start a pod twice.
        self.runners: dict[str, PodRunner] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ready_since = dt.datetime.now(dt.timezone.utc)

    async def register(self) -> None:
        """Create (or take over) our Node, report it Ready, and hold its Lease."""
        name = self.config.node_name
        try:
            await self.client.create(NODES, None, nodelib.node_object(name))
        except ApiError as exc:
            if exc.status != 409:
                raise
        await self._report_status()
        await self._renew_lease()

    async def run(self) -> None:
        self._background(self._heartbeats())
        await self.informer.run()

    async def _heartbeats(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(nodelib.RENEW_SECONDS)
            ticks += 1
            try:
                await self._renew_lease()
                if ticks * nodelib.RENEW_SECONDS % nodelib.STATUS_SECONDS == 0:
                    await self._report_status()
            except Exception as exc:  # noqa: BLE001 - the API server may be restarting; try next tick
                log.warning("node heartbeat failed: %s", exc)

    async def _report_status(self) -> None:
        status = nodelib.node_status(self.config.node_name, self.kubelet_port, dt.datetime.now(dt.timezone.utc),
                                     self._ready_since)
        await self.client.patch(NODES, None, self.config.node_name, {"status": status}, subresource="status",
                                content_type=STRATEGIC_MERGE_PATCH)

    async def _renew_lease(self) -> None:
        lease = nodelib.lease_object(self.config.node_name, dt.datetime.now(dt.timezone.utc))
        try:
            await self.client.patch(LEASES, nodelib.LEASE_NAMESPACE, self.config.node_name, {"spec": lease["spec"]})
        except ApiError as exc:
            if exc.status != 404:
                raise
            await self.client.create(LEASES, nodelib.LEASE_NAMESPACE, lease)

    def _on_pod_event(self, kind: str, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        runner = self.runners.get(uid)
        grace = grace_seconds(pod, self.config.max_grace_seconds)
        if kind == "DELETED":
            if runner:
                runner.request_stop(grace, delete_object=False)
                self.runners.pop(uid, None)
                if runner.task and runner.task.done():
                    shutil.rmtree(runner.pod_dir, ignore_errors=True)
            return
        if meta.get("deletionTimestamp"):
            if runner and runner.task and not runner.task.done():
                runner.request_stop(grace, delete_object=True)
            else:
                self._background(delete_pod_object(self.client, pod))
            return
        if runner is None and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            self._start(pod)

    def runner_for(self, namespace: str, name: str) -> PodRunner | None:
        for runner in self.runners.values():
            if runner.namespace == namespace and runner.name == name:
                return runner
        return None

    def _start(self, pod: dict) -> None:
        runner = PodRunner(self.client, self.config, pod)
        self.runners[runner.uid] = runner
        runner.task = self._background(runner.run())
        log.info("starting pod %s/%s", runner.namespace, runner.name)

    def _background(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self, grace: float = 3.0) -> None:
        """Stop every pod's processes (the sandbox is going down; pod objects are left as they are)."""
        for runner in self.runners.values():
            runner.request_stop(grace, delete_object=False)
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            if task.get_coro().__name__ == "_heartbeats":
                task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace + 5)
