"""Pruning: fields a structural schema does not declare are dropped, as kube-apiserver drops them.

The paths of what was dropped are returned so the caller can turn them into errors
(fieldValidation=Strict), warnings (Warn) or nothing (Ignore).
"""
from __future__ import annotations

from typing import Any

from .schema_node import SchemaNode, index_path, join_path

# metav1.ObjectMeta's fields: the apiserver keeps exactly these under a resource's metadata.
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
})
_RESOURCE_FIELDS = ("apiVersion", "kind", "metadata")


def prune_resource(root: SchemaNode, obj: dict[str, Any]) -> list[str]:
    """Prune a whole custom resource in place; returns the dropped field paths."""
    dropped: list[str] = []
    _prune_object(root, obj, "", dropped, is_resource=True)
    return dropped


def prune_value(node: SchemaNode, value: Any, path: str) -> list[str]:
    """Prune any value in place against its schema; returns the dropped field paths."""
    dropped: list[str] = []
    _prune(node, value, path, dropped)
    return dropped


def _prune_metadata(metadata: Any, path: str, dropped: list[str]) -> None:
    if not isinstance(metadata, dict):
        return
    for key in [k for k in metadata if k not in OBJECT_META_FIELDS]:
        del metadata[key]
        dropped.append(join_path(path, key))


def _prune_object(node: SchemaNode, value: dict[str, Any], path: str, dropped: list[str], is_resource: bool) -> None:
    for key in list(value):
        child_path = join_path(path, key)
        if is_resource and key in _RESOURCE_FIELDS:
            if key == "metadata":  # always ObjectMeta, whatever the schema says about it
                _prune_metadata(value[key], child_path, dropped)
            continue
        child = node.child(key)
        if child is not None:
            _prune(child, value[key], child_path, dropped)
        elif not (node.preserve_unknown or node.additional_any):
            del value[key]
            dropped.append(child_path)


def _prune(node: SchemaNode, value: Any, path: str, dropped: list[str]) -> None:
    if isinstance(value, dict) and (node.is_object or node.preserve_unknown):
        _prune_object(node, value, path, dropped, is_resource=node.embedded_resource)
    elif isinstance(value, list) and node.items is not None:
        for index, item in enumerate(value):
            _prune(node.items, item, index_path(path, index), dropped)
