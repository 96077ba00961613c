"""Walk a custom resource and run every x-kubernetes-validations rule at the node that declares it.

``self`` is the value at the node; ``oldSelf`` the stored value at the same place, where one can be
correlated (object properties, and items of list-type=map lists by their keys). Like schema
validation, rules ratchet: an unchanged value is not re-checked.
"""
from __future__ import annotations

import re
from typing import Any

from . import cel_rules
from . import schema_errors as fe
from .schema_node import MISSING, SchemaNode, index_path, join_path, same_json

_FIELD_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[['\"]([^'\"]*)['\"]\]|\[(\d+)\]")


def check_rules(node: SchemaNode, value: Any, old: Any, path: str) -> list[fe.FieldError]:
    """Errors from the rules at and below ``node``; ``old`` is the stored value or MISSING."""
    if value is None or (old is not MISSING and same_json(value, old)):
        return []
    errors = _own_rule_errors(node, value, old, path) if node.rules else []
    if isinstance(value, dict):
        errors += _object_children(node, value, old, path)
    elif isinstance(value, list) and node.items is not None:
        errors += _list_children(node, value, old, path)
    return errors


def _own_rule_errors(node: SchemaNode, value: Any, old: Any, path: str) -> list[fe.FieldError]:
    has_old = old is not MISSING and old is not None
    try:
        self_cel = cel_rules.to_cel(node, value)
        old_cel = cel_rules.to_cel(node, old) if has_old else None
    except Exception as exc:  # a value CEL cannot represent fails the rules instead of the request
        return [fe.invalid(path, node.type or "object", f"value cannot be checked by validation rules: {exc}")]
    errors = []
    for rule in node.rules:
        failure = cel_rules.evaluate(rule, self_cel, old_cel, has_old)
        if failure is None:
            continue
        target_path, target_node = _resolve_field_path(node, path, failure.field_path)
        shown = (target_node.type if target_node is not None else None) or "object"
        errors.append(fe.with_reason(failure.reason, target_path, shown, failure.message))
    return errors


def _resolve_field_path(node: SchemaNode, path: str, field_path: str | None) -> tuple[str, SchemaNode | None]:
    """Turn a rule's relative fieldPath (".a.b", "['c']", "[0]") into a field path and its schema."""
    if not field_path:
        return path, node
    current: SchemaNode | None = node
    for step in _FIELD_PATH_STEP.finditer(field_path):
        name, quoted, index = step.groups()
        if index is not None:
            path, current = index_path(path, index), current.items if current else None
        else:
            key = name if name is not None else quoted
            path, current = join_path(path, key), current.child(key) if current else None
    return path, current


def _object_children(node: SchemaNode, value: dict[str, Any], old: Any, path: str) -> list[fe.FieldError]:
    errors = []
    old_map = old if isinstance(old, dict) else {}
    for key, item in value.items():
        child = node.child(key)
        if child is not None:
            errors += check_rules(child, item, old_map.get(key, MISSING), join_path(path, key))
    return errors


def _list_children(node: SchemaNode, value: list[Any], old: Any, path: str) -> list[fe.FieldError]:
    assert node.items is not None
    old_by_key: dict[Any, Any] = {}
    if node.list_type == "map" and isinstance(old, list):
        old_by_key = {_key(node, item): item for item in old}
    errors = []
    for index, item in enumerate(value):
        old_item = old_by_key.get(_key(node, item), MISSING)
        errors += check_rules(node.items, item, old_item, index_path(path, index))
    return errors


def _key(node: SchemaNode, item: Any) -> Any:
    return tuple(repr(item.get(k)) for k in node.list_map_keys) if isinstance(item, dict) else None
