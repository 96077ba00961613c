"""kopf registrations, thin: each hands over to the controller (memo.controller).

The GitOps promise: the operator writes only a ReceiptSync's status. It puts no finalizer on ReceiptSyncs: a
deletion is cleaned up when the watch sees it (a DELETED event, or a deletionTimestamp while other
finalizers hold the object: controller.deleted), best effort, with garbage collection of the
owned worker Jobs and the dispatcher's dropping of orphaned queue entries behind it (cleanup.py).
The one metadata write left is the release of the finalizer older operators added, when such a
resource is deleted (finalizers.py). kopf has no resource-changing, deletion or daemon handler
here: it then adds no finalizer of its own and keeps no diff-base or progress annotations. Should
kopf ever store its bookkeeping, it goes to annotations under our own prefix, never to labels, spec
or annotations users own; a GitOps tool ignores annotations it did not set (Argo CD's three-way
diff, Flux's server-side apply field ownership), so that never shows up as drift.

The watchdog is one controller loop (watchdog.py); our worker Jobs and Pods are watched by the
controller's own list+watch (kube_watch.py), which tells when the first list is complete (the
dispatcher counts slots only then).
"""
from __future__ import annotations

import logging
from typing import Any

import kopf

from receiptsync_common import contract

from .controller import Controller
from .events import Events
from .run_queue import Queue

KOPF_FINALIZER = f"{contract.GROUP}/kopf-unused"


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    # Our (legacy) finalizer, contract.FINALIZER, is the controller's to release. kopf removes "its"
    # finalizer from any object when none of its handlers needs one, so it is given another name,
    # which it never adds.
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=contract.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=contract.GROUP, key="last-handled-configuration")
    # Our own Events describe each transition; kopf posts only its warnings and errors.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings)
    queue = Queue.from_url(memo.config.redis_url)
    memo.controller = Controller(memo.config, memo.kube, queue,
                                 Events(memo.kube, memo.config.identity, may_write=memo.leading),
                                 may_write=memo.leading)
    await memo.controller.start()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = getattr(memo, "controller", None)
    if controller is not None:
        await controller.stop(leading=memo.leading())
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
        await memo.controller.deleted(body)  # cleans up (best effort) and forgets it
        return
    await memo.controller.observe(body)  # a deletionTimestamp is a deletion too
