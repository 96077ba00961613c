"""``receiptsync-operator``: JSON logs, /metrics and /healthz, wait for the Lease, then run kopf
until stopped or the Lease is lost (then exit non-zero so the replica restarts as a standby)."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

import kopf

from . import handlers  # noqa: F401  (registers the kopf handlers)
from . import metrics
from .config import ConfigError, Settings, load, redact_url
from .kube import Kube
from .leader import LeaderElector

logger = logging.getLogger("receiptsync_operator")


async def serve_metrics(port: int):
    """The /metrics and /healthz endpoint, or None when the port is taken: one clear ERROR, and the
    operator works on without it (two replicas on one host, as in the sandbox, would clash)."""
    try:
        return await metrics.serve(port)
    except OSError as exc:
        logger.error("metrics port %s is not available (%s); running without /metrics and /healthz", port, exc,
                     extra={"port": port})
        return None


async def run(config: Settings) -> int:
    runner = await serve_metrics(config.metrics_port)
    kube = Kube()
    elector = LeaderElector(kube, namespace=config.lease_namespace, name=config.lease_name,
                            identity=config.identity, duration=config.lease_duration)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("starting", extra={
        "identity": config.identity, "namespace": config.namespace or "*", "max_workers": config.max_workers,
        "redis": redact_url(config.redis_url), "worker_image": config.worker_image,
        "heartbeat_timeout": config.heartbeat_timeout,
    })
    try:
        acquiring = asyncio.create_task(elector.acquire())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            acquiring.cancel()
            return 0
        metrics.set_leader(True)
        kube.may_write = elector.is_leading  # fenced: no write leaves this process once the lease may be gone
        lost = asyncio.Event()
        holding = asyncio.create_task(elector.hold(lost))
        stop_flag = asyncio.Event()
        operator = asyncio.create_task(kopf.operator(
            standalone=True,  # one active replica is the Lease's job, not kopf peering's
            clusterwide=not config.namespace,
            namespaces=[config.namespace] if config.namespace else [],
            memo=kopf.Memo(config=config, kube=kube, stop_flag=stop_flag, leading=elector.is_leading),
            stop_flag=stop_flag,
        ))
        losing = asyncio.create_task(lost.wait())
        await asyncio.wait({operator, stopping, losing}, return_when=asyncio.FIRST_COMPLETED)
        stop_flag.set()
        try:
            await asyncio.wait_for(operator, timeout=30)
        except Exception as exc:
            logger.warning("operator stopped with %r", exc)
        holding.cancel()
        metrics.set_leader(False)
        if lost.is_set():
            logger.error("lost the lease; exiting so that this replica restarts as a standby")
            return 1
        await elector.release()
        return 0
    finally:
        await kube.close()
        if runner is not None:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    try:
        config = load(argv=sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"receiptsync-operator: cannot start: {exc}", file=sys.stderr)
        sys.exit(2)
    kopf.configure(log_format=kopf.LogFormat.JSON, verbose=config.log_level.upper() == "DEBUG",
                   quiet=config.log_level.upper() in ("WARNING", "ERROR"))
    if config.log_level.upper() != "DEBUG":
        # kopf logs every on-event handler call at INFO; our own lines already tell each transition.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    sys.exit(asyncio.run(run(config)))


if __name__ == "__main__":
    main()
