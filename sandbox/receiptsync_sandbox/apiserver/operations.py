"""The API's verbs over storage: create, update, patch, delete — kube-apiserver's write semantics.

Everything here is synchronous and runs on the server's one event loop, so each verb is atomic.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import secrets
import uuid
from typing import Any, Callable

from . import admission, crds, defaults, events, fieldsets, patches
from .errors import ApiError, already_exists, bad_request, conflict, invalid, not_found, success_status
from .registry import Registry
from .resources import ResourceType
from .store import Key, Store

NAMESPACES: Key = ("", "namespaces")
CRDS: Key = ("apiextensions.k8s.io", "customresourcedefinitions")
PODS: Key = ("", "pods")
SERVICEACCOUNTS: Key = ("", "serviceaccounts")
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


def utcnow() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class WriteOptions:
    """Per-request knobs from the query string."""
    dry_run: bool = False
    field_manager: str | None = None
    field_validation: str = "Strict"
    force: bool = False
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DeleteOptions:
    propagation: str | None = None
    grace_period: int | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


class Api:
    def __init__(self, registry: Registry, store: Store, clock: Callable[[], str] = utcnow):
        self.registry = registry
        self.store = store
        self.clock = clock
        self.on_delete: Callable[[], None] = lambda: None  # wakes the garbage collector

    # --- shape conversion between a requested version and storage ----------------------------
    def present(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if rt.storage_override:
            return events.from_core(obj)
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        return obj

    def _to_storage(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if rt.storage_override:
            return events.to_core(obj)
        storage = self.registry.storage_type(rt.key) or rt
        obj["apiVersion"], obj["kind"] = storage.group_version, storage.kind
        return obj

    # --- reads ---------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt.group, rt.plural, name)
        return self.present(rt, obj)

    def list(self, rt: ResourceType, namespace: str | None,
             matcher: Callable[[dict[str, Any]], bool]) -> tuple[list[dict[str, Any]], int]:
        items = [self.present(rt, o) for o in self.store.list(rt.key, namespace if rt.namespaced else None)]
        return [o for o in items if matcher(o)], self.store.resource_version

    # --- create --------------------------------------------------------------------------
    def create(self, rt: ResourceType, namespace: str, body: Any, opts: WriteOptions) -> dict[str, Any]:
        obj = self._check_body(rt, namespace, body)
        meta = obj["metadata"]
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(rt.kind, rt.group, "", [("metadata.name", "FieldValueRequired",
                                                      "Required value: name or generateName is required")])
            meta["name"] = meta["generateName"] + _random_suffix()
        self._require_live_namespace(rt, namespace)
        if self.store.get(rt.key, namespace, meta["name"]) is not None:
            raise already_exists(rt.group, rt.plural, meta["name"])
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self.clock()
        if rt.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rt.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if rt.has_status:
            obj.pop("status", None)  # create cannot set status where status is a subresource
        defaults.apply_create_defaults(rt.key, obj)
        return self._commit(rt, obj, None, opts, subresource=None)

    def _check_body(self, rt: ResourceType, namespace: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {})
        if obj.get("kind") not in (None, rt.kind) or obj.get("apiVersion") not in (None, rt.group_version):
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                              f"API version ({rt.group_version})")
        body_ns = obj["metadata"].get("namespace")
        if rt.namespaced and body_ns and body_ns != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        return obj

    def _require_live_namespace(self, rt: ResourceType, namespace: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None:
            raise not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, f'{rt.plural} "" is forbidden: unable to create new content in namespace '
                                f"{namespace} because it is being terminated")

    # --- update --------------------------------------------------------------------------
    def update(self, rt: ResourceType, namespace: str, name: str, body: Any, opts: WriteOptions,
               subresource: str | None = None) -> dict[str, Any]:
        obj = self._check_body(rt, namespace, body)
        if obj["metadata"].get("name") not in (None, name):
            raise bad_request("the name of the object does not match the name on the URL")
        obj["metadata"]["name"] = name
        old = self._current(rt, namespace, name)
        wanted_rv = obj["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.group, rt.plural, name)
        return self._commit(rt, self._merge_old(rt, old, obj, subresource), old, opts, subresource)

    def _current(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        old = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if old is None:
            raise not_found(rt.group, rt.plural, name)
        return self.present(rt, old)

    def _merge_old(self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any],
                   subresource: str | None) -> dict[str, Any]:
        """Keep what a client cannot change: identity, server metadata, and the other half of a
        status-subresource kind (status on the main resource, everything but status on /status)."""
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            return merged
        meta, old_meta = new["metadata"], old["metadata"]
        for field in ("uid", "creationTimestamp", "namespace", "generation", "deletionTimestamp",
                      "deletionGracePeriodSeconds"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        if rt.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        return new

    # --- patch ---------------------------------------------------------------------------
    def patch(self, rt: ResourceType, namespace: str, name: str, patch_type: str, patch: Any,
              opts: WriteOptions, subresource: str | None = None) -> dict[str, Any]:
        namespace = namespace if rt.namespaced else ""
        if patch_type == patches.APPLY_PATCH:
            return self._apply(rt, namespace, name, patch, opts, subresource)
        old = self._current(rt, namespace, name)
        if patch_type == patches.MERGE_PATCH:
            if not isinstance(patch, dict):
                raise bad_request("merge patch must be a JSON object")
            patched = patches.merge_patch(old, patch)
        elif patch_type == patches.JSON_PATCH:
            patched = patches.json_patch(old, patch)
        elif patch_type == patches.STRATEGIC_PATCH:
            if rt.is_custom:
                raise ApiError(415, f"the body of the request was in an unknown format - accepted media types "
                                    f"include: {patches.JSON_PATCH}, {patches.MERGE_PATCH}, {patches.APPLY_PATCH}")
            patched = patches.strategic_merge(old, patch)
        else:
            raise ApiError(415, f"the body of the request was in an unknown format - accepted media types "
                                f"include: {', '.join(patches.PATCH_TYPES)}")
        return self._update_from_patch(rt, old, patched, opts, subresource)

    def _update_from_patch(self, rt: ResourceType, old: dict[str, Any], patched: Any, opts: WriteOptions,
                           subresource: str | None) -> dict[str, Any]:
        if not isinstance(patched, dict):
            raise bad_request("patch did not produce an object")
        patched.setdefault("metadata", {})
        meta = patched["metadata"]
        if meta.get("name") != old["metadata"]["name"] or (rt.namespaced and meta.get("namespace") !=
                                                              old["metadata"].get("namespace")):
            raise bad_request("metadata.name and metadata.namespace cannot be changed by a patch")
        # A patch that names a resourceVersion is a precondition, like an update's.
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.group, rt.plural, old["metadata"]["name"])
        merged = self._merge_old(rt, old, patched, subresource)
        return self._commit(rt, merged, old, opts, subresource)

    def _apply(self, rt: ResourceType, namespace: str, name: str, config: Any, opts: WriteOptions,
               subresource: str | None) -> dict[str, Any]:
        """Server-side apply: merge the applied configuration in, and drop what this manager applied
        before but no longer does (unless another applier owns it). Conflicts are not reported."""
        if not isinstance(config, dict):
            raise bad_request("apply patch must be an object")
        if not opts.field_manager:
            raise bad_request("PATCH requests with apply content type require fieldManager")
        config = copy.deepcopy(config)
        config.setdefault("metadata", {})["name"] = name
        atomic = rt.is_custom
        new_paths = fieldsets.applied_paths(config, atomic_lists=atomic)
        current = self.store.get(rt.key, namespace, name)
        if current is None:
            if subresource:
                raise not_found(rt.group, rt.plural, name)
            created = patches.strategic_merge({}, config, atomic_lists=atomic)
            created["metadata"]["managedFields"] = [self._managed_entry(rt, opts.field_manager, new_paths, subresource)]
            return self.create(rt, namespace, created, opts)
        old = self.present(rt, current)
        managers = [m for m in old["metadata"].get("managedFields") or []]
        mine = [m for m in managers if m.get("manager") == opts.field_manager and m.get("operation") == "Apply"
                and (m.get("subresource") or None) == subresource]
        others = [m for m in managers if m not in mine]
        previous = set().union(*(fieldsets.from_fields_v1(m.get("fieldsV1") or {}) for m in mine)) if mine else set()
        kept = set().union(*(fieldsets.from_fields_v1(m.get("fieldsV1") or {}) for m in others
                             if m.get("operation") == "Apply")) if others else set()
        merged = patches.strategic_merge(old, config, atomic_lists=atomic)
        fieldsets.remove_paths(merged, previous - new_paths - kept)
        merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        merged["metadata"]["managedFields"] = others + [self._managed_entry(rt, opts.field_manager, new_paths,
                                                                            subresource)]
        result = self._update_from_patch(rt, old, merged, opts, subresource)
        return result

    def _managed_entry(self, rt: ResourceType, manager: str, paths: set, subresource: str | None) -> dict[str, Any]:
        entry = {"manager": manager, "operation": "Apply", "apiVersion": rt.group_version, "time": self.clock(),
                 "fieldsType": "FieldsV1", "fieldsV1": fieldsets.to_fields_v1(paths)}
        if subresource:
            entry["subresource"] = subresource
        return entry

    # --- the common write path -----------------------------------------------------------
    def _commit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, opts: WriteOptions,
                subresource: str | None) -> dict[str, Any]:
        defaults.normalize_on_write(rt.key, obj)
        if rt.is_custom:
            obj, warnings = admission.admit_custom(rt, obj, old, field_validation=opts.field_validation,
                                                   subresource=subresource)
            opts.warnings.extend(warnings)
        if rt.key == CRDS:
            self._prepare_crd(obj)
        if old is not None:
            if obj.get("metadata", {}).get("managedFields") is None and "managedFields" in old["metadata"]:
                obj["metadata"]["managedFields"] = old["metadata"]["managedFields"]
            if _same(obj, old):
                return old  # a no-op write changes nothing, not even the resourceVersion
            if rt.has_generation and _spec_changed(rt, old, obj):
                obj["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
        if opts.dry_run:
            return obj
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not meta.get("deletionGracePeriodSeconds"):
            return self._finish_removal(rt, obj)  # the last finalizer just went away
        stored = self.store.put(rt.key, self._to_storage(rt, obj))
        self._after_write(rt, stored, created=old is None)
        return self.present(rt, stored)

    def _prepare_crd(self, crd: dict[str, Any]) -> None:
        errors = crds.crd_name_errors(crd)
        if errors:
            raise invalid("CustomResourceDefinition", "apiextensions.k8s.io", crd["metadata"].get("name", ""), errors)
        admission.check_crd(crd)
        finalizers = crd["metadata"].setdefault("finalizers", [])
        if crds.CLEANUP_FINALIZER not in finalizers and not crd["metadata"].get("deletionTimestamp"):
            finalizers.append(crds.CLEANUP_FINALIZER)
        crd["status"] = crds.accepted_status(crd, self.clock())

    def _after_write(self, rt: ResourceType, stored: dict[str, Any], created: bool) -> None:
        if rt.key == CRDS:
            types = crds.types_from_crd(stored)
            for custom in types:
                admission.compile_type(custom)
            self.registry.set_custom(stored["metadata"]["name"], types)
        elif rt.key == NAMESPACES and created:
            self._create_default_serviceaccount(stored["metadata"]["name"])

    def _create_default_serviceaccount(self, namespace: str) -> None:
        sa_type = self.registry.storage_type(SERVICEACCOUNTS)
        if self.store.get(SERVICEACCOUNTS, namespace, "default") is None:
            self.create(sa_type, namespace, {"metadata": {"name": "default"}}, WriteOptions())

    # --- pods/binding --------------------------------------------------------------------
    def bind(self, rt: ResourceType, namespace: str, name: str, body: Any, opts: WriteOptions) -> dict[str, Any]:
        """The scheduler's write: a v1 Binding sets an unbound pod's spec.nodeName (kube-apiserver's
        BindingREST: 409 once bound or deleting, PodScheduled=True, the binding's annotations copied)."""
        if not isinstance(body, dict) or body.get("kind") not in (None, "Binding"):
            raise bad_request("the body of the request must be a v1 Binding")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise bad_request("the name of the object does not match the name on the URL")
        target = body.get("target") or {}
        if target.get("kind") not in (None, "", "Node") or not target.get("name"):
            raise invalid("Binding", "", name, [("target.kind", "FieldValueNotSupported",
                                                 'Unsupported value: must be empty or "Node", with a name')])
        old = self._current(rt, namespace, name)
        if meta.get("uid") and meta["uid"] != old["metadata"]["uid"]:
            raise conflict(rt.group, rt.plural, name)
        node = (old.get("spec") or {}).get("nodeName")
        reason = ("is being deleted, cannot be assigned to a host" if old["metadata"].get("deletionTimestamp")
                  else f'is already assigned to node "{node}"' if node else None)
        if reason:
            raise ApiError(409, f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} {reason}',
                           reason="Conflict", details={"name": name, "kind": "pods/binding"})
        pod = copy.deepcopy(old)
        pod.setdefault("spec", {})["nodeName"] = target["name"]
        if meta.get("annotations"):
            pod["metadata"]["annotations"] = {**(pod["metadata"].get("annotations") or {}), **meta["annotations"]}
        status = pod.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                 "lastTransitionTime": self.clock()}] + conditions
        self._commit(rt, pod, old, opts, subresource=None)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # --- delete --------------------------------------------------------------------------
    def delete(self, rt: ResourceType, namespace: str, name: str, options: DeleteOptions) -> dict[str, Any]:
        namespace = namespace if rt.namespaced else ""
        obj = self._current(rt, namespace, name)
        meta = obj["metadata"]
        if options.precondition_uid and options.precondition_uid != meta["uid"]:
            raise conflict(rt.group, rt.plural, name)
        if options.precondition_rv and options.precondition_rv != meta["resourceVersion"]:
            raise conflict(rt.group, rt.plural, name)
        if options.dry_run:
            return obj
        policy = options.propagation or rt.default_propagation
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if policy == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
        graceful = rt.key == PODS and _pod_needs_grace(obj, options.grace_period)
        if rt.key == NAMESPACES:
            return self._start_namespace_termination(rt, obj)
        if not finalizers and not graceful:
            return self._finish_removal(rt, obj)
        if meta.get("deletionTimestamp") and finalizers == (meta.get("finalizers") or []):
            return obj  # already on its way out
        meta["finalizers"] = finalizers
        if not meta.get("deletionTimestamp"):
            grace = _grace_seconds(obj, options.grace_period) if graceful else 0
            meta["deletionTimestamp"] = _after(self.clock(), grace)
            meta["deletionGracePeriodSeconds"] = grace
        stored = self.store.put(rt.key, self._to_storage(rt, obj))
        self.on_delete()
        return self.present(rt, stored)

    def _start_namespace_termination(self, rt: ResourceType, ns: dict[str, Any]) -> dict[str, Any]:
        if not ns["metadata"].get("deletionTimestamp"):
            ns["metadata"]["deletionTimestamp"] = self.clock()
            ns["metadata"]["deletionGracePeriodSeconds"] = 0
            ns["status"] = {"phase": "Terminating"}
            ns = self.present(rt, self.store.put(rt.key, self._to_storage(rt, ns)))
        self.on_delete()
        return ns

    def _finish_removal(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        final = self.store.remove(rt.key, meta.get("namespace") or "", meta["name"])
        if rt.key == CRDS:
            self._unregister_crd(meta["name"])
        self.on_delete()
        final = self.present(rt, final if final is not None else obj)
        if rt.is_custom or rt.key in (PODS, NAMESPACES, CRDS):
            return final  # these return the deleted object, the rest a Status, as the real server does
        return success_status({"name": meta["name"], "group": rt.group, "kind": rt.plural, "uid": meta["uid"]})

    def _unregister_crd(self, crd_name: str) -> None:
        for custom in [t for t in self.registry.all() if t.crd_name == crd_name]:
            self.store.drop_key(custom.key)
        self.registry.remove_custom(crd_name)

    def remove_finalizer(self, key: Key, obj: dict[str, Any], finalizer: str) -> None:
        """Controllers' way to release an object they finished with (GC, namespace and CRD cleanup)."""
        rt = self.registry.storage_type(key)
        current = self.store.get(key, obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        if rt is None or current is None:
            return
        current["metadata"]["finalizers"] = [f for f in current["metadata"].get("finalizers") or [] if f != finalizer]
        if not current["metadata"]["finalizers"] and current["metadata"].get("deletionTimestamp"):
            self._finish_removal(rt, current)
        else:
            self.store.put(key, current)


def _same(new: dict[str, Any], old: dict[str, Any]) -> bool:
    def strip(o: dict[str, Any]) -> dict[str, Any]:
        o = copy.deepcopy(o)
        o["metadata"].pop("resourceVersion", None)
        for entry in o["metadata"].get("managedFields") or []:
            entry.pop("time", None)
        return o

    return strip(new) == strip(old)


def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    ignored = {"metadata", "status"} if rt.has_status else {"metadata"}
    ignored |= {"apiVersion", "kind"}
    pick = lambda o: {k: v for k, v in o.items() if k not in ignored}  # noqa: E731
    return pick(old) != pick(new)


def _pod_needs_grace(pod: dict[str, Any], requested: int | None) -> bool:
    """Only a Pod bound to a node and still running waits for its kubelet; others go at once."""
    if requested == 0:
        return False
    phase = (pod.get("status") or {}).get("phase")
    return bool((pod.get("spec") or {}).get("nodeName")) and phase not in ("Succeeded", "Failed")


def _grace_seconds(pod: dict[str, Any], requested: int | None) -> int:
    if requested is not None:
        return requested
    return int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def _after(timestamp: str, seconds: int) -> str:
    when = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ") + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _random_suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the real server's consonants-and-digits alphabet
    return "".join(secrets.choice(alphabet) for _ in range(5))
