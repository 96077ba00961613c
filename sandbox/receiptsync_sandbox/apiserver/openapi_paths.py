"""REST paths and operations of each resource, as kube-apiserver publishes them.

kubectl relies on two details: every PATCH operation carries ``x-kubernetes-group-version-kind`` and
its own ``fieldValidation`` query parameter (that is how it detects server-side field validation),
and the PATCH request body lists the patch types the kind accepts (strategic merge only for
built-ins: kubectl picks its patch type from that list).
"""
from __future__ import annotations

from typing import Any, Callable

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_PATCH_TYPES_CUSTOM = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
_PATCH_TYPES_BUILTIN = _PATCH_TYPES_CUSTOM[:2] + ["application/strategic-merge-patch+json", "application/apply-patch+yaml"]
_RESPONSE_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]

# (name, type, description) of the query parameters, by the operation that takes them.
_QUERY = {
    "allowWatchBookmarks": ("boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
    "continue": ("string", "The continue option should be set when retrieving more results from the server."),
    "fieldSelector": ("string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
    "labelSelector": ("string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    "limit": ("integer", "limit is a maximum number of responses to return for a list call."),
    "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call."),
    "watch": ("boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    "dryRun": ("string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
    "fieldManager": ("string", "fieldManager is a name associated with the actor or entity that is making these changes."),
    "fieldValidation": ("string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict"),
    "force": ("boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people."),
    "gracePeriodSeconds": ("integer", "The duration in seconds before the object should be deleted."),
    "orphanDependents": ("boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7."),
    "propagationPolicy": ("string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
    "pretty": ("string", "If 'true', then the output is pretty printed."),
    "container": ("string", "The container for which to stream logs."),
    "follow": ("boolean", "Follow the log stream of the pod."),
    "previous": ("boolean", "Return previous terminated container logs."),
    "sinceSeconds": ("integer", "A relative time in seconds before the current time from which to show logs."),
    "tailLines": ("integer", "If set, the number of lines from the end of the logs to show."),
    "timestamps": ("boolean", "If true, add an RFC3339 timestamp at the beginning of every line of log output."),
}
_LIST_PARAMS = ["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
                "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch"]
_WRITE_PARAMS = ["dryRun", "fieldManager", "fieldValidation"]
_DELETE_PARAMS = ["dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy"]
_LOG_PARAMS = ["container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines", "timestamps"]
_QUERY["limitBytes"] = ("integer", "If set, the number of bytes to read from the server before terminating the log output.")


class _Style:
    """The differences between Swagger 2.0 and OpenAPI 3.0 that paths care about."""

    def __init__(self, version: int):
        self.version = version
        self.prefix = "#/components/schemas/" if version == 3 else "#/definitions/"

    def param(self, name: str, where: str = "query", required: bool = False) -> dict[str, Any]:
        kind, description = _QUERY.get(name, ("string", name))
        out: dict[str, Any] = {"name": name, "in": where, "description": description}
        if required:
            out["required"] = True
        if self.version == 3:
            out["schema"] = {"type": kind, "uniqueItems": True}
        else:
            out.update({"type": kind, "uniqueItems": True})
        return out

    def path_param(self, name: str, description: str) -> dict[str, Any]:
        out = self.param(name, "path", required=True)
        out["description"] = description
        return out

    def body(self, definition: str, content_types: list[str]) -> dict[str, Any]:
        """How an operation takes its request body (v3: requestBody; v2: a body parameter)."""
        schema = {"$ref": self.prefix + definition}
        if self.version == 3:
            return {"requestBody": {"content": {t: {"schema": schema} for t in content_types}, "required": True}}
        return {"consumes": content_types, "body": {"name": "body", "in": "body", "required": True, "schema": schema}}

    def responses(self, definition: str | None, codes: tuple[str, ...]) -> dict[str, Any]:
        schema = {"$ref": self.prefix + definition} if definition else {"type": "string"}
        out: dict[str, Any] = {}
        for code in codes:
            if self.version == 3:
                out[code] = {"description": "OK", "content": {t: {"schema": schema} for t in _RESPONSE_TYPES}}
            else:
                out[code] = {"description": "OK", "schema": schema}
        out["401"] = {"description": "Unauthorized"}
        return out


def _camel(text: str) -> str:
    parts = [p for p in text.replace("-", ".").split(".") if p]
    return "".join(p[:1].upper() + p[1:] for p in parts)


def _operation(style: _Style, rt: Any, action: str, verb: str, kind_def: str, *, params: list[str],
               body: tuple[str, list[str]] | None = None, response: str | None = None,
               codes: tuple[str, ...] = ("200",), scope: str = "", sub: str = "") -> dict[str, Any]:
    group_part = _camel(rt.group.split(".")[0]) if rt.group else "Core"
    op: dict[str, Any] = {
        "tags": [f"{group_part.lower()}_{rt.version}"],
        "description": f"{verb} {rt.kind}",
        "operationId": f"{verb}{group_part}{_camel(rt.version)}{scope}{rt.kind}{sub}",
        "parameters": [style.param(p) for p in params],
        "responses": style.responses(response if response is not None else kind_def, codes),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "kind": rt.kind, "version": rt.version},
    }
    if body is not None:
        extra = style.body(*body)
        if style.version == 3:
            op.update(extra)
        else:
            op["consumes"] = extra["consumes"]
            op["parameters"].insert(0, extra["body"])
    if style.version == 2:
        op["produces"] = _RESPONSE_TYPES
        op["schemes"] = ["https"]
    return op


def _item_ops(style: _Style, rt: Any, kind_def: str, scope: str, sub: str = "") -> dict[str, Any]:
    patch_types = _PATCH_TYPES_CUSTOM if rt.crd_name else _PATCH_TYPES_BUILTIN
    ops: dict[str, Any] = {}
    if "get" in rt.verbs or sub:
        ops["get"] = _operation(style, rt, "get", "read", kind_def, params=[], scope=scope, sub=sub)
    if "update" in rt.verbs:
        ops["put"] = _operation(style, rt, "put", "replace", kind_def, params=_WRITE_PARAMS,
                                body=(kind_def, ["*/*"]), codes=("200", "201"), scope=scope, sub=sub)
    if "patch" in rt.verbs:
        ops["patch"] = _operation(style, rt, "patch", "patch", kind_def, params=_WRITE_PARAMS + ["force"],
                                  body=(META + "Patch", patch_types), codes=("200", "201"), scope=scope, sub=sub)
    if "delete" in rt.verbs and not sub:
        ops["delete"] = _operation(style, rt, "delete", "delete", kind_def, params=_DELETE_PARAMS,
                                   body=(META + "DeleteOptions", ["*/*"]), response=META + "Status",
                                   codes=("200", "202"), scope=scope)
    return ops


def _collection_ops(style: _Style, rt: Any, kind_def: str, list_def: str, scope: str) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    if "list" in rt.verbs:
        ops["get"] = _operation(style, rt, "list", "list", kind_def, params=_LIST_PARAMS, response=list_def, scope=scope)
    if "create" in rt.verbs:
        ops["post"] = _operation(style, rt, "post", "create", kind_def, params=_WRITE_PARAMS,
                                 body=(kind_def, ["*/*"]), codes=("200", "201", "202"), scope=scope)
    if "deletecollection" in rt.verbs:
        ops["delete"] = _operation(style, rt, "deletecollection", "deletecollection", kind_def,
                                   params=_LIST_PARAMS + _DELETE_PARAMS, body=(META + "DeleteOptions", ["*/*"]),
                                   response=META + "Status", scope=scope)
    return ops


def _with_path_params(style: _Style, ops: dict[str, Any], namespaced: bool, named: bool, kind: str) -> dict[str, Any]:
    params = []
    if named:
        params.append(style.path_param("name", f"name of the {kind}"))
    if namespaced:
        params.append(style.path_param("namespace", "object name and auth scope, such as for teams and projects"))
    params.append(style.param("pretty"))
    return {**ops, "parameters": params}


def resource_paths(rt: Any, kind_def: str, list_def: str, version: int) -> dict[str, dict[str, Any]]:
    """Every path of one resource type, with its operations."""
    style = _Style(version)
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    scope = "Namespaced" if rt.namespaced else ""
    collection = f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    item = collection + "/{name}"
    add: Callable[[dict[str, Any], bool], dict[str, Any]] = (
        lambda ops, named: _with_path_params(style, ops, rt.namespaced, named, rt.kind)
    )
    paths = {
        collection: add(_collection_ops(style, rt, kind_def, list_def, scope), False),
        item: add(_item_ops(style, rt, kind_def, scope), True),
    }
    if rt.namespaced and "list" in rt.verbs:
        every = _operation(style, rt, "list", "list", kind_def, params=_LIST_PARAMS, response=list_def,
                           sub="ForAllNamespaces")
        paths[f"{base}/{rt.plural}"] = {"get": every, "parameters": [style.param("pretty")]}
    for sub in rt.subresources:
        paths[f"{item}/{sub}"] = add(_subresource_ops(style, rt, kind_def, scope, sub), True)
    return {path: ops for path, ops in paths.items() if set(ops) - {"parameters"}}


def _subresource_ops(style: _Style, rt: Any, kind_def: str, scope: str, sub: str) -> dict[str, Any]:
    suffix = _camel(sub)
    if sub == "log":
        return {"get": _operation(style, rt, "get", "read", kind_def, params=_LOG_PARAMS, response="",
                                  scope=scope, sub=suffix)}
    if sub == "binding":  # POST a core/v1 Binding (kube-apiserver's createCoreV1NamespacedPodBinding)
        binding_def = "io.k8s.api.core.v1.Binding"
        op = _operation(style, rt, "post", "create", binding_def, params=_WRITE_PARAMS,
                        body=(binding_def, ["*/*"]), codes=("200", "201", "202"), scope=scope, sub=suffix)
        op["x-kubernetes-group-version-kind"] = {"group": "", "kind": "Binding", "version": "v1"}
        return {"post": op}
    if sub == "scale":
        scale_def = "io.k8s.api.autoscaling.v1.Scale"
        ops = _item_ops(style, rt, scale_def, scope, suffix)
        for op in ops.values():
            op["x-kubernetes-group-version-kind"] = {"group": "autoscaling", "kind": "Scale", "version": "v1"}
        return ops
    return _item_ops(style, rt, kind_def, scope, suffix)
