"""OpenAPI v3 value validation of a custom resource, worded as kube-apiserver words it.

Validation ratchets, as the apiserver does since 1.30: a value equal to the one already stored is not
validated again, so tightening a CRD never blocks unrelated updates (or status writes) of old objects.
"""
from __future__ import annotations

from typing import Any

from . import schema_errors as fe
from .schema_formats import format_ok
from .schema_node import MISSING, SchemaNode, index_path, join_path, same_json


def validate(node: SchemaNode, value: Any, old: Any, path: str) -> list[fe.FieldError]:
    """Errors of ``value`` under ``node``; ``old`` is the stored value at the same place, or MISSING."""
    if old is not MISSING and same_json(value, old):
        return []
    if value is None:
        return _null_errors(node, path)
    type_error = _type_error(node, value, path)
    if type_error is not None:
        return [type_error]
    errors = _enum_errors(node, value, path)
    if isinstance(value, str):
        errors += _string_errors(node, value, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        errors += _number_errors(node, value, path)
    elif isinstance(value, list):
        errors += _array_errors(node, value, old, path)
    elif isinstance(value, dict):
        errors += _object_errors(node, value, old, path)
    return errors + _combinator_errors(node, value, path)


def _null_errors(node: SchemaNode, path: str) -> list[fe.FieldError]:
    if node.nullable or (node.type is None and not node.int_or_string):
        return []
    expected = "integer,string" if node.int_or_string else node.type
    return [fe.type_invalid(path, "null", f'{path} in body must be of type {expected}: "null"')]


def _has_type(expected: str, value: Any) -> bool:
    if isinstance(value, bool):
        return expected == "boolean"
    if expected == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float))
    if expected == "string":
        return isinstance(value, str)
    if expected == "array":
        return isinstance(value, list)
    if expected == "object":
        return isinstance(value, dict)
    return expected not in ("boolean",)  # other type names are left to CRD validation  # unknown type names are left to CRD validation


def _type_error(node: SchemaNode, value: Any, path: str) -> fe.FieldError | None:
    if node.int_or_string:
        expected, ok = "integer,string", _has_type("integer", value) or isinstance(value, str)
    elif node.type is None:
        return None
    else:
        expected, ok = node.type, _has_type(node.type, value)
    if ok:
        return None
    actual = fe.json_type_name(value)
    return fe.type_invalid(path, actual, f'{path} in body must be of type {expected}: "{actual}"')


def _enum_errors(node: SchemaNode, value: Any, path: str) -> list[fe.FieldError]:
    if node.enum is None or any(same_json(value, allowed) for allowed in node.enum):
        return []
    return [fe.not_supported(path, value, node.enum)]


def _number_text(number: Any) -> str:
    return str(int(number)) if isinstance(number, float) and number.is_integer() else str(number)


def _string_errors(node: SchemaNode, value: str, path: str) -> list[fe.FieldError]:
    errors = []
    raw = node.raw
    if "maxLength" in raw and len(value) > raw["maxLength"]:
        errors.append(fe.too_long(path, raw["maxLength"]))
    if "minLength" in raw and len(value) < raw["minLength"]:
        errors.append(fe.invalid(path, value, f"{path} in body should be at least {raw['minLength']} chars long"))
    if "pattern" in raw and (node.pattern is None or node.pattern.search(value) is None):
        errors.append(fe.invalid(path, value, f"{path} in body should match '{raw['pattern']}'"))
    if node.format and not format_ok(node.format, value):
        errors.append(fe.invalid(path, value, f"{path} in body must be of type {node.format}: {fe.go_value(value)}"))
    return errors


