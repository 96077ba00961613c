"""Published OpenAPI definitions of a custom resource kind (and its list kind), as the apiextensions
apiserver builds them from the CRD's structural schema: GVK extension, ObjectMeta by reference,
standard apiVersion/kind descriptions."""
from __future__ import annotations

import copy
from typing import Any

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this "
    "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
_METADATA_DOC = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_V2_UNSUPPORTED = ("nullable", "oneOf", "anyOf", "allOf", "not")


def definition_name(group: str, version: str, kind: str) -> str:
    """receipts.prosaas.pro/v1alpha1 ReceiptSync -> pro.prosaas.receipts.v1alpha1.ReceiptSync."""
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def _ref(name: str, openapi_version: int, description: str) -> dict[str, Any]:
    prefix = "#/components/schemas/" if openapi_version == 3 else "#/definitions/"
    if openapi_version == 3:
        return {"description": description, "allOf": [{"$ref": prefix + name}]}
    return {"description": description, "$ref": prefix + name}


def _gvk(group: str, version: str, kind: str) -> list[dict[str, str]]:
    return [{"group": group, "kind": kind, "version": version}]


def _v2_compatible(schema: Any) -> Any:
    """Swagger 2.0 has no nullable/oneOf/anyOf/not; an int-or-string field has no single type."""
    if isinstance(schema, list):
        return [_v2_compatible(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _v2_compatible(v) if k in ("properties", "items", "additionalProperties") else v
           for k, v in schema.items() if k not in _V2_UNSUPPORTED}
    if "properties" in out:
        out["properties"] = {k: _v2_compatible(v) for k, v in schema["properties"].items()}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def kind_definition(group: str, version: str, kind: str, schema: dict[str, Any] | None, openapi_version: int) -> dict[str, Any]:
    published = copy.deepcopy(schema) if schema else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if openapi_version == 2:
        published = _v2_compatible(published)
    properties = published.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "description": _API_VERSION_DOC}
    properties["kind"] = {"type": "string", "description": _KIND_DOC}
    properties["metadata"] = _ref(OBJECT_META, openapi_version, _METADATA_DOC)
    published["type"] = "object"
    published["x-kubernetes-group-version-kind"] = _gvk(group, version, kind)
    return published


def list_definition(group: str, version: str, kind: str, openapi_version: int) -> dict[str, Any]:
    prefix = "#/components/schemas/" if openapi_version == 3 else "#/definitions/"
    return {
        "description": f"{kind}List is a list of {kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": _API_VERSION_DOC},
            "items": {
                "type": "array",
                "description": f"List of {kind.lower()}s. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
                "items": {"$ref": prefix + definition_name(group, version, kind)},
            },
            "kind": {"type": "string", "description": _KIND_DOC},
            "metadata": _ref(LIST_META, openapi_version, "Standard list metadata."),
        },
        "x-kubernetes-group-version-kind": _gvk(group, version, kind + "List"),
    }
