"""The control loops kube-controller-manager would run for deletion: garbage collection by
ownerReferences, namespace termination, CRD cleanup, and expiry of Pods' grace periods.

One asyncio task; it wakes when anything is deleted and once a second, and does one pass.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from . import crds
from .operations import CRDS, FOREGROUND, NAMESPACES, ORPHAN, PODS, Api, DeleteOptions
from .store import Key

log = logging.getLogger(__name__)


class DeletionControllers:
    def __init__(self, api: Api):
        self.api = api
        self._wakeup = asyncio.Event()
        api.on_delete = self._wakeup.set

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            self._wakeup.clear()
            try:
                self.run_once()
            except Exception:  # a bad object must not stop collection for everything else
                log.exception("deletion controllers pass failed")

    def run_once(self) -> None:
        snapshot = list(self.api.store.iter_all())
        live_uids = {obj["metadata"]["uid"] for _, obj in snapshot}
        for key, obj in snapshot:
            meta = obj["metadata"]
            if key == NAMESPACES and meta.get("deletionTimestamp"):
                self._terminate_namespace(obj)
            elif key == CRDS and meta.get("deletionTimestamp"):
                self._clean_up_crd(obj)
            elif meta.get("deletionTimestamp"):
                self._finish_owner(key, obj)
            if key == PODS and meta.get("deletionTimestamp") and _grace_expired(obj):
                self._delete(key, obj, grace_period=0)
            self._collect_if_orphaned(key, obj, live_uids)

    # --- ownerReferences --------------------------------------------------------------------
    def _dependents(self, owner_uid: str) -> list[tuple[Key, dict[str, Any]]]:
        return [(key, obj) for key, obj in self.api.store.iter_all()
                if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or [])]

    def _finish_owner(self, key: Key, owner: dict[str, Any]) -> None:
        finalizers = owner["metadata"].get("finalizers") or []
        uid = owner["metadata"]["uid"]
        if ORPHAN in finalizers:
            for dep_key, dep in self._dependents(uid):
                self._drop_owner_ref(dep_key, dep, uid)
            self.api.remove_finalizer(key, owner, ORPHAN)
        elif FOREGROUND in finalizers:
            dependents = self._dependents(uid)
            for dep_key, dep in dependents:
                if not dep["metadata"].get("deletionTimestamp"):
                    self._delete(dep_key, dep, propagation="Foreground")
            if not dependents:
                self.api.remove_finalizer(key, owner, FOREGROUND)

    def _collect_if_orphaned(self, key: Key, obj: dict[str, Any], live_uids: set[str]) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        if refs and not obj["metadata"].get("deletionTimestamp") and not any(r.get("uid") in live_uids for r in refs):
            self._delete(key, obj, propagation="Background")

    def _drop_owner_ref(self, key: Key, obj: dict[str, Any], owner_uid: str) -> None:
        current = self.api.store.get(key, obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        if current is None:
            return
        current["metadata"]["ownerReferences"] = [r for r in current["metadata"].get("ownerReferences") or []
                                                  if r.get("uid") != owner_uid]
        if not current["metadata"]["ownerReferences"]:
            del current["metadata"]["ownerReferences"]
        self.api.store.put(key, current)

    # --- namespaces and CRDs ----------------------------------------------------------------
    def _terminate_namespace(self, ns: dict[str, Any]) -> None:
        name = ns["metadata"]["name"]
        remaining = 0
        for rt in self._storage_types():
            if not rt.namespaced:
                continue
            for obj in self.api.store.list(rt.key, name):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(rt.key, obj, propagation="Background")
        if remaining:
            return
        spec_finalizers = (ns.get("spec") or {}).get("finalizers") or []
        if spec_finalizers:
            current = self.api.store.get(NAMESPACES, "", name)
            current["spec"]["finalizers"] = []
            self.api.store.put(NAMESPACES, current)
        if not ns["metadata"].get("finalizers"):
            self.api.store.remove(NAMESPACES, "", name)

    def _clean_up_crd(self, crd: dict[str, Any]) -> None:
        types = [t for t in self.api.registry.all() if t.crd_name == crd["metadata"]["name"]]
        remaining = 0
        for key in {t.key for t in types}:
            for obj in self.api.store.list(key):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(key, obj, propagation="Background")
        if not remaining:
            self.api.remove_finalizer(CRDS, crd, crds.CLEANUP_FINALIZER)

    # --- helpers ------------------------------------------------------------------------------
    def _storage_types(self):
        seen, out = set(), []
        for rt in self.api.registry.all():
            if rt.key not in seen:
                seen.add(rt.key)
                out.append(self.api.registry.storage_type(rt.key))
        return out

    def _delete(self, key: Key, obj: dict[str, Any], propagation: str | None = None,
                grace_period: int | None = None) -> None:
        rt = self.api.registry.storage_type(key)
        if rt is None:
            return
        try:
            self.api.delete(rt, obj["metadata"].get("namespace") or "", obj["metadata"]["name"],
                            DeleteOptions(propagation=propagation, grace_period=grace_period))
        except Exception as exc:  # already gone, or raced with a client: the next pass retries
            log.debug("could not delete %s %s: %s", key, obj["metadata"]["name"], exc)


def _grace_expired(pod: dict[str, Any]) -> bool:
    deadline = datetime.datetime.strptime(pod["metadata"]["deletionTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) >= deadline
