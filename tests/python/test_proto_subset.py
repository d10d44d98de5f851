"""proto/ is a faithful subset of Envoy's real ext_proc definitions.

Our .proto files are compiled with protoc into descriptors and compared, message by message and
field by field, with the descriptors of the `xds-protos` package (generated from Envoy's own
definitions) and of `grpcio-health-checking` (grpc.health.v1). Same package, message names, field
numbers, names, types, labels, referenced types and oneofs; same enum values. Every field of
ProcessingRequest / ProcessingResponse and of what they reference must be present (nothing Envoy
sends may arrive as an unknown field).
"""
import pathlib
import shutil
import subprocess

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

# Registers the real descriptors in the default pool.
from envoy.service.ext_proc.v3 import external_processor_pb2  # noqa: F401
from grpc_health.v1 import health_pb2  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
OUR_FILES = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))

# Messages whose every field must be mirrored (the transitive closure of ProcessingRequest and
# ProcessingResponse inside our subset is checked below; these are the roots).
ROOTS = ["envoy.service.ext_proc.v3.ProcessingRequest", "envoy.service.ext_proc.v3.ProcessingResponse"]


def compile_ours(tmp_path):
    protoc = shutil.which("protoc")
    assert protoc, "protoc is required (Debian: protobuf-compiler)"
    out = tmp_path / "ours.pb"
    subprocess.run(
        [protoc, f"-I{PROTO_DIR}", "--include_imports", f"--descriptor_set_out={out}", *OUR_FILES],
        check=True, capture_output=True)
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    return {f.name: f for f in fds.file}


def our_messages(files):
    """full name -> DescriptorProto for every message declared in our own files."""
    found = {}

    def walk(prefix, messages):
        for m in messages:
            name = f"{prefix}.{m.name}"
            found[name] = m
            walk(name, m.nested_type)

    for name in OUR_FILES:
        f = files[name]
        walk(f.package, f.message_type)
    return found


def our_enums(files):
    found = {}

    def walk(prefix, messages, enums):
        for e in enums:
            found[f"{prefix}.{e.name}"] = e
        for m in messages:
            walk(f"{prefix}.{m.name}", m.nested_type, m.enum_type)

    for name in OUR_FILES:
        f = files[name]
        walk(f.package, f.message_type, f.enum_type)
    return found


def field_shape(field, oneof_names):
    """Wire-relevant shape of a FieldDescriptorProto."""
    oneof = None
    if field.HasField("oneof_index") and not field.proto3_optional:
        oneof = oneof_names[field.oneof_index]
    return (field.number, field.name, field.type, field.label, field.type_name.lstrip("."), oneof)


def real_field_shape(field):
    proto = descriptor_pb2.FieldDescriptorProto()
    field.CopyToProto(proto) if hasattr(field, "CopyToProto") else None
    type_name = ""
    if field.message_type is not None:
        type_name = field.message_type.full_name
    elif field.enum_type is not None:
        type_name = field.enum_type.full_name
    oneof = field.containing_oneof.name if field.containing_oneof is not None else None
    label = 3 if field.is_repeated else 1
    return (field.number, field.name, field.type, label, type_name, oneof)


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    return compile_ours(tmp_path_factory.mktemp("protos"))


def test_every_message_matches_envoys(ours):
    pool = descriptor_pool.Default()
    messages = our_messages(ours)
    assert messages, "no messages compiled"
    problems = []
    for name, ours_msg in sorted(messages.items()):
        if ours_msg.options.map_entry:
            continue
        real = pool.FindMessageTypeByName(name)
        oneof_names = [o.name for o in ours_msg.oneof_decl]
        mine = {f.number: field_shape(f, oneof_names) for f in ours_msg.field}
        theirs = {f.number: real_field_shape(f) for f in real.fields}
        for number in sorted(set(mine) | set(theirs)):
            if mine.get(number) != theirs.get(number):
                problems.append(f"{name} field {number}: ours {mine.get(number)} != Envoy's {theirs.get(number)}")
    assert not problems, "\n".join(problems)


def test_every_enum_matches_envoys(ours):
    pool = descriptor_pool.Default()
    problems = []
    for name, ours_enum in sorted(our_enums(ours).items()):
        real = pool.FindEnumTypeByName(name)
        mine = {v.number: v.name for v in ours_enum.value}
        theirs = {v.number: v.name for v in real.values}
        if mine != theirs:
            problems.append(f"{name}: ours {sorted(mine.items())} != Envoy's {sorted(theirs.items())}")
    assert not problems, "\n".join(problems)


def test_request_and_response_closure_is_complete(ours):
    """Every message reachable from ProcessingRequest/Response (outside google.protobuf) is ours."""
    pool = descriptor_pool.Default()
    messages = our_messages(ours)
    seen, todo, missing = set(), list(ROOTS), []
    while todo:
        name = todo.pop()
        if name in seen or name.startswith("google.protobuf."):
            continue
        seen.add(name)
        if name not in messages:
            missing.append(name)
            continue
        for field in pool.FindMessageTypeByName(name).fields:
            if field.message_type is not None and not field.message_type.GetOptions().map_entry:
                todo.append(field.message_type.full_name)
            elif field.message_type is not None:  # map<k, v>: follow the value type
                value = field.message_type.fields_by_name["value"]
                if value.message_type is not None:
                    todo.append(value.message_type.full_name)
    assert not missing, f"reachable from the roots but missing in proto/: {missing}"
    assert "envoy.config.core.v3.HeaderValue" in seen


def test_service_methods_match(ours):
    pool = descriptor_pool.Default()
    for file_name, service_name in [
        ("envoy/service/ext_proc/v3/external_processor.proto", "envoy.service.ext_proc.v3.ExternalProcessor"),
        ("grpc/health/v1/health.proto", "grpc.health.v1.Health"),
    ]:
        f = ours[file_name]
        (svc,) = [s for s in f.service if f"{f.package}.{s.name}" == service_name]
        real = pool.FindServiceByName(service_name)
        mine = {(m.name, m.input_type.lstrip("."), m.output_type.lstrip("."), m.client_streaming, m.server_streaming) for m in svc.method}
        theirs = {(m.name, m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming) for m in real.methods}
        assert mine == theirs, f"{service_name}: ours {mine} != real {theirs}"
