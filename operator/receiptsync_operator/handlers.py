"""kopf registrations, thin: each hands over to the controller (memo.controller).

kopf bookkeeping and the GitOps promise (the operator writes only status and its finalizer):
kopf keeps a diff-base of the last handled spec (only because an on.delete handler exists) and,
while a deletion handler retries, its progress. Both go to annotations under our own prefix
(``receipts.prosaas.pro/last-handled-configuration``), never to labels, spec or annotations users
own. Annotations rather than status because the CRD's status schema is structural (unknown status
fields would be pruned), and a GitOps tool ignores annotations it did not set (Argo CD's three-way
diff, Flux's server-side apply field ownership), so this never shows up as drift.
"""
from __future__ import annotations

import logging
from typing import Any

import kopf

from receiptsync_common import contract

from . import jobs
from .controller import Controller
from .events import Events
from .queue import Queue

WORKER_LABELS = {contract.LABEL_MANAGED_BY: contract.MANAGED_BY_VALUE, contract.LABEL_COMPONENT: contract.COMPONENT_WORKER}
RESYNC_EVERY_TICKS = 10


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = contract.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=contract.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=contract.GROUP, key="last-handled-configuration")
    # Our own Events describe each transition; kopf posts only its warnings and errors.
    settings.posting.level = logging.WARNING
    # Watch only our worker Jobs, filtered by the API server, never every Job in the cluster.
    settings.watching.label_selectors["batch", "jobs"] = jobs.worker_selector()
    settings.watching.server_timeout = 300


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings)
    queue = Queue.from_url(memo.config.redis_url)
    memo.controller = Controller(memo.config, memo.kube, queue, Events(memo.kube, memo.config.identity))
    await memo.controller.start()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = getattr(memo, "controller", None)
    if controller is not None:
        await controller.stop()
        await controller.queue.close()
    # After a signal, kopf still waits on our stop flag and would count that waiter as a hung task
    # (5 s of shutdown delay); setting it here lets the shutdown finish at once.
    stop_flag = getattr(memo, "stop_flag", None)
    if stop_flag is not None:
        stop_flag.set()


@kopf.on.event(contract.GROUP, contract.VERSION, contract.PLURAL)
async def receiptsync_changed(type: str | None, body: kopf.Body, namespace: str, name: str,
                              memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        memo.controller.forget((namespace, name))
        return
    await memo.controller.observe(body)


@kopf.daemon(contract.GROUP, contract.VERSION, contract.PLURAL, cancellation_timeout=10.0)
async def watchdog(stopped: kopf.DaemonStopped, namespace: str, name: str, memo: kopf.Memo,
                   logger: logging.Logger, **_: Any) -> None:
    """Per resource: lost/late attempts (heartbeat timeout, spec.timeout, failed Job) and a periodic
    resync for runs that could not start (e.g. while Redis was away)."""
    ticks = 0
    while not stopped:
        try:
            await memo.controller.tick((namespace, name), resync=ticks % RESYNC_EVERY_TICKS == RESYNC_EVERY_TICKS - 1)
        except Exception as exc:  # the next tick tries again; a daemon must not die of a hiccup
            logger.warning("watchdog check failed: %s", exc)
        ticks += 1
        await stopped.wait(memo.config.check_interval)


@kopf.on.delete(contract.GROUP, contract.VERSION, contract.PLURAL)
async def receiptsync_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.controller.cleanup(body)


@kopf.on.event("batch", "v1", "jobs", labels=WORKER_LABELS)
async def worker_job_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.on_job_event(type, body)
