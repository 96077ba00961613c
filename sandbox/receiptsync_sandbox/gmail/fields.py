"""Google's partial-response ``fields`` selector, e.g. ``id,internalDate,payload(headers,parts)``.

Grammar: a comma list of paths (``a/b/c``), each optionally followed by ``(sub-selection)``;
``*`` selects everything at its level. Lists are filtered element by element. A malformed selector
is a 400 ("Invalid field selection"), as with Google.
"""
from __future__ import annotations

from typing import Any

from .errors import invalid_argument

Selection = dict[str, "Selection | None"]  # key -> nested selection, None = the whole value


def parse_fields(spec: str) -> Selection:
    selection, rest = _parse_list(spec.replace(" ", ""), 0, top=True)
    if rest != len(spec.replace(" ", "")):
        raise invalid_argument(f"Invalid field selection {spec}")
    return selection


def _parse_list(spec: str, index: int, top: bool) -> tuple[Selection, int]:
    selection: Selection = {}
    while True:
        index = _parse_item(spec, index, selection)
        if index < len(spec) and spec[index] == ",":
            index += 1
            continue
        if index < len(spec) and spec[index] == ")" and not top:
            return selection, index
        if index == len(spec):
            if not top:
                raise invalid_argument(f"Invalid field selection {spec}")
            return selection, index
        raise invalid_argument(f"Invalid field selection {spec}")


def _parse_item(spec: str, index: int, into: Selection) -> int:
    start = index
    while index < len(spec) and spec[index] not in ",()":
        index += 1
    path = [name for name in spec[start:index].split("/")]
    if not path or any(not name for name in path):
        raise invalid_argument(f"Invalid field selection {spec}")
    nested: Selection | None = None
    if index < len(spec) and spec[index] == "(":
        nested, index = _parse_list(spec, index + 1, top=False)
        index += 1  # the ")"
    _merge_path(into, path, nested)
    return index


def _merge_path(into: Selection, path: list[str], nested: Selection | None) -> None:
    for name in path[:-1]:
        existing = into.get(name, {})
        if existing is None:  # already selected whole
            return
        into[name] = existing
        into = existing
    last = path[-1]
    if last in into and (into[last] is None or nested is None):
        into[last] = None
    elif last in into:
        into[last].update(nested)  # type: ignore[union-attr]
    else:
        into[last] = nested


def apply_fields(value: Any, selection: Selection | None) -> Any:
    if selection is None or "*" in selection and len(selection) == 1 and selection["*"] is None:
        return value
    if isinstance(value, list):
        return [apply_fields(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    if "*" in selection:
        return {key: apply_fields(item, selection.get(key, selection["*"])) for key, item in value.items()}
    return {key: apply_fields(value[key], nested) for key, nested in selection.items() if key in value}
