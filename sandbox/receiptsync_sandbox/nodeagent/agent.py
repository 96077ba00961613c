"""The node agent: watches all Pods and keeps one PodRunner per pod uid, like a kubelet on the
sandbox's single node."""
from __future__ import annotations

import asyncio
import logging
import shutil

from ..informer import Informer
from ..kubeclient import PODS, KubeClient
from .runner import AgentConfig, PodRunner, delete_pod_object, grace_seconds

log = logging.getLogger(__name__)

TERMINAL_PHASES = ("Succeeded", "Failed")


class NodeAgent:
    def __init__(self, client: KubeClient, config: AgentConfig, pods: Informer | None = None):
        self.client = client
        self.config = config
        self.informer = pods or Informer(client, PODS)
        self._owns_informer = pods is None
        self.informer.add_handler(self._on_pod_event)
        # Finished runners stay until their pod is gone, so a stale event can't start a pod twice.
        self.runners: dict[str, PodRunner] = {}
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        if self._owns_informer:
            await self.informer.run()

    def _on_pod_event(self, kind: str, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        runner = self.runners.get(uid)
        grace = grace_seconds(pod, self.config.max_grace_seconds)
        if kind == "DELETED":
            if runner:
                runner.request_stop(grace, delete_object=False)
                self.runners.pop(uid, None)
                if runner.task.done():
                    shutil.rmtree(runner.pod_dir, ignore_errors=True)
            return
        if meta.get("deletionTimestamp"):
            if runner and not runner.task.done():
                runner.request_stop(grace, delete_object=True)
            elif not (meta.get("finalizers")):
                self._background(delete_pod_object(self.client, pod))
            return
        if runner is None and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            self._start(pod)

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
        if pending:
            await asyncio.wait(pending, timeout=grace + 5)
