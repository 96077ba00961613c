"""Schemas of the built-in kinds, taken from the Kubernetes JSON schemas that ship inside the
kubernetes-validate package (generated from kube-apiserver's own OpenAPI, including the
x-kubernetes-patch-* and x-kubernetes-group-version-kind extensions kubectl reads), and turned back
into OpenAPI form: one type per schema, ``$ref``s pointing at OpenAPI components/definitions.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

KUBE_SCHEMA_VERSION = "v1.33.0"  # the version kubectl 1.33 and this sandbox's /version speak
_JSON_SCHEMA_REF = "#/$defs/"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
# Where the JSON schemas spell a union with oneOf, OpenAPI has always used a string with a format.
_SCALAR_UNIONS = {
    _INT_OR_STRING: {"type": "string", "format": "int-or-string"},
    _QUANTITY: {"type": "string"},
}


@functools.lru_cache(maxsize=1)
def json_schema_definitions() -> dict[str, Any]:
    """The raw ``$defs`` of kubernetes-validate's schemas for KUBE_SCHEMA_VERSION."""
    package = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = package / f"{KUBE_SCHEMA_VERSION}-local" / "_definitions.json"
    return json.loads(path.read_text())["$defs"]


def _single_type(value: Any) -> Any:
    """JSON schema allows ["string", "null"]; OpenAPI wants one type name."""
    if isinstance(value, list):
        named = [t for t in value if t != "null"]
        return named[0] if named else None
    return value


def _convert(schema: Any, ref_prefix: str, wrap_refs: bool) -> Any:
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            single = _single_type(value)
            if single:
                out["type"] = single
        elif key == "$ref":
            out["$ref"] = ref_prefix + value[len(_JSON_SCHEMA_REF):]
        elif key == "properties":
            out[key] = {k: _convert(v, ref_prefix, wrap_refs) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _convert(value, ref_prefix, wrap_refs)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(v, ref_prefix, wrap_refs) for v in value]
        elif key not in ("$schema", "$id"):
            out[key] = value
    if wrap_refs and "$ref" in out and len(out) > 1:
        # OpenAPI 3.0 ignores siblings of $ref, so the apiserver wraps it (as kubectl explain expects).
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    return out


def _drop_identity_enums(definition: dict[str, Any]) -> dict[str, Any]:
    """The JSON schemas pin apiVersion/kind to one value; OpenAPI leaves them free."""
    for key in ("apiVersion", "kind"):
        prop = definition.get("properties", {}).get(key)
        if isinstance(prop, dict):
            prop.pop("enum", None)
    return definition


def _openapi_definition(name: str, raw: dict[str, Any], ref_prefix: str, wrap_refs: bool) -> dict[str, Any]:
    if name in _SCALAR_UNIONS:
        return {"description": raw.get("description", ""), **_SCALAR_UNIONS[name]}
    return _drop_identity_enums(_convert(raw, ref_prefix, wrap_refs))


@functools.lru_cache(maxsize=2)
def _all_definitions(version: int) -> dict[str, dict[str, Any]]:
    ref_prefix, wrap = ("#/components/schemas/", True) if version == 3 else ("#/definitions/", False)
    return {name: _openapi_definition(name, raw, ref_prefix, wrap) for name, raw in json_schema_definitions().items()}


def definitions_v2() -> dict[str, dict[str, Any]]:
    """Every built-in definition in Swagger 2.0 form (refs to #/definitions/...). Do not mutate."""
    return _all_definitions(2)


def definitions_v3() -> dict[str, dict[str, Any]]:
    """Every built-in definition in OpenAPI 3.0 form (refs to #/components/schemas/...). Do not mutate."""
    return _all_definitions(3)


@functools.lru_cache(maxsize=1)
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, raw in json_schema_definitions().items():
        gvks = raw.get("x-kubernetes-group-version-kind") or []
        if len(gvks) == 1:  # several means a shared options type (DeleteOptions, WatchEvent)
            gvk = gvks[0]
            index[(gvk.get("group", ""), gvk["version"], gvk["kind"])] = name
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition name of a built-in kind, e.g. ("apps", "v1", "Deployment") -> io.k8s.api.apps.v1.Deployment."""
    return _gvk_index().get((group, version, kind))


def references(definition: Any) -> set[str]:
    """Names of the definitions one definition refers to directly."""
    found: set[str] = set()
    stack = [definition]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.add(ref.rsplit("/", 1)[-1])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def closure(names: set[str], definitions: dict[str, dict[str, Any]]) -> set[str]:
    """``names`` and every definition reachable from them."""
    seen: set[str] = set()
    pending = [n for n in names if n in definitions]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(r for r in references(definitions[name]) if r in definitions and r not in seen)
    return seen
