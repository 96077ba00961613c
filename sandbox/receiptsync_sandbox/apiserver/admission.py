"""The seam to the schema layer (schema.py, written separately): CRD checks and custom object admission.

Until schema.py exists the sandbox admits custom objects unchanged; once it exists, its errors
surface (an import error inside it is not swallowed).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from .errors import ApiError
from .resources import ResourceType


def _schema_module() -> Any:
    name = __package__ + ".schema"
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def _invalid(kind: str, group: str, name: str, errors: list[Any]) -> ApiError:
    body = _schema_module().invalid_status(kind, group, name, errors)
    return ApiError(422, body.get("message", "invalid"), body=body)


def check_crd(crd: dict[str, Any]) -> None:
    schema = _schema_module()
    if schema is None:
        return
    errors = schema.validate_crd(crd)
    if errors:
        raise _invalid("CustomResourceDefinition", "apiextensions.k8s.io", crd["metadata"].get("name", ""), errors)


def compile_type(rt: ResourceType) -> None:
    schema = _schema_module()
    if schema is not None and rt.schema is not None:
        rt.compiled_schema = schema.compile_schema(rt.schema)


def admit_custom(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, *,
                 field_validation: str, subresource: str | None) -> tuple[dict[str, Any], list[str]]:
    """-> (the pruned and defaulted object, warnings); raises the 422 on schema errors."""
    schema = _schema_module()
    if schema is None or rt.compiled_schema is None:
        return obj, []
    admitted, errors, warnings = schema.admit(rt.compiled_schema, obj, old, field_validation=field_validation,
                                              subresource=subresource)
    if errors:
        raise _invalid(rt.kind, rt.group, obj.get("metadata", {}).get("name", ""), errors)
    return admitted, list(warnings)
