"""One active replica: a coordination.k8s.io/v1 Lease, as client-go's leader election does it.

Why a Lease and not kopf peering: the operator's work is not only kopf handlers (the dispatcher and
the heartbeat consumer are process-wide tasks that kopf peering would not pause), a Lease needs no
extra CRD, and failover takes one lease duration. Standbys run nothing but /healthz and /metrics.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from .kube import ApiError, Kube

logger = logging.getLogger(__name__)


def _micro(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_free(spec: dict[str, Any], *, me: str, unchanged_for: float) -> bool:
    """Whether ``me`` may take the lease: it is ours, nobody holds it, or its record has not changed
    for a whole lease duration as measured on OUR clock since we observed it (client-go's rule; the
    holder's renewTime is another node's clock and never decides)."""
    holder = spec.get("holderIdentity") or ""
    if holder in ("", me):
        return True
    return unchanged_for >= float(spec.get("leaseDurationSeconds") or 15)


class LeaderElector:
    def __init__(self, kube: Kube, *, namespace: str, name: str, identity: str, duration: float) -> None:
        self.kube = kube
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = max(1.0, duration)
        self.retry_period = min(2.0, self.duration / 5)
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = time.monotonic()
        self._last_renew = 0.0
        self.renew_deadline = self.duration * 2 / 3
        # Renewed at a third of the duration (5 s of 15), not every retry period as client-go does: a
        # Lease write every 2 s was most of an idle operator's API writes. A failed renewal is retried
        # every retry period, so two or three more tries fit before the renew deadline.
        self.renew_every = self.duration / 3

    def _lease_body(self, current: dict[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
        spec = dict((current or {}).get("spec") or {})
        transitions = int(spec.get("leaseTransitions") or 0)
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = _micro(now)
            if spec.get("holderIdentity"):
                transitions += 1
        spec.update({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(round(self.duration)),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        })
        metadata = {"name": self.name, "namespace": self.namespace}
        if current:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def try_acquire(self) -> bool:
        """Take or renew the lease. A success counts from when this attempt began, not when its
        answer came: a process frozen (SIGSTOP, a long GC pause) with the PUT in flight must not
        wake up believing it renewed just now, while another replica has taken over meanwhile."""
        began = time.monotonic()
        now = dt.datetime.now(dt.timezone.utc)
        try:
            current = await self.kube.get(self._path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            try:
                await self.kube.request("POST", self._path.rsplit("/", 1)[0], body=self._lease_body(None, now),
                                        fenced=False)
            except ApiError as create_exc:
                if create_exc.status == 409:
                    return False
                raise
            self._last_renew = began
            return True
        spec = current.get("spec") or {}
        record = (current.get("metadata") or {}).get("resourceVersion"), spec.get("holderIdentity"), \
            spec.get("renewTime"), spec.get("acquireTime")
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        if not lease_free(spec, me=self.identity, unchanged_for=time.monotonic() - self._observed_at):
            return False
        try:
            await self.kube.request("PUT", self._path, body=self._lease_body(current, now), fenced=False)
        except ApiError as exc:
            if exc.status == 409:  # someone else wrote it first
                return False
            raise
        self._last_renew = began
        return True

    def is_leading(self) -> bool:
        """Still ours for sure: renewed within the renew deadline (monotonic time, which also runs
        while the process is stopped, so a replica resumed after SIGSTOP stops writing at once)."""
        return self._last_renew > 0 and time.monotonic() - self._last_renew < self.renew_deadline

    async def acquire(self) -> None:
        logger.info("waiting to lead", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity})
        while True:
            try:
                if await self.try_acquire():
                    logger.info("leading", extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity})
                    return
            except Exception as exc:
                logger.warning("lease check failed: %s", exc)
            await asyncio.sleep(self.retry_period)

    async def hold(self, lost: asyncio.Event) -> None:
        """Renew until we cannot; set ``lost`` when the lease may already be someone else's."""
        renew_deadline = self.renew_deadline
        pause = self.renew_every
        while not lost.is_set():
            await asyncio.sleep(pause)
            pause = self.retry_period  # until a renewal succeeds again
            try:
                if await self.try_acquire():
                    pause = self.renew_every
                    continue
                logger.error("lease taken over by another replica")
                self._last_renew = 0.0
                lost.set()
            except Exception as exc:
                logger.warning("lease renewal failed: %s", exc)
                if time.monotonic() - self._last_renew > renew_deadline:
                    logger.error("lease not renewed within %.0fs; stepping down", renew_deadline)
                    self._last_renew = 0.0
                    lost.set()

    async def release(self) -> None:
        """Hand the lease over at once on a clean shutdown (standbys need not wait it out)."""
        try:
            current = await self.kube.get(self._path)
            spec = dict(current.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "resourceVersion": current["metadata"]["resourceVersion"]},
                    "spec": spec}
            await self.kube.request("PUT", self._path, body=body, fenced=False)
        except Exception as exc:
            logger.warning("could not release the lease: %s", exc)
