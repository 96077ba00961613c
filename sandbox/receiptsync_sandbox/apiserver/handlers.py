"""HTTP shell for resource URLs: parse the request, call the Api verb, shape the response."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from . import logs, patches, protobuf, tables
from .audit import Audit, verb_of
from .errors import ApiError, bad_request
from .operations import Api, DeleteOptions, WriteOptions
from .resources import ResourceType
from .routing import Target
from .selectors import make_matcher
from .watch import WatchRequest, WatchStream

_REVIEWS = {("authorization.k8s.io", "selfsubjectaccessreviews"), ("authorization.k8s.io", "selfsubjectrulesreviews")}


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                            content_type="application/json")
    for warning in warnings or []:
        response.headers.add("Warning", '299 - "' + warning.replace('"', "'") + '"')
    return response


def _flag(value: str | None) -> bool:
    return value in ("1", "true", "True")


class ResourceHandlers:
    def __init__(self, api: Api, audit: Audit, state_dir: Path, bookmark_interval: float):
        self.api = api
        self.audit = audit
        self.state_dir = state_dir
        self.bookmark_interval = bookmark_interval

    async def handle(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        rt = self.api.registry.lookup(target.group, target.version, target.plural)
        if rt is None or not self._scope_ok(rt, target, request.method):
            raise ApiError(404, "the server could not find the requested resource")
        if target.subresource and target.subresource not in rt.subresources:
            raise ApiError(404, "the server could not find the requested resource")
        watch = target.legacy_watch or _flag(request.query.get("watch"))
        verb = verb_of(request.method, target.name is not None, watch)
        self.audit.record(user, verb, rt.group, rt.plural, target.subresource, target.namespace)
        if rt.key in _REVIEWS:
            return await self._review(request, rt)
        namespace = target.namespace or ""
        if watch:
            return await self._watch(request, rt, target)
        if target.subresource == "log":
            return await logs.serve_log(request, self.api, self.state_dir, namespace, target.name)
        if target.subresource == "scale":
            return await self._scale(request, rt, namespace, target.name)
        if target.subresource == "binding":
            if request.method != "POST":
                raise ApiError(405, "the server does not allow this method on the requested resource")
            opts = self._write_options(request)
            return json_response(self.api.bind(rt, namespace, target.name, await _body(request), opts), 201)
        method = request.method
        if method in ("GET", "HEAD"):
            return self._get_or_list(request, rt, target)
        if method == "POST" and target.name is None:
            opts = self._write_options(request)
            created = self.api.create(rt, namespace, await _body(request), opts)
            return json_response(created, 201, opts.warnings)
        if method == "PUT" and target.name:
            opts = self._write_options(request)
            updated = self.api.update(rt, namespace, target.name, await _body(request), opts, target.subresource)
            return json_response(updated, 200, opts.warnings)
        if method == "PATCH" and target.name:
            return await self._patch(request, rt, namespace, target)
        if method == "DELETE" and target.name:
            return json_response(self.api.delete(rt, namespace, target.name, await self._delete_options(request)))
        if method == "DELETE":
            return await self._delete_collection(request, rt, target)
        raise ApiError(405, f"the server does not allow this method on the requested resource")

    @staticmethod
    def _scope_ok(rt: ResourceType, target: Target, method: str) -> bool:
        if not rt.namespaced:
            return target.namespace is None
        # Namespaced kinds are addressable without a namespace only as an all-namespaces list or watch.
        return target.namespace is not None or (target.name is None and method == "GET")

    # --- reads -------------------------------------------------------------------------------
    def _get_or_list(self, request: web.Request, rt: ResourceType, target: Target) -> web.Response:
        accept = request.headers.get("Accept", "")
        include = request.query.get("includeObject", "PartialObjectMetadata")
        if target.name:
            obj = self.api.get(rt, target.namespace or "", target.name)
            if tables.wants_table(accept):
                return json_response(tables.render(rt, [obj], obj["metadata"]["resourceVersion"], include))
            return json_response(obj)
        matcher = make_matcher(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        items, rv = self.api.list(rt, target.namespace, matcher)
        page, token = _paginate(items, request.query.get("limit"), request.query.get("continue"))
        if tables.wants_table(accept):
            table = tables.render(rt, page, str(rv), include)
            if token:
                table["metadata"]["continue"] = token
            return json_response(table)
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            metadata["continue"] = token
        return json_response({"kind": rt.list_kind, "apiVersion": rt.group_version, "metadata": metadata,
                              "items": page})

    async def _watch(self, request: web.Request, rt: ResourceType, target: Target) -> web.StreamResponse:
        query = request.query
        field_selector = query.get("fieldSelector")
        if target.name:  # a watch on one object is a watch on its collection filtered by name
            field_selector = ",".join(filter(None, [field_selector, f"metadata.name={target.name}"]))
        spec = WatchRequest(
            rt=rt,
            namespace=target.namespace,
            matcher=make_matcher(query.get("labelSelector"), field_selector),
            resource_version=query.get("resourceVersion"),
            timeout_seconds=float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None,
            bookmarks=_flag(query.get("allowWatchBookmarks")),
            send_initial_events=_flag(query.get("sendInitialEvents")),
            as_table=tables.wants_table(request.headers.get("Accept", "")),
            include_object=query.get("includeObject", "PartialObjectMetadata"),
        )
        return await WatchStream(self.api, request, spec, self.bookmark_interval).run()

    # --- writes ------------------------------------------------------------------------------
    @staticmethod
    def _write_options(request: web.Request) -> WriteOptions:
        query = request.query
        validation = query.get("fieldValidation", "Warn")  # the API default; kubectl sends Strict itself
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f"fieldValidation must be one of Strict, Warn, Ignore, not {validation!r}")
        return WriteOptions(dry_run="All" in query.getall("dryRun", []), field_manager=query.get("fieldManager"),
                            field_validation=validation, force=_flag(query.get("force")))

    async def _patch(self, request: web.Request, rt: ResourceType, namespace: str, target: Target) -> web.Response:
        content_type = request.content_type
        if content_type == patches.APPLY_PATCH_CBOR:
            raise ApiError(415, "the sandbox accepts apply patches as YAML or JSON only")
        patch = patches.parse_body(content_type, await request.read())
        opts = self._write_options(request)
        existed = self.api.store.get(rt.key, namespace if rt.namespaced else "", target.name) is not None
        result = self.api.patch(rt, namespace, target.name, content_type, patch, opts, target.subresource)
        return json_response(result, 200 if existed else 201, opts.warnings)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        body = await _body(request) or {}
        query = request.query
        policy = body.get("propagationPolicy") or query.get("propagationPolicy")
        orphan = body.get("orphanDependents", _flag(query.get("orphanDependents")) if "orphanDependents" in query else None)
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan else "Background"
        grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        preconditions = body.get("preconditions") or {}
        dry = "All" in (body.get("dryRun") or []) or "All" in query.getall("dryRun", [])
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise bad_request(f"invalid propagationPolicy {policy!r}")
        return DeleteOptions(propagation=policy, grace_period=int(grace) if grace is not None else None,
                             precondition_uid=preconditions.get("uid"),
                             precondition_rv=preconditions.get("resourceVersion"), dry_run=dry)

    async def _delete_collection(self, request: web.Request, rt: ResourceType, target: Target) -> web.Response:
        matcher = make_matcher(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        options = await self._delete_options(request)
        items, _ = self.api.list(rt, target.namespace, matcher)
        deleted = []
        for item in items:
            try:
                result = self.api.delete(rt, item["metadata"].get("namespace") or "", item["metadata"]["name"],
                                         options)
                deleted.append(item if result.get("kind") == "Status" else result)
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return json_response({"kind": rt.list_kind, "apiVersion": rt.group_version,
                              "metadata": {"resourceVersion": str(self.api.store.resource_version)},
                              "items": deleted})

    # --- special resources -------------------------------------------------------------------
    async def _review(self, request: web.Request, rt: ResourceType) -> web.Response:
        """Self reviews: the sandbox authorises everything, and says so."""
        if request.method != "POST":
            raise ApiError(405, "the server does not allow this method on the requested resource")
        body = await _body(request) or {}
        body.setdefault("metadata", {})
        body["apiVersion"], body["kind"] = rt.group_version, rt.kind
        if rt.plural == "selfsubjectaccessreviews":
            body["status"] = {"allowed": True, "reason": "the sandbox allows every request"}
        else:
            body["status"] = {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                              "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": False}
        return json_response(body, 201)

    async def _scale(self, request: web.Request, rt: ResourceType, namespace: str, name: str) -> web.Response:
        obj = self.api.get(rt, namespace, name)
        if request.method == "GET":
            return json_response(_scale_of(obj))
        if request.method == "PUT":
            wanted = await _body(request)
        elif request.method == "PATCH":
            patch = patches.parse_body(request.content_type, await request.read())
            scale = _scale_of(obj)
            if request.content_type == patches.JSON_PATCH:
                wanted = patches.json_patch(scale, patch)
            else:
                wanted = patches.merge_patch(scale, patch)
        else:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        replicas = ((wanted or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise bad_request("spec.replicas must be a non-negative integer")
        obj["spec"]["replicas"] = replicas
        updated = self.api.update(rt, namespace, name, obj, self._write_options(request))
        return json_response(_scale_of(updated))


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())},
    }


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if protobuf.is_protobuf(request.content_type, raw):
        try:
            return protobuf.decode_object(raw)
        except protobuf.ProtobufError as exc:
            raise ApiError(415, str(exc)) from exc
    return patches.parse_body(request.content_type or "application/json", raw)


def _paginate(items: list[dict[str, Any]], limit: str | None, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """limit/continue over the (name-sorted) list; the token is just the offset."""
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except ValueError:
            raise ApiError(410, "the provided continue parameter is too old or invalid", reason="Expired") from None
    if not limit or not limit.isdigit() or int(limit) <= 0:
        return items[start:], None
    end = start + int(limit)
    next_token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], next_token
