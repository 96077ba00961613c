"""The lease fence against a frozen process (found by test_e2e_cluster's SIGSTOP test): a renewal
counts from when it was sent, so a replica frozen with its PUT in flight wakes up fenced."""
from __future__ import annotations

import asyncio
from typing import Any

from receiptsync_operator.kube import ApiError
from receiptsync_operator.leader import LeaderElector


class SlowLeaseApi:
    """A Lease API whose answers take ``delay`` seconds (a freeze or a slow network in between)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lease: dict[str, Any] | None = None

    async def get(self, path: str) -> dict[str, Any]:
        if self.lease is None:
            raise ApiError(404, {"reason": "NotFound"}, "GET", path)
        return self.lease

    async def request(self, method: str, path: str, *, body: Any = None, fenced: bool = True) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
        return self.lease


async def test_a_renewal_answered_after_the_renew_deadline_does_not_make_a_leader():
    api = SlowLeaseApi(delay=0.0)
    elector = LeaderElector(api, namespace="ns", name="lease", identity="a", duration=1.0)  # renew deadline 0.67 s
    assert await elector.try_acquire() and elector.is_leading()
    api.delay = elector.renew_deadline + 0.1
    assert await elector.try_acquire()  # the server took it...
    assert not elector.is_leading()  # ...but it was sent too long ago to be sure it is still ours


async def test_a_prompt_renewal_keeps_leading():
    api = SlowLeaseApi(delay=0.05)
    elector = LeaderElector(api, namespace="ns", name="lease", identity="a", duration=1.0)
    assert await elector.try_acquire() and await elector.try_acquire()
    assert elector.is_leading()
