"""Regenerate protobuf_schema.json: the field tables of the Kubernetes protobuf messages the sandbox
decodes (kubectl 1.32+ sends built-in objects as protobuf on `kubectl create <kind>`).

The tables come from the FileDescriptorProtos every Kubernetes Go binary embeds (gzipped). They are
facts about the wire format, so we read them from the real kubectl rather than typing them in:

    python -m receiptsync_sandbox.apiserver.protobuf_schema_gen .venv/bin/kubectl

It also writes openapiv2_schema.json: gnostic's openapi.v2 messages, in which kubectl asks for
/openapi/v2 (client-side validation of `kind: List`, see openapi_proto.py). Newer protoc-gen-go embeds
that descriptor raw rather than gzipped, so it is found by its file name.
"""
from __future__ import annotations

import json
import re
import sys
import zlib
from pathlib import Path

from google.protobuf import descriptor_pb2

OUTPUT = Path(__file__).with_name("protobuf_schema.json")
OPENAPI_V2_OUTPUT = Path(__file__).with_name("openapiv2_schema.json")
OPENAPI_V2_FILE = "openapiv2/OpenAPIv2.proto"
WANTED_FILES = {
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/api/resource/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/networking/v1/generated.proto",
    "k8s.io/api/events/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
}
_GZIP_HEADER = re.compile(rb"\x1f\x8b\x08\x00\x00\x00\x00\x00")


def embedded_descriptors(binary: bytes):
    for match in _GZIP_HEADER.finditer(binary):
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(binary[match.start():match.start() + 4_000_000])
            descriptor = descriptor_pb2.FileDescriptorProto.FromString(raw)
        except Exception:  # not a descriptor: some other gzip stream in the binary
            continue
        if descriptor.name:
            yield descriptor


def raw_descriptor(binary: bytes, name: str) -> descriptor_pb2.FileDescriptorProto:
    """A FileDescriptorProto stored uncompressed: it starts with its name (field 1) and ends where
    the bytes stop looking like FileDescriptorProto fields (all of which are length-delimited)."""
    encoded = name.encode()
    start = binary.find(b"\x0a" + bytes([len(encoded)]) + encoded)
    if start < 0:
        raise SystemExit(f"{name} is not embedded in this binary")
    pos = start
    while True:
        tag, after = _varint(binary, pos)
        if tag & 7 != 2 or not 1 <= tag >> 3 <= 14:
            break
        length, after = _varint(binary, after)
        pos = after + length
    return descriptor_pb2.FileDescriptorProto.FromString(binary[start:pos])


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def message_tables(descriptor: descriptor_pb2.FileDescriptorProto) -> dict[str, dict]:
    tables: dict[str, dict] = {}

    def visit(message, prefix: str) -> None:
        full = f"{prefix}.{message.name}"
        fields = {}
        for field in message.field:
            fields[str(field.number)] = [field.name, field.type, field.type_name.lstrip("."),
                                         field.label == field.LABEL_REPEATED]
        tables[full] = {"fields": fields, "map": bool(message.options.map_entry)}
        for nested in message.nested_type:
            visit(nested, full)

    for message in descriptor.message_type:
        visit(message, descriptor.package)
    return tables


def main(argv: list[str] | None = None) -> None:
    binary = Path((argv or sys.argv[1:])[0]).read_bytes()
    tables: dict[str, dict] = {}
    for descriptor in embedded_descriptors(binary):
        if descriptor.name in WANTED_FILES:
            tables.update(message_tables(descriptor))
    OUTPUT.write_text(json.dumps(tables, separators=(",", ":"), sort_keys=True))
    print(f"wrote {len(tables)} messages to {OUTPUT}")
    openapi_tables = message_tables(raw_descriptor(binary, OPENAPI_V2_FILE))
    OPENAPI_V2_OUTPUT.write_text(json.dumps(openapi_tables, separators=(",", ":"), sort_keys=True))
    print(f"wrote {len(openapi_tables)} messages to {OPENAPI_V2_OUTPUT}")


if __name__ == "__main__":
    main()
