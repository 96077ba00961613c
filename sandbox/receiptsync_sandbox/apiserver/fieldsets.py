"""Server-side apply bookkeeping: which fields one field manager applied (as managedFields FieldsV1).

A field path is a tuple of FieldsV1 keys: "f:<field>" for a map key, 'k:{"name":"x"}' for a
list element picked by its merge key. Only `Apply` managers are tracked; that is enough for
"a field you stop applying is removed unless another applier still owns it".
"""
from __future__ import annotations

import json
from typing import Any

from .patches import merge_key_for

Path = tuple[str, ...]
_IDENTITY = {("f:apiVersion",), ("f:kind",), ("f:metadata",), ("f:metadata", "f:name"),
             ("f:metadata", "f:namespace")}


def applied_paths(config: dict[str, Any], *, atomic_lists: bool) -> set[Path]:
    paths: set[Path] = set()
    _walk(config, (), (), paths, atomic_lists)
    return paths - _IDENTITY


def _walk(node: Any, path: Path, names: tuple[str, ...], out: set[Path], atomic_lists: bool) -> None:
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        here = path + (f"f:{key}",)
        out.add(here)
        if isinstance(value, dict):
            _walk(value, here, names + (key,), out, atomic_lists)
        elif isinstance(value, list) and not atomic_lists:
            merge_key = merge_key_for(names, key)
            for item in value:
                if merge_key and isinstance(item, dict) and merge_key in item:
                    element = here + ("k:" + json.dumps({merge_key: item[merge_key]}, separators=(",", ":")),)
                    out.add(element)
                    _walk(item, element, names + (key,), out, atomic_lists)


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def from_fields_v1(tree: dict[str, Any]) -> set[Path]:
    return _tree_paths(tree, ()) - _IDENTITY


def _tree_paths(tree: dict[str, Any], prefix: Path) -> set[Path]:
    paths: set[Path] = set()
    for part, sub in (tree or {}).items():
        if part == ".":
            continue
        here = prefix + (part,)
        paths.add(here)
        paths |= _tree_paths(sub, here)
    return paths


def remove_paths(obj: dict[str, Any], paths: set[Path]) -> None:
    """Remove fields deepest first. A map, a keyed list or a list element goes only once nothing is
    left in it, so whatever another writer put inside survives."""
    # Resolve every target before changing anything: removing an element's merge key would
    # otherwise make the element unfindable for its remaining fields.
    targets = []
    for path in sorted(paths, key=len, reverse=True):
        parent = _resolve(obj, path[:-1])
        last = path[-1]
        if last.startswith("f:") and isinstance(parent, dict) and last[2:] in parent:
            targets.append((path, parent, last[2:]))
        elif last.startswith("k:") and isinstance(parent, list):
            item = _element(parent, last)
            if item is not None:
                targets.append((path, parent, item))
    for path, parent, ref in targets:
        if isinstance(ref, str):
            if ref not in parent:
                continue
            value = parent[ref]
            container = isinstance(value, dict) or (isinstance(value, list) and any(p[:-1] == path for p in paths))
            if not container or not value:
                del parent[ref]
        else:
            (merge_key, _), = json.loads(path[-1][2:]).items()
            if not [k for k in ref if k != merge_key]:
                parent[:] = [i for i in parent if i is not ref]


def _element(items: list[Any], part: str) -> Any:
    (key, val), = json.loads(part[2:]).items()
    return next((i for i in items if isinstance(i, dict) and i.get(key) == val), None)


def _resolve(obj: Any, path: Path) -> Any:
    node = obj
    for part in path:
        if part.startswith("f:") and isinstance(node, dict):
            node = node.get(part[2:])
        elif part.startswith("k:") and isinstance(node, list):
            node = _element(node, part)
        else:
            return None
        if node is None:
            return None
    return node
