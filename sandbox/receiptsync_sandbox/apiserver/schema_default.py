"""Structural defaulting, as kube-apiserver applies a CRD schema's ``default``s.

A default fills a missing property (or a null one that is not nullable) of an object that exists;
objects that are absent are not created unless they themselves have a default. A null that is not
nullable and has no default is dropped.
"""
from __future__ import annotations

import copy
from typing import Any

from .schema_node import MISSING, SchemaNode


def apply_defaults(node: SchemaNode, value: Any) -> None:
    """Default ``value`` (validated against ``node``) in place."""
    if isinstance(value, dict):
        _default_object(node, value)
    elif isinstance(value, list) and node.items is not None:
        for item in value:
            apply_defaults(node.items, item)


def _default_object(node: SchemaNode, value: dict[str, Any]) -> None:
    for key, prop in node.properties.items():
        if prop.default is MISSING:
            continue
        if key not in value or (value[key] is None and not prop.nullable):
            value[key] = copy.deepcopy(prop.default)
    for key in [k for k, v in value.items() if v is None]:
        prop = node.child(key)
        if prop is not None and not prop.nullable:
            del value[key]
    for key, item in value.items():
        prop = node.child(key)
        if prop is not None:
            apply_defaults(prop, item)
