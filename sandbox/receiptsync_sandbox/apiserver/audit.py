"""Who called what: counts of (user, verb, apiGroup, resource, subresource, namespace), so tests can
compare an operator's real calls with the RBAC Role it ships."""
from __future__ import annotations

import collections
from typing import Any

AuditKey = tuple[str, str, str, str, str, str]


class Audit:
    def __init__(self) -> None:
        self._counts: collections.Counter[AuditKey] = collections.Counter()

    def record(self, user: str, verb: str, group: str, resource: str, subresource: str | None,
               namespace: str | None) -> None:
        self._counts[(user, verb, group, resource, subresource or "", namespace or "")] += 1

    def entries(self, user: str | None = None) -> list[dict[str, Any]]:
        return [
            {"user": u, "verb": v, "apiGroup": g, "resource": r, "subresource": s, "namespace": n, "count": c}
            for (u, v, g, r, s, n), c in sorted(self._counts.items())
            if user is None or u == user
        ]

    def clear(self) -> None:
        self._counts.clear()


def verb_of(method: str, has_name: bool, watch: bool) -> str:
    """The RBAC verb kube-apiserver's request-info resolver assigns."""
    if watch:
        return "watch"
    return {
        "GET": "get" if has_name else "list",
        "HEAD": "get" if has_name else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if has_name else "deletecollection",
    }.get(method, method.lower())
