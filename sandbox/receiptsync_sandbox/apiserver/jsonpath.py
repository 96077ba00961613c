"""The JSONPath subset CRD additionalPrinterColumns use: .a.b, ['a.b'], [n], [*], [?(@.k=="v")]."""
from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-$]+)|\[['"]([^'"]+)['"]\]|\[(\d+|\*)\]|\[\?\(@\.([\w.\-]+)\s*(==|!=)\s*['"]?([^'")]*)['"]?\)\]""")


def find(obj: Any, path: str) -> list[Any]:
    """All values the path selects, in order (an empty list when nothing matches)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    nodes = [obj]
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if not match:
            return []
        pos = match.end()
        nodes = _step(nodes, match.groups())
    return nodes


def _step(nodes: list[Any], groups: tuple) -> list[Any]:
    field, quoted, index, filter_key, op, filter_value = groups
    out = []
    for node in nodes:
        if field is not None or quoted is not None:
            name = field if field is not None else quoted
            if isinstance(node, dict) and name in node:
                out.append(node[name])
        elif index is not None:
            if isinstance(node, list):
                out.extend(node if index == "*" else node[int(index):int(index) + 1])
            elif isinstance(node, dict) and index == "*":
                out.extend(node.values())
        elif filter_key is not None and isinstance(node, list):
            for item in node:
                value = find(item, "." + filter_key)
                hit = bool(value) and str(value[0]) == filter_value
                if hit == (op == "=="):
                    out.append(item)
    return out
