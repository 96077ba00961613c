"""The node agent process: `python -m receiptsync_sandbox.nodeagent --kubeconfig NODE.yaml
--state-dir DIR --pki DIR --port P`. Prints READY once its Node is registered and Ready; SIGTERM
stops every pod's processes, then exits."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from ..kubeclient import KubeClient, wait_until_ready
from .agent import NodeAgent
from .logserver import app, serve
from .runner import AgentConfig

log = logging.getLogger("receiptsync_sandbox.nodeagent")


async def run(kubeconfig: Path, state_dir: Path, pki: Path, port: int, node_name: str) -> None:
    client = KubeClient.from_kubeconfig(kubeconfig)
    agent = NodeAgent(client, AgentConfig(state_dir=state_dir, server=client.server, node_name=node_name), port)

    def still_running(namespace: str, pod: str, container: str) -> bool:
        runner = agent.runner_for(namespace, pod)
        return bool(runner and any(c.name == container and c.state != "terminated" for c in runner.containers))

    logs = await serve(app(agent.config.log_path, still_running), port, pki / "kubelet.crt", pki / "kubelet.key",
                       pki / "ca.crt")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await wait_until_ready(client, 60)
    await agent.register()
    watching = loop.create_task(agent.run())
    await asyncio.wait_for(agent.informer.synced.wait(), 30)
    print("READY", flush=True)
    await stop.wait()
    log.info("stopping: terminating all pods' processes")
    watching.cancel()
    await agent.shutdown()
    await logs.cleanup()
    await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True, type=Path, help="the node's kubeconfig (client certificate)")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--pki", required=True, type=Path, help="folder with ca.crt, kubelet.crt and kubelet.key")
    parser.add_argument("--port", required=True, type=int, help="the kubelet endpoint (logs)")
    parser.add_argument("--node-name", default="sandbox")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args.kubeconfig, args.state_dir.resolve(), args.pki, args.port, args.node_name))


if __name__ == "__main__":
    main()
