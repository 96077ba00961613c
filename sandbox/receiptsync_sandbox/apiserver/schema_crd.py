"""Is a CustomResourceDefinition acceptable? The checks kube-apiserver makes that this sandbox needs:
names, versions, one storage version, structural schemas, printer columns, and rules that compile."""
from __future__ import annotations

import copy
import re
from typing import Any, Iterator

import re2

from . import cel_rules
from . import schema_errors as fe
from .schema_default import apply_defaults
from .schema_node import MISSING, SchemaNode, build_node
from .schema_prune import prune_value
from .schema_validate import validate

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_TYPES = ("object", "array", "string", "integer", "number", "boolean")
_COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")
_ROOT_META_FIELDS = {"name", "generateName"}


def default_crd(crd: dict[str, Any]) -> dict[str, Any]:
    """The defaults the apiserver fills into a CRD (names.singular/listKind, conversion)."""
    crd = copy.deepcopy(crd)
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec.get("versions") or []:
        if isinstance(version, dict):
            version.setdefault("served", True)
            version.setdefault("storage", False)
    return crd


def validate_crd(crd: dict[str, Any]) -> list[fe.FieldError]:
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [fe.required("spec")]
    errors = _group_errors(spec) + _names_errors(spec) + _scope_errors(spec)
    errors += _metadata_name_errors(crd, spec)
    errors += _versions_errors(spec)
    if spec.get("preserveUnknownFields"):
        errors.append(fe.invalid("spec.preserveUnknownFields", True, "must be false"))
    return errors


def _group_errors(spec: dict[str, Any]) -> list[fe.FieldError]:
    group = spec.get("group")
    if not group:
        return [fe.required("spec.group")]
    if not isinstance(group, str) or not _DNS_SUBDOMAIN.match(group) or "." not in group:
        return [fe.invalid("spec.group", group, "should be a domain with at least one dot")]
    return []


