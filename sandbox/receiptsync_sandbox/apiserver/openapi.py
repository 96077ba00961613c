"""OpenAPI documents of the sandbox API: /openapi/v2 (Swagger 2.0), the /openapi/v3 index, and one
OpenAPI 3.0 document per group-version, covering built-in kinds (schemas from kubernetes-validate)
and every served custom resource (schemas from its CRD).

Documents are cached by the exact set of resource types they describe: building one takes tens of
milliseconds, serving a cached one nothing. Returned documents are shared: do not mutate them.
"""
from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Iterable

from . import openapi_builtin as builtin
from . import openapi_crd as crd
from .openapi_paths import META, resource_paths
from .resources import ResourceType

KUBE_VERSION = builtin.KUBE_SCHEMA_VERSION
_ALWAYS = {META + n for n in ("DeleteOptions", "Status", "Patch", "WatchEvent", "APIResourceList")}
_CACHE_SIZE = 64
_cache: dict[tuple[Any, ...], tuple[dict[str, Any], bytes]] = {}
_lock = threading.Lock()


def _fingerprint(types: Iterable[ResourceType]) -> tuple[Any, ...]:
    return tuple(sorted(
        (t.group, t.version, t.kind, t.plural, t.namespaced, tuple(t.verbs), tuple(t.subresources),
         t.crd_name or "", json.dumps(t.schema, sort_keys=True) if t.schema is not None else "", t.served)
        for t in types
    ))


def _cached(key: tuple[Any, ...], build) -> tuple[dict[str, Any], bytes]:
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    document = build()
    entry = (document, json.dumps(document, separators=(",", ":")).encode())
    with _lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = entry
    return entry


def _is_custom(rt: ResourceType) -> bool:
    return bool(rt.crd_name) or rt.schema is not None


def _generic_definition(rt: ResourceType, kind: str) -> dict[str, Any]:
    """For a built-in kind kubernetes-validate does not know: an open object, still findable by GVK."""
    return {
        "description": f"{kind} ({rt.group_version})",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-group-version-kind": [{"group": rt.group, "kind": kind, "version": rt.version}],
    }


def _kind_definitions(rt: ResourceType, version: int) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """(kind definition name, list definition name, definitions this type adds beyond the built-ins)."""
    if _is_custom(rt):
        kind_name = crd.definition_name(rt.group, rt.version, rt.kind)
        return kind_name, kind_name + "List", {
            kind_name: crd.kind_definition(rt.group, rt.version, rt.kind, rt.schema, version),
            kind_name + "List": crd.list_definition(rt.group, rt.version, rt.kind, version),
        }
    extra: dict[str, dict[str, Any]] = {}
    names = []
    for kind in (rt.kind, rt.list_kind):
        name = builtin.definition_name(rt.group, rt.version, kind)
        if name is None:
            name = f"io.k8s.sandbox.{rt.group or 'core'}.{rt.version}.{kind}"
            extra[name] = _generic_definition(rt, kind)
        names.append(name)
    return names[0], names[1], extra


def _assemble(types: list[ResourceType], version: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, definitions) for the given resource types in OpenAPI ``version`` (2 or 3)."""
    paths: dict[str, Any] = {}
    own: dict[str, dict[str, Any]] = {}
    for rt in types:
        kind_name, list_name, extra = _kind_definitions(rt, version)
        own.update(extra)
        paths.update(resource_paths(rt, kind_name, list_name, version))
    library = builtin.definitions_v3() if version == 3 else builtin.definitions_v2()
    wanted = builtin.references(paths) | builtin.references(own) | _ALWAYS
    for rt in types:
        if not _is_custom(rt):
            wanted |= {n for n in (builtin.definition_name(rt.group, rt.version, k) for k in (rt.kind, rt.list_kind)) if n}
    definitions = {name: library[name] for name in sorted(builtin.closure(wanted, library))}
    definitions.update(own)
    return paths, definitions


def _served(types: Iterable[ResourceType]) -> list[ResourceType]:
    return [t for t in types if t.served]


def _group_version_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _build_v3(types: list[ResourceType]) -> dict[str, Any]:
    paths, schemas = _assemble(types, 3)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
    }


def _v3_entry(types: Iterable[ResourceType], group: str, version: str) -> tuple[dict[str, Any], bytes]:
    selected = [t for t in _served(types) if t.group == group and t.version == version]
    return _cached(("v3", group, version, _fingerprint(selected)), lambda: _build_v3(selected))


def openapi_v3_document(types: list[ResourceType], group: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one group-version (group "" is the core group)."""
    return _v3_entry(types, group, version)[0]


def openapi_v3_document_json(types: list[ResourceType], group: str, version: str) -> bytes:
    """The same document, serialized (cached; what the hash in the index is computed over)."""
    return _v3_entry(types, group, version)[1]


def openapi_v3_hash(types: list[ResourceType], group: str, version: str) -> str:
    """The ETag-like hash kube-apiserver puts in serverRelativeURL: SHA-512 of the document, upper hex."""
    return hashlib.sha512(openapi_v3_document_json(types, group, version)).hexdigest().upper()


def openapi_v3_index(types: list[ResourceType]) -> dict[str, Any]:
    """GET /openapi/v3: every served group-version with the URL of its document."""
    group_versions = sorted({(t.group, t.version) for t in _served(types)})
    paths = {}
    for group, version in group_versions:
        key = _group_version_key(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={openapi_v3_hash(types, group, version)}"}
    return {"paths": paths}


def _build_v2(types: list[ResourceType]) -> dict[str, Any]:
    paths, definitions = _assemble(types, 2)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    }


def openapi_v2(types: list[ResourceType]) -> dict[str, Any]:
    """GET /openapi/v2 as JSON (Swagger 2.0) for every served resource type."""
    selected = _served(types)
    return _cached(("v2", _fingerprint(selected)), lambda: _build_v2(selected))[0]


def openapi_v2_json(types: list[ResourceType]) -> bytes:
    selected = _served(types)
    return _cached(("v2", _fingerprint(selected)), lambda: _build_v2(selected))[1]
