"""Field errors as kube-apiserver words them, and the Status bodies that carry them to clients.

kubectl prints only the Status ``message``, so every error line names its field path first, exactly
like ``k8s.io/apimachinery/pkg/util/validation/field.Error.Error()`` does.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

# Cause types (metav1.CauseType) used below.
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
FORBIDDEN = "FieldValueForbidden"
DUPLICATE = "FieldValueDuplicate"
UNKNOWN = "FieldValueUnknown"  # an undeclared field under fieldValidation=Strict

_MAX_SHOWN_VALUE = 100  # long values are cut in messages, as the apiserver's own errors cut them


@dataclasses.dataclass
class FieldError:
    field: str  # e.g. "spec.fromDate"; "<nil>" when the error is about the whole object
    reason: str  # a metav1.CauseType such as "FieldValueInvalid"
    message: str  # the part after the field, e.g. 'Invalid value: "x": must be ...'

    def line(self) -> str:
        """The error as one line of a Status message: ``<field>: <message>``."""
        if self.reason == UNKNOWN:
            return self.message  # already names the field: unknown field "spec.foo"
        return f"{self.field}: {self.message}" if self.field else self.message


def go_value(value: Any) -> str:
    """Render a value the way Go's field errors print a bad value (%q for strings)."""
    if isinstance(value, str):
        shown = value if len(value) <= _MAX_SHOWN_VALUE else value[:_MAX_SHOWN_VALUE] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[:_MAX_SHOWN_VALUE] + "..."


def json_type_name(value: Any) -> str:
    """The JSON type of a value, as OpenAPI names types in errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _with_detail(head: str, detail: str) -> str:
    return f"{head}: {detail}" if detail else head


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, REQUIRED, _with_detail("Required value", detail))


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, INVALID, _with_detail(f"Invalid value: {go_value(value)}", detail))


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, TYPE_INVALID, _with_detail(f"Invalid value: {go_value(value)}", detail))


def not_supported(path: str, value: Any, allowed: list[Any]) -> FieldError:
    choices = ", ".join(go_value(a) for a in allowed)
    return FieldError(path, NOT_SUPPORTED, f"Unsupported value: {go_value(value)}: supported values: {choices}")


def too_long(path: str, max_length: int) -> FieldError:
    return FieldError(path, TOO_LONG, f"Too long: may not be more than {max_length} bytes")


def too_many(path: str, actual: int, max_items: int) -> FieldError:
    return FieldError(path, TOO_MANY, f"Too many: {actual}: must have at most {max_items} items")


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, FORBIDDEN, _with_detail("Forbidden", detail))


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, DUPLICATE, f"Duplicate value: {go_value(value)}")


def unknown_field(path: str) -> FieldError:
    return FieldError(path, UNKNOWN, f'unknown field "{path}"')


def with_reason(reason: str, path: str, value: Any, detail: str) -> FieldError:
    """An error of a reason chosen by a validation rule's ``reason`` field."""
    if reason == REQUIRED:
        return required(path, detail)
    if reason == FORBIDDEN:
        return forbidden(path, detail)
    if reason == DUPLICATE:
        return FieldError(path, DUPLICATE, _with_detail(f"Duplicate value: {go_value(value)}", detail))
    return invalid(path, value, detail)


def aggregate(errors: list[FieldError]) -> str:
    """errors.ToAggregate().Error(): one line alone, several as ``[a, b]``, duplicates dropped."""
    lines = list(dict.fromkeys(e.line() for e in errors))
    if len(lines) == 1:
        return lines[0]
    return "[" + ", ".join(lines) + "]"


def _qualified_kind(kind: str, group: str) -> str:
    return f"{kind}.{group}" if group else kind


def invalid_status(kind: str, group: str, name: str, errors: list[FieldError]) -> dict[str, Any]:
    """The 422 Status kube-apiserver answers for an object that fails validation (errors.NewInvalid)."""
    message = f"{_qualified_kind(kind, group)} {json.dumps(name)} is invalid"
    if errors:
        message += ": " + aggregate(errors)
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": e.reason, "message": e.message, "field": e.field} for e in errors],
        },
        "code": 422,
    }


def strict_decoding_status(kind: str, version: str, errors: list[FieldError]) -> dict[str, Any]:
    """The 400 Status kube-apiserver answers when fieldValidation=Strict finds unknown fields."""
    unknown = ", ".join(e.message for e in errors)
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {unknown}',
        "reason": "BadRequest",
        "code": 400,
    }