def _names_errors(spec: dict[str, Any]) -> list[fe.FieldError]:
    names = spec.get("names")
    if not isinstance(names, dict):
        return [fe.required("spec.names")]
    errors = []
    for key in ("plural", "singular"):
        value = names.get(key)
        if key == "plural" and not value:
            errors.append(fe.required("spec.names.plural"))
        elif value and (not isinstance(value, str) or not _DNS_LABEL.match(value)):
            errors.append(fe.invalid(f"spec.names.{key}", value, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"))
    for key in ("kind", "listKind"):
        value = names.get(key)
        if key == "kind" and not value:
            errors.append(fe.required("spec.names.kind"))
        elif value and (not isinstance(value, str) or not _KIND.match(value)):
            errors.append(fe.invalid(f"spec.names.{key}", value, "may have mixed case, but should otherwise match: ^[a-zA-Z][a-zA-Z0-9]*$"))
    for index, short in enumerate(names.get("shortNames") or []):
        if not isinstance(short, str) or not _DNS_LABEL.match(short):
            errors.append(fe.invalid(f"spec.names.shortNames[{index}]", short, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"))
    return errors


def _scope_errors(spec: dict[str, Any]) -> list[fe.FieldError]:
    scope = spec.get("scope")
    if not scope:
        return [fe.required("spec.scope")]
    if scope not in ("Namespaced", "Cluster"):
        return [fe.not_supported("spec.scope", scope, ["Cluster", "Namespaced"])]
    return []


def _metadata_name_errors(crd: dict[str, Any], spec: dict[str, Any]) -> list[fe.FieldError]:
    name = (crd.get("metadata") or {}).get("name")
    plural, group = (spec.get("names") or {}).get("plural"), spec.get("group")
    if plural and group and name != f"{plural}.{group}":
        return [fe.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group')]
    return []


def _versions_errors(spec: dict[str, Any]) -> list[fe.FieldError]:
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        return [fe.invalid("spec.versions", versions, "must have exactly one version marked as storage version")]
    errors = []
    seen: set[str] = set()
    for index, version in enumerate(versions):
        errors += _version_errors(version, f"spec.versions[{index}]", seen, spec.get("names") or {})
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        errors.append(fe.invalid("spec.versions", [v.get("name") for v in storage], "must have exactly one version marked as storage version"))
    if not any(isinstance(v, dict) and v.get("served", True) for v in versions):
        errors.append(fe.invalid("spec.versions", None, "must have at least one version marked as served"))
    return errors


def _version_errors(version: Any, path: str, seen: set[str], names: dict[str, Any]) -> list[fe.FieldError]:
    if not isinstance(version, dict):
        return [fe.type_invalid(path, "object", f"{path} must be an object")]
    errors = []
    name = version.get("name")
    if not name:
        errors.append(fe.required(f"{path}.name"))
    elif not isinstance(name, str) or not _DNS_1035_LABEL.match(name):
        errors.append(fe.invalid(f"{path}.name", name, "a DNS-1035 label must consist of lower case alphanumeric characters or '-', and must start with a letter"))
    elif name in seen:
        errors.append(fe.duplicate(f"{path}.name", name))
    else:
        seen.add(name)
    errors += _subresources_errors(version.get("subresources"), f"{path}.subresources")
    errors += _printer_column_errors(version.get("additionalPrinterColumns") or [], f"{path}.additionalPrinterColumns")
    schema = (version.get("schema") or {}).get("openAPIV3Schema")
    schema_path = f"{path}.schema.openAPIV3Schema"
    if not isinstance(schema, dict):
        return errors + [fe.required(schema_path, "schemas are required")]
    return errors + structural_errors(schema, schema_path)


def _subresources_errors(subresources: Any, path: str) -> list[fe.FieldError]:
    if subresources is None:
        return []
    if not isinstance(subresources, dict):
        return [fe.type_invalid(path, fe.json_type_name(subresources), f"{path} must be an object")]
    return [fe.not_supported(f"{path}.{k}", k, ["scale", "status"]) for k in subresources if k not in ("scale", "status")]


def _printer_column_errors(columns: list[Any], path: str) -> list[fe.FieldError]:
    errors = []
    for index, column in enumerate(columns):
        where = f"{path}[{index}]"
        if not isinstance(column, dict):
            errors.append(fe.type_invalid(where, fe.json_type_name(column), f"{where} must be an object"))
            continue
        for key in ("name", "jsonPath"):
            if not column.get(key):
                errors.append(fe.required(f"{where}.{key}"))
        if column.get("type") not in _COLUMN_TYPES:
            errors.append(fe.not_supported(f"{where}.type", column.get("type"), list(_COLUMN_TYPES)))
        if not isinstance(column.get("priority", 0), int) or column.get("priority", 0) < 0:
            errors.append(fe.invalid(f"{where}.priority", column.get("priority"), "must be greater than or equal to 0"))
    return errors


# --- structural schema ---------------------------------------------------------------------------


def structural_errors(schema: dict[str, Any], path: str) -> list[fe.FieldError]:
    errors = []
    if schema.get("type") != "object":
        errors.append(fe.invalid(f"{path}.type", schema.get("type"), "must be object at the root"))
    errors += _root_metadata_errors(schema, path)
    errors += _node_errors(schema, path)
    if not errors:
        errors += _default_errors(schema, path)
    return errors


def _root_metadata_errors(schema: dict[str, Any], path: str) -> list[fe.FieldError]:
    metadata = (schema.get("properties") or {}).get("metadata")
    if not isinstance(metadata, dict):
        return []
    extra = set(metadata) - {"type", "properties", "description", "x-kubernetes-validations"}
    extra |= set(metadata.get("properties") or {}) - _ROOT_META_FIELDS
    where = f"{path}.properties[metadata]"
    return [fe.forbidden(where, "must not specify anything other than name and generateName, but metadata is implicitly specified")] if extra else []


def _node_errors(node: Any, path: str) -> list[fe.FieldError]:
    if not isinstance(node, dict):
        return [fe.type_invalid(path, fe.json_type_name(node), f"{path} must be a schema object")]
    errors = _type_errors(node, path)
    errors += _keyword_errors(node, path)
    for key, child in (node.get("properties") or {}).items():
        errors += _node_errors(child, f"{path}.properties[{key}]")
    if isinstance(node.get("additionalProperties"), dict):
        errors += _node_errors(node["additionalProperties"], f"{path}.additionalProperties")
    if "items" in node:
        errors += _node_errors(node["items"], f"{path}.items")
    for index, rule in enumerate(node.get("x-kubernetes-validations") or []):
        rule_path = f"{path}.x-kubernetes-validations[{index}]"
        errors += [fe.invalid(f"{rule_path}.rule", rule.get("rule") if isinstance(rule, dict) else rule, p)
                   for p in (cel_rules.rule_problems(rule) if isinstance(rule, dict) else ["must be an object"])]
    return errors


def _type_errors(node: dict[str, Any], path: str) -> list[fe.FieldError]:
    node_type = node.get("type")
    if node_type is None:
        open_ended = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        specified = any(k in node for k in ("properties", "items", "additionalProperties"))
        if specified or not open_ended:
            return [fe.required(f"{path}.type", "must not be empty for specified object fields")]
        return []
    if node_type not in _TYPES:
        return [fe.not_supported(f"{path}.type", node_type, list(_TYPES))]
    if "properties" in node and node_type != "object":
        return [fe.invalid(f"{path}.type", node_type, "must be object if properties are specified")]
    if "items" in node and node_type != "array":
        return [fe.invalid(f"{path}.type", node_type, "must be array if items are specified")]
    if node_type == "array" and not isinstance(node.get("items"), dict):
        return [fe.required(f"{path}.items", "must be specified")]
    return []


def _keyword_errors(node: dict[str, Any], path: str) -> list[fe.FieldError]:
    errors = []
    if "properties" in node and isinstance(node.get("additionalProperties"), dict):
        errors.append(fe.forbidden(f"{path}.additionalProperties", "additionalProperties and properties are mutual exclusive"))
    if node.get("additionalProperties") is False:
        errors.append(fe.forbidden(f"{path}.additionalProperties", "must not be false"))
    if node.get("x-kubernetes-preserve-unknown-fields") is False:
        errors.append(fe.invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined"))
    if "pattern" in node:
        try:
            re2.compile(node["pattern"])
        except re2.error as exc:
            errors.append(fe.invalid(f"{path}.pattern", node["pattern"], f"must be a valid regular expression, but isn't: {exc}"))
    missing = [k for k in node.get("required") or [] if "properties" in node and k not in node["properties"]]
    errors += [fe.invalid(f"{path}.required", k, "must be a declared property") for k in missing]
    return errors


def _default_errors(schema: dict[str, Any], path: str) -> list[fe.FieldError]:
    """Every default must be pruned already and valid against its own schema, as the apiserver demands."""
    errors = []
    for location, node in _defaulted_nodes(build_node(schema), ""):
        value = copy.deepcopy(node.default)
        problems = [f'unknown field "{p}"' for p in prune_value(node, value, location)]
        apply_defaults(node, value)
        problems += [e.line() for e in validate(node, value, MISSING, location)]
        errors += [fe.invalid(f"{path}{_schema_path(location)}.default", node.default, p) for p in problems]
    return errors


def _defaulted_nodes(node: SchemaNode, location: str) -> Iterator[tuple[str, SchemaNode]]:
    if node.default is not MISSING:
        yield location, node
    for key, child in node.properties.items():
        yield from _defaulted_nodes(child, f"{location}.{key}" if location else key)
    for child in (node.items, node.additional):
        if child is not None:
            yield from _defaulted_nodes(child, f"{location}[*]")


def _schema_path(location: str) -> str:
    steps = re.findall(r"[^.\[\]]+|\[\*\]", location)
    return "".join(".items" if s == "[*]" else f".properties[{s}]" for s in steps)
