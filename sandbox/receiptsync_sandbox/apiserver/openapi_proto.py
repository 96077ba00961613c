"""The OpenAPI v2 document as gnostic's `openapi.v2.Document` protobuf, which is how Go clients fetch it.

client-go's `OpenAPISchema()` asks for /openapi/v2 as `application/com.github.proto-openapi.spec.v2@v1.0
+protobuf` and unmarshals the body as protobuf whatever the response's Content-Type. kubectl 1.33 uses
OpenAPI v3 for nearly everything, but it still validates a `kind: List` client-side against v2 (its
v3 field-validation check never applies to List), so without this `kubectl apply -f list.yaml` fails
with "proto: cannot parse invalid wire-format data".

gnostic's messages are not the JSON shape one-to-one: maps become repeated Named{name, value}, `x-*`
keys become vendor_extension entries, free-form values (default, enum, example, extensions) are `Any`
carrying YAML text, and a few fields are oneof wrappers. The field numbers come from kubectl's own
embedded descriptor (openapiv2_schema.json, see protobuf_schema_gen.py).
"""
from __future__ import annotations

import functools
import json
import struct
from pathlib import Path
from typing import Any

# Clients ask for the "@v1.0" spelling; the reply uses the one Go's mime parser accepts, as kube-openapi's.
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_PKG = "openapi.v2."

# protobuf FieldDescriptorProto types used by openapi.v2
_DOUBLE, _INT64, _BOOL, _STRING, _MESSAGE = 1, 3, 8, 9, 11


def wants_protobuf(accept: str) -> bool:
    return "application/com.github.proto-openapi.spec.v2" in accept


@functools.cache
def _tables() -> dict[str, dict[str, tuple[int, int, str, bool]]]:
    """message -> json key -> (number, type, message type, repeated)."""
    raw = json.loads(Path(__file__).with_name("openapiv2_schema.json").read_text())
    tables = {}
    for message, table in raw.items():
        fields = {}
        for number, (name, ftype, type_name, repeated) in table["fields"].items():
            key = "$ref" if name == "_ref" else _camel(name)
            fields[key] = (int(number), ftype, type_name, repeated)
        tables[message] = fields
    return tables


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def encode_document(document: dict[str, Any]) -> bytes:
    return _message("openapi.v2.Document", document)


# --- wire format ---------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s are ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _delimited(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _scalar(number: int, ftype: int, value: Any) -> bytes:
    if ftype == _STRING:
        return _delimited(number, str(value).encode())
    if ftype == _BOOL:
        return _key(number, 0) + _varint(1 if value else 0)
    if ftype == _INT64:
        return _key(number, 0) + _varint(int(value))
    if ftype == _DOUBLE:
        return _key(number, 1) + struct.pack("<d", float(value))
    raise ValueError(f"unexpected field type {ftype}")


# --- JSON shape -> gnostic messages --------------------------------------------------------------
def _message(name: str, value: Any) -> bytes:
    special = _SPECIAL.get(name.removeprefix(_PKG))
    if special is not None:
        return special(value)
    fields = _tables()[name]
    if set(fields) == {"additionalProperties"}:  # a map: repeated Named{name, value}
        number, _, named, _ = fields["additionalProperties"]
        return _named_entries(number, named, value)
    out = bytearray()
    vendor = fields.get("vendorExtension")
    for key, item in value.items():
        if key.startswith("x-") and vendor:
            out += _delimited(vendor[0], _named("openapi.v2.NamedAny", key, item))
            continue
        field = fields.get(key)
        if field is None or item is None:
            continue  # not in gnostic's model: dropped, as gnostic's own compiler would
        out += _field(field, item)
    return bytes(out)


def _field(field: tuple[int, int, str, bool], value: Any) -> bytes:
    number, ftype, type_name, repeated = field
    items = value if repeated else [value]
    if repeated and not isinstance(value, list):
        items = [value]
    out = bytearray()
    for item in items:
        if ftype == _MESSAGE:
            out += _delimited(number, _message(type_name, item))
        else:
            out += _scalar(number, ftype, item)
    return bytes(out)


def _named(named: str, name: str, value: Any) -> bytes:
    value_field = _tables()[named]["value"]
    return _delimited(1, name.encode()) + _field(value_field, value)


def _named_entries(number: int, named: str, mapping: dict[str, Any]) -> bytes:
    return b"".join(_delimited(number, _named(named, name, item)) for name, item in mapping.items())


def _any(value: Any) -> bytes:
    # gnostic keeps free-form values as YAML text (field 2); JSON is YAML, and kube-openapi reads
    # x-kubernetes-group-version-kind back out of it with a YAML parser.
    return _delimited(2, json.dumps(value).encode())


def _split_map(value: dict[str, Any], message: str, entries_key: str) -> bytes:
    """Paths and Responses: their own keys are the entries, besides x-* extensions."""
    fields = _tables()[message]
    number, _, named, _ = fields[entries_key]
    out = bytearray()
    for key, item in value.items():
        if key.startswith("x-"):
            out += _delimited(fields["vendorExtension"][0], _named("openapi.v2.NamedAny", key, item))
        else:
            out += _delimited(number, _named(named, key, item))
    return bytes(out)


def _oneof(message: str, choice: str, value: Any) -> bytes:
    return _field(_tables()[message][choice], value)


def _parameter(value: dict[str, Any]) -> bytes:
    if value.get("in") == "body":
        return _oneof("openapi.v2.Parameter", "bodyParameter", value)
    sub = {"header": "headerParameterSubSchema", "formData": "formDataParameterSubSchema",
           "query": "queryParameterSubSchema", "path": "pathParameterSubSchema"}.get(value.get("in"))
    if sub is None:
        return b""
    return _oneof("openapi.v2.Parameter", "nonBodyParameter", {sub: value})


def _security(value: dict[str, Any]) -> bytes:
    kind = value.get("type")
    if kind == "oauth2":
        choice = {"implicit": "oauth2ImplicitSecurity", "password": "oauth2PasswordSecurity",
                  "application": "oauth2ApplicationSecurity"}.get(value.get("flow"), "oauth2AccessCodeSecurity")
    else:
        choice = "apiKeySecurity" if kind == "apiKey" else "basicAuthenticationSecurity"
    return _oneof("openapi.v2.SecurityDefinitionsItem", choice, value)


_SPECIAL = {
    "Any": _any,
    "TypeItem": lambda v: _oneof("openapi.v2.TypeItem", "value", v if isinstance(v, list) else [v]),
    "ItemsItem": lambda v: _oneof("openapi.v2.ItemsItem", "schema", v if isinstance(v, list) else [v]),
    "StringArray": lambda v: _oneof("openapi.v2.StringArray", "value", v),
    "AdditionalPropertiesItem": lambda v: _oneof("openapi.v2.AdditionalPropertiesItem",
                                                 "boolean" if isinstance(v, bool) else "schema", v),
    "SchemaItem": lambda v: _oneof("openapi.v2.SchemaItem",
                                   "fileSchema" if v.get("type") == "file" else "schema", v),
    "ParametersItem": lambda v: _oneof("openapi.v2.ParametersItem",
                                       "jsonReference" if "$ref" in v else "parameter", v),
    "ResponseValue": lambda v: _oneof("openapi.v2.ResponseValue",
                                      "jsonReference" if "$ref" in v else "response", v),
    "Parameter": _parameter,
    "SecurityDefinitionsItem": _security,
    "Paths": lambda v: _split_map(v, "openapi.v2.Paths", "path"),
    "Responses": lambda v: _split_map(v, "openapi.v2.Responses", "responseCode"),
}
