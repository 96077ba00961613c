"""Serves the OpenAPI documents built by openapi.py (written separately), cached per registry revision.

Until openapi.py exists, minimal valid documents keep clients that merely fetch them working.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable

from .registry import Registry


def _module() -> Any:
    name = __package__ + ".openapi"
    return importlib.import_module(name) if importlib.util.find_spec(name) else None


class OpenApiDocs:
    def __init__(self, registry: Registry):
        self.registry = registry
        self._cache: dict[tuple, Any] = {}
        self._revision = -1

    def _cached(self, key: tuple, build: Callable[[], Any]) -> Any:
        if self._revision != self.registry.revision:
            self._cache.clear()
            self._revision = self.registry.revision
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def v2(self) -> dict[str, Any]:
        module = _module()
        if module is None:
            return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {},
                    "definitions": {}}
        return self._cached(("v2",), lambda: module.openapi_v2(self.registry.all()))

    def v2_protobuf(self) -> bytes:
        from .openapi_proto import encode_document

        return self._cached(("v2", "protobuf"), lambda: encode_document(self.v2()))

    def v3_index(self) -> dict[str, Any]:
        module = _module()
        if module is None:
            return {"paths": {}}
        return self._cached(("v3",), lambda: module.openapi_v3_index(self.registry.all()))

    def v3_document(self, group: str, version: str) -> dict[str, Any] | None:
        module = _module()
        if module is None:
            return None
        return self._cached(("v3", group, version),
                            lambda: module.openapi_v3_document(self.registry.all(), group, version))
