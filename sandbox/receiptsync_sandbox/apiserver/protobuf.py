"""Decode Kubernetes protobuf request bodies into the JSON-shaped dicts the rest of the server uses.

kubectl 1.32+ sends built-in objects as `application/vnd.kubernetes.protobuf` (`kubectl create ns`,
`create secret`, `auth can-i` ...) and, unlike CBOR, never falls back to JSON. The message tables in
protobuf_schema.json come from kubectl's own embedded descriptors (see protobuf_schema_gen.py).
"""
from __future__ import annotations

import base64
import datetime
import functools
import json
import struct
from pathlib import Path
from typing import Any

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_GO_ZERO_TIME = -62135596800

# apiVersion group -> protobuf package of its messages.
_PACKAGES = {
    "": "k8s.io.api.core.v1", "apps": "k8s.io.api.apps.v1", "batch": "k8s.io.api.batch.v1",
    "rbac.authorization.k8s.io": "k8s.io.api.rbac.v1", "authorization.k8s.io": "k8s.io.api.authorization.v1",
    "authentication.k8s.io": "k8s.io.api.authentication.v1", "policy": "k8s.io.api.policy.v1",
    "coordination.k8s.io": "k8s.io.api.coordination.v1", "networking.k8s.io": "k8s.io.api.networking.v1",
    "events.k8s.io": "k8s.io.api.events.v1", "autoscaling": "k8s.io.api.autoscaling.v1",
}


class ProtobufError(ValueError):
    pass


@functools.cache
def _tables() -> dict[str, Any]:
    return json.loads(Path(__file__).with_name("protobuf_schema.json").read_text())


def is_protobuf(content_type: str, body: bytes) -> bool:
    return content_type == MEDIA_TYPE or body.startswith(MAGIC)


def decode_object(body: bytes) -> dict[str, Any]:
    """A whole request body (magic + runtime.Unknown envelope) -> the object as JSON would carry it."""
    if not body.startswith(MAGIC):
        raise ProtobufError("protobuf body lacks the k8s magic prefix")
    envelope = _decode_message(body[len(MAGIC):], _UNKNOWN)
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    message = f"{_META}.{kind}" if kind in ("DeleteOptions",) else f"{_PACKAGES.get(group, '')}.{kind}"
    if message not in _tables():
        raise ProtobufError(f"the sandbox cannot decode protobuf {api_version} {kind}; send JSON")
    raw = base64.b64decode(envelope.get("raw", ""))
    obj = _decode_message(raw, message)
    obj["apiVersion"], obj["kind"] = api_version, kind
    return obj


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, raw value) triples of one message."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield number, wire, value


def _scalar(ftype: int, wire: int, value: Any) -> Any:
    if ftype == 9:
        return value.decode("utf-8")
    if ftype == 12:
        return base64.b64encode(value).decode()
    if ftype == 8:
        return bool(value)
    if ftype in (3, 5, 14):  # int64, int32, enum: two's complement varints
        return value - (1 << 64) if value >= 1 << 63 else value
    if ftype in (4, 13):
        return value
    if ftype in (17, 18):  # zigzag
        return (value >> 1) ^ -(value & 1)
    if ftype == 1:
        return struct.unpack("<d", value)[0]
    if ftype == 2:
        return struct.unpack("<f", value)[0]
    if ftype in (6, 16):
        return struct.unpack("<q" if ftype == 16 else "<Q", value)[0]
    if ftype in (7, 15):
        return struct.unpack("<i" if ftype == 15 else "<I", value)[0]
    raise ProtobufError(f"unsupported field type {ftype}")


def _packed(ftype: int, data: bytes) -> list[Any]:
    values, pos = [], 0
    while pos < len(data):
        if ftype in (1, 6, 16):
            values.append(_scalar(ftype, 1, data[pos:pos + 8]))
            pos += 8
        elif ftype in (2, 7, 15):
            values.append(_scalar(ftype, 5, data[pos:pos + 4]))
            pos += 4
        else:
            raw, pos = _varint(data, pos)
            values.append(_scalar(ftype, 0, raw))
    return values


def _decode_message(data: bytes, name: str) -> Any:
    table = _tables().get(name)
    if table is None:
        raise ProtobufError(f"unknown protobuf message {name}")
    out: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        spec = table["fields"].get(str(number))
        if spec is None:
            continue  # a field newer than our tables: dropped, as an old server would
        field, ftype, type_name, repeated = spec
        if ftype == 11:
            decoded = _special(type_name, value)
            entry = _tables().get(type_name, {})
            if entry.get("map"):
                out.setdefault(field, {})[decoded.get("key", "")] = decoded.get("value", "")
                continue
        elif wire == 2 and ftype not in (9, 12):
            out.setdefault(field, []).extend(_packed(ftype, value))
            continue
        else:
            decoded = _scalar(ftype, wire, value)
        if repeated:
            out.setdefault(field, []).append(decoded)
        else:
            out[field] = decoded
    return _tidy(out)


def _special(type_name: str, data: bytes) -> Any:
    """Types whose JSON form is not their message form."""
    if type_name in (f"{_META}.Time", f"{_META}.MicroTime"):
        parts = _decode_message(data, type_name)
        seconds = parts.get("seconds", 0)
        if seconds == _GO_ZERO_TIME or not data:
            return None
        when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
        if type_name.endswith("MicroTime"):
            return when.replace(microsecond=parts.get("nanos", 0) // 1000).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if type_name == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        return _decode_message(data, type_name).get("string", "0")
    if type_name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        parts = _decode_message(data, type_name)
        return parts.get("strVal", "") if parts.get("type") == 1 else parts.get("intVal", 0)
    if type_name in ("k8s.io.apimachinery.pkg.runtime.RawExtension", f"{_META}.FieldsV1"):
        parts = _decode_message(data, type_name)
        raw = base64.b64decode(parts.get("raw") or parts.get("Raw") or "")
        return json.loads(raw) if raw else None
    if type_name == f"{_META}.Duration":
        nanos = _decode_message(data, type_name).get("duration", 0)
        return f"{nanos / 1e9:g}s"
    return _decode_message(data, type_name)


def _tidy(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop what Go's JSON `omitempty` would not have sent: empty strings and lists, null times."""
    return {k: v for k, v in obj.items() if v is not None and v != "" and v != []}
