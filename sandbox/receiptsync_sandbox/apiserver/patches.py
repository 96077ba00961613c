"""The four PATCH content types, applied to a plain object (pure; no storage, no HTTP).

Strategic merge knows the merge keys of the built-in list fields our manifests use; custom resources
never get strategic merge (kube-apiserver answers 415), and for them every list is atomic.
"""
from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from .errors import ApiError

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"
PATCH_TYPES = (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

# Field name -> merge key, for lists of objects merged element-wise (as the Go types' patchMergeKey).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of scalars merged as sets (patchStrategy "merge" on a []string).
_PRIMITIVE_MERGE = {"finalizers"}


def merge_key_for(path: tuple[str, ...], field: str) -> str | None:
    if field == "ports":
        # Container ports merge on containerPort; Service ports on port.
        return "containerPort" if any(p in ("containers", "initContainers") for p in path) else "port"
    return _MERGE_KEYS.get(field)


# --- JSON merge patch (RFC 7386) -----------------------------------------------------------------
def merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- JSON patch (RFC 6902) -----------------------------------------------------------------------
def json_patch(original: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise ApiError(400, "json patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(original, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, TypeError) as exc:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}") from exc


# --- strategic merge patch -----------------------------------------------------------------------
def strategic_merge(original: Any, patch: Any, path: tuple[str, ...] = (), *, atomic_lists: bool = False) -> Any:
    if not isinstance(patch, dict):
        return _strip_directives(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
        elif value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = strategic_merge(result.get(key), value, path + (key,), atomic_lists=atomic_lists)
        elif isinstance(value, list) and not atomic_lists:
            result[key] = _merge_list(result.get(key), value, path, key)
        else:
            result[key] = _strip_directives(value)
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, merge_key_for(path, field))
    return result


def _merge_list(original: Any, patch: list[Any], path: tuple[str, ...], field: str) -> list[Any]:
    original = original if isinstance(original, list) else []
    merge_key = merge_key_for(path, field)
    if field in _PRIMITIVE_MERGE:
        return original + [v for v in patch if v not in original]
    if not merge_key or not all(isinstance(item, dict) for item in patch):
        return _strip_directives(patch)
    if any(item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(item) for item in patch if item.get("$patch") != "replace"]
    result = copy.deepcopy(original)
    for item in patch:
        index = _find(result, merge_key, item.get(merge_key))
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge(result[index], item, path + (field,))
    return result


def _find(items: list[Any], merge_key: str, value: Any) -> int | None:
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get(merge_key) == value:
            return index
    return None


def _reorder(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    def position(item: Any) -> int:
        probe = item.get(merge_key) if merge_key and isinstance(item, dict) else item
        for index, entry in enumerate(order):
            wanted = entry.get(merge_key) if merge_key and isinstance(entry, dict) else entry
            if wanted == probe:
                return index
        return len(order)

    return sorted(items, key=position)


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)


def parse_body(content_type: str, raw: bytes) -> Any:
    """Decode a request body: JSON, or YAML for apply patches (JSON is valid YAML)."""
    if not raw:
        return None
    if content_type.startswith("application/apply-patch") or content_type.endswith("yaml"):
        import yaml

        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ApiError(400, f"error decoding YAML: {exc}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"error decoding JSON: {exc}") from exc
