"""Label and field selectors: parse the query-string forms once, then match objects (pure)."""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

from .errors import bad_request

Matcher = Callable[[dict[str, Any]], bool]


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return value != self.values[0]  # absent keys match "!=", as in Kubernetes
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return value not in self.values
        raise AssertionError(self.op)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a `(...)` value set."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")
_EQ_RE = re.compile(r"^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    requirements = []
    for part in _split_top_level(text or ""):
        if match := _SET_RE.match(part):
            key, op, values = match.groups()
            requirements.append(Requirement(key, op, tuple(v.strip() for v in values.split(",") if v.strip())))
        elif match := _EQ_RE.match(part):
            key, op, value = match.groups()
            requirements.append(Requirement(key, "=" if op in ("=", "==") else "!=", (value,)))
        elif part.startswith("!") and re.fullmatch(r"![^\s=!(),]+", part):
            requirements.append(Requirement(part[1:], "!exists"))
        elif re.fullmatch(r"[^\s=!(),]+", part):
            requirements.append(Requirement(part, "exists"))
        else:
            raise bad_request(f"unable to parse requirement: {part!r}")
    return requirements


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def match_label_selector_object(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Match a structured LabelSelector ({matchLabels, matchExpressions}) as in Job/Deployment specs."""
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}[expr["operator"]]
        if not Requirement(expr["key"], op, tuple(expr.get("values") or ())).matches(labels):
            return False
    return True


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    """-> (dotted path, "=" | "!=", value) triples."""
    terms = []
    for part in _split_top_level(text or ""):
        match = _EQ_RE.match(part)
        if not match:
            raise bad_request(f"invalid field selector: {part!r}")
        path, op, value = match.groups()
        terms.append((path, "=" if op in ("=", "==") else "!=", value))
    return terms


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string form the real server compares: missing fields are "", booleans lowercase."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def fields_match(terms: list[tuple[str, str, str]], obj: dict[str, Any]) -> bool:
    for path, op, value in terms:
        actual = field_value(obj, path)
        if (actual == value) != (op == "="):
            return False
    return True


def make_matcher(label_selector: str | None, field_selector: str | None) -> Matcher:
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    return lambda obj: labels_match(labels, obj) and fields_match(fields, obj)