def _number_errors(node: SchemaNode, value: float, path: str) -> list[fe.FieldError]:
    errors = []
    raw = node.raw
    if "minimum" in raw:
        low, exclusive = raw["minimum"], bool(raw.get("exclusiveMinimum"))
        if value < low or (exclusive and value == low):
            words = "greater than" if exclusive else "greater than or equal to"
            errors.append(fe.invalid(path, value, f"{path} in body should be {words} {_number_text(low)}"))
    if "maximum" in raw:
        high, exclusive = raw["maximum"], bool(raw.get("exclusiveMaximum"))
        if value > high or (exclusive and value == high):
            words = "less than" if exclusive else "less than or equal to"
            errors.append(fe.invalid(path, value, f"{path} in body should be {words} {_number_text(high)}"))
    step = raw.get("multipleOf")
    if step and (value / step) != int(value / step):
        errors.append(fe.invalid(path, value, f"{path} in body should be a multiple of {_number_text(step)}"))
    return errors


def _map_key(node: SchemaNode, item: Any) -> Any:
    """Identity of an item of a list-type=map list: its key fields."""
    if not isinstance(item, dict):
        return None
    return tuple(repr(item.get(k)) for k in node.list_map_keys)


def _old_items_by_key(node: SchemaNode, old: Any) -> dict[Any, Any]:
    if node.list_type != "map" or not isinstance(old, list):
        return {}
    return {_map_key(node, item): item for item in old}


def _duplicate_errors(node: SchemaNode, value: list[Any], path: str) -> list[fe.FieldError]:
    errors = []
    seen: list[Any] = []
    for index, item in enumerate(value):
        identity = _map_key(node, item) if node.list_type == "map" else item
        if any(same_json(identity, s) if node.list_type != "map" else identity == s for s in seen):
            shown = {k: item.get(k) for k in node.list_map_keys} if node.list_type == "map" else item
            errors.append(fe.duplicate(index_path(path, index), shown))
        else:
            seen.append(identity)
    return errors


def _array_errors(node: SchemaNode, value: list[Any], old: Any, path: str) -> list[fe.FieldError]:
    errors = []
    raw = node.raw
    if "minItems" in raw and len(value) < raw["minItems"]:
        errors.append(fe.invalid(path, len(value), f"{path} in body should have at least {raw['minItems']} items"))
    if "maxItems" in raw and len(value) > raw["maxItems"]:
        errors.append(fe.too_many(path, len(value), raw["maxItems"]))
    if node.list_type in ("set", "map") or raw.get("uniqueItems"):
        errors += _duplicate_errors(node, value, path)
    if node.items is not None:
        old_by_key = _old_items_by_key(node, old)
        for index, item in enumerate(value):
            old_item = old_by_key.get(_map_key(node, item), MISSING) if old_by_key else MISSING
            errors += validate(node.items, item, old_item, index_path(path, index))
    return errors


def _object_errors(node: SchemaNode, value: dict[str, Any], old: Any, path: str) -> list[fe.FieldError]:
    errors = [fe.required(join_path(path, key)) for key in node.required if key not in value]
    raw = node.raw
    if "maxProperties" in raw and len(value) > raw["maxProperties"]:
        errors.append(fe.too_many(path, len(value), raw["maxProperties"]))
    if "minProperties" in raw and len(value) < raw["minProperties"]:
        errors.append(fe.invalid(path, len(value), f"{path} in body should have at least {raw['minProperties']} properties"))
    old_map = old if isinstance(old, dict) else {}
    for key, item in value.items():
        child = node.child(key)
        if child is not None:
            errors += validate(child, item, old_map.get(key, MISSING), join_path(path, key))
    return errors


def _passes(node: SchemaNode, value: Any, path: str) -> bool:
    return not validate(node, value, MISSING, path)


def _combinator_errors(node: SchemaNode, value: Any, path: str) -> list[fe.FieldError]:
    errors = []
    for sub in node.all_of:
        errors += validate(sub, value, MISSING, path)
    if node.any_of and not any(_passes(sub, value, path) for sub in node.any_of):
        errors.append(fe.invalid(path, value, f"{path} in body must validate at least one schema (anyOf)"))
    if node.one_of and sum(_passes(sub, value, path) for sub in node.one_of) != 1:
        errors.append(fe.invalid(path, value, f"{path} in body must validate one and only one schema (oneOf)"))
    if node.not_ is not None and _passes(node.not_, value, path):
        errors.append(fe.invalid(path, value, f"{path} in body must not validate the schema (not)"))
    return errors
