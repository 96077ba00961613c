"""Custom resource admission against a CRD's structural schema, the way kube-apiserver does it:
prune undeclared fields, apply defaults, validate (OpenAPI keywords, then CEL rules), and word every
problem as the apiserver words it. The HTTP layer calls only what this module exports.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from . import schema_errors as fe
from .schema_cel import check_rules
from .schema_crd import default_crd, validate_crd
from .schema_default import apply_defaults
from .schema_errors import FieldError, invalid_status, strict_decoding_status
from .schema_node import MISSING, SchemaNode, build_node
from .schema_prune import prune_resource
from .schema_validate import validate

__all__ = [
    "CompiledSchema", "FieldError", "admit", "compile_schema", "default_crd", "invalid_status",
    "strict_decoding_status", "validate_crd",
]

# Errors that make CEL evaluation meaningless (apiextensions-apiserver's "blocking" errors).
_BLOCKING_REASONS = (fe.TYPE_INVALID, fe.NOT_SUPPORTED)
_NOT_ALL_RULES_CHECKED = FieldError(
    "<nil>", fe.INVALID,
    'Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation",
)


@dataclasses.dataclass
class CompiledSchema:
    root: SchemaNode
    raw: dict[str, Any]


def compile_schema(openapi_v3_schema: dict[str, Any]) -> CompiledSchema:
    """Compile once per CRD version; regexes and CEL programs are built here."""
    return CompiledSchema(root=build_node(openapi_v3_schema or {"type": "object"}), raw=openapi_v3_schema)


def admit(
    compiled: CompiledSchema,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    *,
    field_validation: str = "Strict",
    subresource: str | None = None,
) -> tuple[dict[str, Any], list[FieldError], list[str]]:
    """Return (object to store, errors, warnings) for a create (old None) or an update."""
    new = copy.deepcopy(obj)
    dropped = prune_resource(compiled.root, new)
    apply_defaults(compiled.root, new)
    errors, warnings = _unknown_field_outcome(dropped, field_validation)
    stored = _stored(compiled, old)
    errors += _validation_errors(compiled.root, new, stored, subresource)
    return new, errors, warnings


def _stored(compiled: CompiledSchema, old: dict[str, Any] | None) -> Any:
    """The old object as the apiserver reads it back: with defaults applied."""
    if old is None:
        return MISSING
    stored = copy.deepcopy(old)
    apply_defaults(compiled.root, stored)
    return stored


def _unknown_field_outcome(dropped: list[str], field_validation: str) -> tuple[list[FieldError], list[str]]:
    mode = (field_validation or "Strict").capitalize()
    if mode == "Ignore" or not dropped:
        return [], []
    if mode == "Warn":
        return [], [f'unknown field "{path}"' for path in dropped]
    return [fe.unknown_field(path) for path in dropped], []


def _scopes(root: SchemaNode, new: dict[str, Any], stored: Any, subresource: str | None):
    """(path, node, value, old) to validate: the whole object, or only status for /status writes."""
    if subresource != "status":
        return [("", root, new, stored)]
    node = root.child("status")
    if node is None or "status" not in new:
        return []
    old_status = stored.get("status", MISSING) if isinstance(stored, dict) else MISSING
    return [("status", node, new["status"], old_status)]


def _validation_errors(root: SchemaNode, new: dict[str, Any], stored: Any, subresource: str | None) -> list[FieldError]:
    scopes = _scopes(root, new, stored, subresource)
    errors: list[FieldError] = []
    for path, node, value, old in scopes:
        errors += validate(node, value, old, path)
    if any(e.reason in _BLOCKING_REASONS for e in errors):
        rules_skipped = any(node.has_rules for _, node, _, _ in scopes)
        return errors + [_NOT_ALL_RULES_CHECKED] if rules_skipped else errors
    for path, node, value, old in scopes:
        errors += check_rules(node, value, old, path)
    return errors
