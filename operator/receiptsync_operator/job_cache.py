"""Our worker Jobs and their Pods, as the API last told us (fed only by :mod:`kube_watch`), plus what
the operator remembers about them on its own clock (since when a Job is bad, since when a pod shows
the same trouble)."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import job_state
from .resource_cache import Key, key_of


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


class ObjectStore:
    """One kind of object by (namespace, name): a list replaces it, watch events update it. An object
    we created ourselves counts at once and survives a list taken before it existed.

    Two indexes kept on every change, so the questions asked on every dispatch and watch event cost
    the few live objects, not every object still listed (finished Jobs wait for their TTL):
    ``holding``, the objects ``holds`` says yes to, and ``groups``, names by (namespace, ``group``)."""

    def __init__(self, holds: Callable[[Mapping[str, Any]], bool] = lambda _: False,
                 group: Callable[[Mapping[str, Any]], str | None] = lambda _: None) -> None:
        self.items: dict[Key, dict[str, Any]] = {}
        self.holding: dict[Key, dict[str, Any]] = {}
        self.groups: dict[Key, set[str]] = {}
        self._holds, self._group = holds, group
        self._ours: dict[Key, int] = {}  # created by us: key -> its resourceVersion, until listed or watched

    def _put(self, key: Key, obj: dict[str, Any]) -> None:
        self._drop(key)
        self.items[key] = obj
        if self._holds(obj):
            self.holding[key] = obj
        group = self._group(obj)
        if group is not None:
            self.groups.setdefault((key[0], group), set()).add(key[1])

    def _drop(self, key: Key) -> None:
        old = self.items.pop(key, None)
        self.holding.pop(key, None)
        group = self._group(old) if old is not None else None
        if group is not None:
            names = self.groups.get((key[0], group))
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self.groups[(key[0], group)]

    def in_group(self, namespace: str, group: str) -> list[dict[str, Any]]:
        return [self.items[(namespace, name)] for name in self.groups.get((namespace, group), ())]

    def replace(self, items: list[Mapping[str, Any]], resource_version: str) -> None:
        listed = {key_of(o): dict(o) for o in items}
        try:
            snapshot = int(resource_version)
        except (TypeError, ValueError):
            snapshot = 0
        for key, rv in list(self._ours.items()):
            if key in listed or rv <= snapshot:
                self._ours.pop(key)  # the list knows it (or knew it was gone)
            elif key in self.items:
                listed[key] = self.items[key]
        self.items, self.holding, self.groups = {}, {}, {}
        for key, obj in listed.items():
            self._put(key, obj)

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        key = key_of(obj)
        self._ours.pop(key, None)
        if event_type == "DELETED":
            self._drop(key)
        else:
            # Kept as given, not copied: the watch parsed it for us alone and nobody changes it (a
            # deep copy of every Job and Pod version was the operator's largest single cost).
            self._put(key, dict(obj))

    def created(self, obj: Mapping[str, Any]) -> None:
        key = key_of(obj)
        if key not in self.items:
            self._put(key, copy.deepcopy(dict(obj)))
            self._ours[key] = _rv(obj)


class JobCache:
    def __init__(self, monotonic=time.monotonic) -> None:
        self.jobs = ObjectStore(holds=job_state.is_active)
        self.pods = ObjectStore(holds=job_state.pod_is_live, group=job_state.job_name_of_pod)
        self._monotonic = monotonic
        self._bad_since: dict[Key, float] = {}
        self._seen_since: dict[Key, float] = {}  # Job -> when we first saw it (our clock)
        self._trouble: dict[Key, tuple[str, float]] = {}  # pod -> (word, since)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        job = self.jobs.items.get((namespace, name))
        if job is not None:
            self._seen_since.setdefault((namespace, name), self._monotonic())
        return job

    def created(self, body: Mapping[str, Any]) -> None:
        self.jobs.created(body)
        self._seen_since.setdefault(key_of(body), self._monotonic())

    def pods_of(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return self.pods.in_group(namespace, job_name)

    def slots_held(self, namespace: str | None = None) -> int:
        in_scope = (lambda ns: namespace is None or ns == namespace)
        return job_state.slots_held(((ns, j) for (ns, _), j in self.jobs.holding.items() if in_scope(ns)),
                                    ((ns, p) for (ns, _), p in self.pods.holding.items() if in_scope(ns)))

    def age(self, namespace: str, name: str) -> float:
        """How long we have known this Job (our clock)."""
        since = self._seen_since.setdefault((namespace, name), self._monotonic())
        return self._monotonic() - since

    def bad_for(self, namespace: str, name: str, state: str) -> float:
        """How long the Job has been in a not-active state (0 while active)."""
        key = (namespace, name)
        if state == job_state.JOB_ACTIVE:
            self._bad_since.pop(key, None)
            return 0.0
        since = self._bad_since.setdefault(key, self._monotonic())
        return self._monotonic() - since

    def trouble_for(self, namespace: str, pod: str, word: str) -> float:
        """How long the pod has shown this trouble (our clock); another kind of trouble starts the
        count again (ErrImagePull and ImagePullBackOff are one kind: job_state.trouble_kind)."""
        key = (namespace, pod)
        kind = job_state.trouble_kind(word)
        current = self._trouble.get(key)
        if current is None or current[0] != kind:
            current = (kind, self._monotonic())
            self._trouble[key] = current
        return self._monotonic() - current[1]

    def forget_job(self, namespace: str, name: str) -> None:
        self._bad_since.pop((namespace, name), None)
        self._seen_since.pop((namespace, name), None)
        for (ns, pod_name), pod in list(self.pods.items.items()):
            if ns == namespace and job_state.job_name_of_pod(pod) == name:
                self._trouble.pop((ns, pod_name), None)
