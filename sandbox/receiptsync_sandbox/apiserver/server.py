"""The sandbox's Kubernetes API server: aiohttp application, discovery and non-resource endpoints.

`create_app(state_dir)` builds it; `python -m receiptsync_sandbox.apiserver` serves it over plain HTTP.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from aiohttp import web

from . import discovery, nodes, openapi_proto
from .audit import Audit
from .controllers import DeletionControllers
from .errors import ApiError, status_body
from .handlers import ResourceHandlers, json_response
from .openapi_docs import OpenApiDocs
from .operations import Api, WriteOptions
from .registry import Registry
from .routing import parse_resource_path
from .store import Store

log = logging.getLogger(__name__)
ANONYMOUS = "system:anonymous"
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

API_KEY = web.AppKey("api", Api)
AUDIT_KEY = web.AppKey("audit", Audit)


def user_of(request: web.Request) -> str:
    """Any bearer token is accepted; the token itself names the user."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return header[7:].strip()
    return ANONYMOUS


def create_app(state_dir: Path, *, bookmark_interval: float = 30.0, history_limit: int = 10000) -> web.Application:
    state_dir = Path(state_dir)
    registry = Registry()
    api = Api(registry, Store(history_limit=history_limit))
    for name in INITIAL_NAMESPACES:
        api.create(registry.lookup("", "v1", "namespaces"), "", {"metadata": {"name": name}}, WriteOptions())
    node_type = registry.lookup("", "v1", "nodes")
    node = api.create(node_type, "", nodes.node_object(), WriteOptions())
    api.update(node_type, "", node["metadata"]["name"], {**node, "status": nodes.node_status(api.clock(), state_dir)},
               WriteOptions(), "status")
    api.create(registry.lookup("coordination.k8s.io", "v1", "leases"), "kube-node-lease",
               nodes.node_lease(node, api.clock()), WriteOptions())
    audit = Audit()
    resources = ResourceHandlers(api, audit, state_dir, bookmark_interval)
    docs = OpenApiDocs(registry)
    controllers = DeletionControllers(api)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        try:
            return await _route(request)
        except ApiError as exc:
            response = json_response(exc.status(), exc.code)
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # surface bugs as a kube-style 500, and in the server log
            log.exception("internal error on %s %s", request.method, request.path)
            return json_response(status_body(500, f"sandbox internal error: {exc!r}", "InternalError"), 500)

    async def _route(request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        accept = request.headers.get("Accept", "")
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return json_response(discovery.SERVER_VERSION)
        if path == "/sandbox/audit":
            return _audit(request)
        if path == "/sandbox/compact" and request.method == "POST":
            # Test hook: forget the watch history, as an etcd compaction would (watches from before get 410).
            return json_response({"compactedResourceVersion": str(api.store.compact())})
        if path.startswith("/openapi"):
            return _openapi(path, accept)
        if path in ("/api", "/apis"):
            aggregated = discovery.wants_aggregated(accept)
            if aggregated:
                body = discovery.aggregated(registry, core=path == "/api", media_type=aggregated)
                response = json_response(body)
                response.content_type = "application/json"
                response.headers["Content-Type"] = aggregated
                return response
            return json_response(discovery.api_versions() if path == "/api" else discovery.api_group_list(registry))
        if path == "/api/v1":
            return json_response(discovery.api_resource_list(registry, "", "v1"))
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) in (2, 3):
            return _group_discovery(parts[1:])
        target = parse_resource_path(path)
        if target is None:
            raise ApiError(404, "the server could not find the requested resource")
        return await resources.handle(request, target, user_of(request))

    def _group_discovery(parts: list[str]) -> web.Response:
        versions = dict(registry.groups()).get(parts[0])
        if not versions or (len(parts) == 2 and parts[1] not in versions):
            raise ApiError(404, "the server could not find the requested resource")
        if len(parts) == 1:
            return json_response(discovery.api_group(parts[0], versions))
        return json_response(discovery.api_resource_list(registry, parts[0], parts[1]))

    def _openapi(path: str, accept: str) -> web.Response:
        if path == "/openapi/v2":
            if openapi_proto.wants_protobuf(accept):  # Go clients parse this as protobuf, whatever is sent
                return web.Response(body=docs.v2_protobuf(), content_type=openapi_proto.MEDIA_TYPE)
            return json_response(docs.v2())
        if path == "/openapi/v3":
            return json_response(docs.v3_index())
        rest = path[len("/openapi/v3/"):].split("/") if path.startswith("/openapi/v3/") else []
        document = None
        if rest == ["api", "v1"]:
            document = docs.v3_document("", "v1")
        elif len(rest) == 3 and rest[0] == "apis":
            document = docs.v3_document(rest[1], rest[2])
        if document is None:
            raise ApiError(404, "the server could not find the requested resource")
        return json_response(document)

    def _audit(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            audit.clear()
            return json_response({"cleared": True})
        return json_response(audit.entries(request.query.get("user")))

    async def run_controllers(app: web.Application):
        task = asyncio.create_task(controllers.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[API_KEY] = api
    app[AUDIT_KEY] = audit
    app.cleanup_ctx.append(run_controllers)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
