"""A CRD version's openAPIV3Schema turned once into a tree of nodes ready for admission.

Regular expressions and CEL programs are compiled here, at CRD creation, never per request.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import re2

from . import cel_rules


class _Missing:
    """Marks "no value here" where ``None`` would mean JSON null."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclasses.dataclass
class SchemaNode:
    raw: dict[str, Any]
    type: str | None = None
    format: str | None = None
    nullable: bool = False
    default: Any = MISSING
    enum: list[Any] | None = None
    required: list[str] = dataclasses.field(default_factory=list)
    properties: dict[str, "SchemaNode"] = dataclasses.field(default_factory=dict)
    additional: "SchemaNode | None" = None  # additionalProperties given as a schema
    additional_any: bool = False  # additionalProperties: true
    items: "SchemaNode | None" = None
    preserve_unknown: bool = False
    int_or_string: bool = False
    embedded_resource: bool = False
    pattern: Any = None  # compiled RE2 (Go's regexp dialect, as the apiserver uses)
    pattern_error: str | None = None
    list_type: str | None = None
    list_map_keys: list[str] = dataclasses.field(default_factory=list)
    all_of: list["SchemaNode"] = dataclasses.field(default_factory=list)
    any_of: list["SchemaNode"] = dataclasses.field(default_factory=list)
    one_of: list["SchemaNode"] = dataclasses.field(default_factory=list)
    not_: "SchemaNode | None" = None
    rules: list[cel_rules.CompiledRule] = dataclasses.field(default_factory=list)
    _has_rules: bool | None = dataclasses.field(default=None, repr=False)

    @property
    def is_object(self) -> bool:
        return self.type == "object" or bool(self.properties) or self.additional is not None

    @property
    def has_rules(self) -> bool:
        """Whether this node or anything under it carries x-kubernetes-validations."""
        if self._has_rules is None:
            children = [*self.properties.values(), self.additional, self.items]
            self._has_rules = bool(self.rules) or any(c.has_rules for c in children if c is not None)
        return self._has_rules

    def child(self, key: str) -> "SchemaNode | None":
        """Schema of one key of an object value, or None when the key is not declared."""
        if key in self.properties:
            return self.properties[key]
        return self.additional


def _compile_pattern(text: str) -> tuple[Any, str | None]:
    try:
        return re2.compile(text), None
    except re2.error as exc:  # kube rejects such a CRD; a stored one just cannot match
        return None, str(exc)


def build_node(raw: dict[str, Any]) -> SchemaNode:
    """Compile one schema (and everything under it)."""
    raw = raw or {}
    node = SchemaNode(
        raw=raw,
        type=raw.get("type"),
        format=raw.get("format"),
        nullable=bool(raw.get("nullable", False)),
        default=raw.get("default", MISSING),
        enum=raw.get("enum"),
        required=list(raw.get("required") or []),
        preserve_unknown=bool(raw.get("x-kubernetes-preserve-unknown-fields", False)),
        int_or_string=bool(raw.get("x-kubernetes-int-or-string", False)),
        embedded_resource=bool(raw.get("x-kubernetes-embedded-resource", False)),
        list_type=raw.get("x-kubernetes-list-type"),
        list_map_keys=list(raw.get("x-kubernetes-list-map-keys") or []),
    )
    node.properties = {k: build_node(v) for k, v in (raw.get("properties") or {}).items()}
    additional = raw.get("additionalProperties")
    if isinstance(additional, dict):
        node.additional = build_node(additional)
    node.additional_any = additional is True
    if isinstance(raw.get("items"), dict):
        node.items = build_node(raw["items"])
    if "pattern" in raw:
        node.pattern, node.pattern_error = _compile_pattern(raw["pattern"])
    node.all_of = [build_node(s) for s in raw.get("allOf") or []]
    node.any_of = [build_node(s) for s in raw.get("anyOf") or []]
    node.one_of = [build_node(s) for s in raw.get("oneOf") or []]
    if isinstance(raw.get("not"), dict):
        node.not_ = build_node(raw["not"])
    node.rules = [cel_rules.compile_rule(r) for r in raw.get("x-kubernetes-validations") or []]
    return node


def same_json(a: Any, b: Any) -> bool:
    """Deep equality of JSON values that, unlike ``==``, tells true from 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b  # JSON does not tell 1 from 1.0
    return type(a) is type(b) and a == b


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def index_path(path: str, index: int | str) -> str:
    return f"{path}[{index}]"
