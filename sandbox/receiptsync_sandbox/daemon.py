"""The sandbox's "controller-manager + kubelet" process: Job, ReplicaSet and Deployment controllers
and the node agent, sharing one Pod informer, all talking to the API server over HTTP.

    python -m receiptsync_sandbox.daemon --server http://127.0.0.1:PORT --state-dir DIR

Prints ``READY`` once every cache has synced. SIGTERM stops all pods' processes, then exits.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .controllers.deployment_controller import DeploymentController
from .controllers.job_controller import JobController
from .controllers.replicaset_controller import ReplicaSetController
from .informer import Informer
from .kubeclient import DEPLOYMENTS, JOBS, PODS, REPLICASETS, KubeClient, wait_until_ready
from .nodeagent.agent import NodeAgent
from .nodeagent.runner import AgentConfig

log = logging.getLogger("receiptsync_sandbox.daemon")

# Each part identifies itself like the real component, so the API server's audit tells them apart.
CONTROLLER_TOKEN = "system:kube-controller-manager"
NODE_TOKEN = "system:node:sandbox"


class Daemon:
    def __init__(self, server: str, state_dir: Path, max_grace_seconds: float = 10.0):
        self.controller_client = KubeClient(server, CONTROLLER_TOKEN)
        self.node_client = KubeClient(server, NODE_TOKEN)
        self.pods = Informer(self.controller_client, PODS)
        self.jobs = Informer(self.controller_client, JOBS)
        self.replicasets = Informer(self.controller_client, REPLICASETS)
        self.deployments = Informer(self.controller_client, DEPLOYMENTS)
        self.agent = NodeAgent(self.node_client, AgentConfig(state_dir=state_dir, server=server,
                                                             max_grace_seconds=max_grace_seconds), pods=self.pods)
        self.controllers = [
            JobController(self.controller_client, self.jobs, self.pods),
            ReplicaSetController(self.controller_client, self.replicasets, self.pods),
            DeploymentController(self.controller_client, self.deployments, self.replicasets),
        ]
        self._tasks: list[asyncio.Task] = []

    async def start(self, timeout: float = 30.0) -> None:
        await wait_until_ready(self.controller_client, timeout)
        loop = asyncio.get_running_loop()
        for informer in (self.pods, self.jobs, self.replicasets, self.deployments):
            self._tasks.append(loop.create_task(informer.run()))
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in (self.pods, self.jobs, self.replicasets, self.deployments))), timeout)
        for controller in self.controllers:
            self._tasks.append(loop.create_task(controller.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.agent.shutdown()
        await self.controller_client.close()
        await self.node_client.close()


async def serve(server: str, state_dir: Path) -> None:
    daemon = Daemon(server, state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await daemon.start()
    print("READY", flush=True)
    await stop.wait()
    log.info("stopping: terminating all pods' processes")
    await daemon.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="sandbox API server URL")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.server, args.state_dir.resolve()))


if __name__ == "__main__":
    main()
