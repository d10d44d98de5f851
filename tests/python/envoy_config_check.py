"""Offline validation of Envoy v3 bootstrap YAML files against the real Envoy protos.

No Envoy binary is available on our machines, so this module does the parts of Envoy's own
config loading that can be done with the generated protos from the ``xds-protos`` package:

1. YAML -> ``envoy.config.bootstrap.v3.Bootstrap`` with ``json_format.ParseDict`` and
   ``ignore_unknown_fields=False`` (Envoy rejects unknown fields too). Every ``@type`` must
   name a message that is present in the descriptor pool; the modules of the types we use are
   imported explicitly, and for any other ``@type`` the matching ``xds-protos`` package is
   imported on demand (a typo therefore still fails).
2. A walk over the parsed message that checks every ``google.protobuf.Any``: the type URL has
   the ``type.googleapis.com/`` prefix, resolves in the pool, and unpacks; the walk descends
   into the unpacked message.
3. A subset of the protoc-gen-validate (``validate.rules``) annotations that the Envoy protos
   carry and Envoy enforces at load time (required messages/oneofs, numeric and duration
   bounds, string lengths, repeated/map sizes, defined enums).
4. Cross references Envoy checks at startup: clusters named by routes and by ``envoy_grpc``
   exist among the static clusters, and the HTTP filter chain ends with the router.
5. ext_proc rules from docs/envoy-ext-proc.md §1.3 (FULL_DUPLEX_STREAMED needs trailer SEND
   and ``failure_mode_allow: false``; GRPC body mode is not implemented) and that a cluster
   used as a gRPC service speaks HTTP/2.

All problems are reported together in one :class:`EnvoyConfigError`.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any, Iterator

import yaml
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

# Modules of every typed_config type used by envoy-config/envoy.yaml. Importing them
# registers the message types in the default descriptor pool so that "@type" resolves.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from validate import validate_pb2

TYPE_URL_PREFIX = "type.googleapis.com/"


class EnvoyConfigError(Exception):
    """The file would be rejected by Envoy (or is semantically wrong for overlayd)."""


# --------------------------------------------------------------------------- loading


def _iter_type_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "@type" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _iter_type_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _iter_type_names(item)


def _import_package_of(type_name: str) -> None:
    """Import every module of the xds-protos package that should define ``type_name``.

    ``envoy.extensions.filters.http.lua.v3.Lua`` -> all ``*_pb2`` modules of
    ``envoy.extensions.filters.http.lua.v3``. Nested names (``Outer.Inner``) are handled by
    walking up until a package imports. Failures are ignored: ParseDict then reports the
    unresolvable ``@type``.
    """
    parts = type_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        package = ".".join(parts[:cut])
        try:
            pkg = importlib.import_module(package)
        except ImportError:
            continue
        for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if info.name.endswith("_pb2"):
                try:
                    importlib.import_module(f"{package}.{info.name}")
                except ImportError:
                    pass
        return


def load_yaml(path: Path) -> dict:
    with open(path, "rb") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise EnvoyConfigError(f"{path}: top level is {type(data).__name__}, not a mapping")
    return data


def parse_bootstrap(data: dict) -> bootstrap_pb2.Bootstrap:
    pool = descriptor_pool.Default()
    for name in set(_iter_type_names(data)):
        try:
            pool.FindMessageTypeByName(name)
        except KeyError:
            _import_package_of(name)
    bootstrap = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(data, bootstrap, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise EnvoyConfigError(f"does not parse as envoy.config.bootstrap.v3.Bootstrap: {exc}") from exc
    return bootstrap


def parse_message(data: dict, message: Message) -> Message:
    """Like :func:`parse_bootstrap` for any message (e.g. an Istio EnvoyFilter patch value).

    Fills ``message`` in place with ``ParseDict(ignore_unknown_fields=False)`` after importing
    the packages of every ``@type`` it names, and returns it.
    """
    pool = descriptor_pool.Default()
    for name in set(_iter_type_names(data)):
        try:
            pool.FindMessageTypeByName(name)
        except KeyError:
            _import_package_of(name)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise EnvoyConfigError(f"does not parse as {message.DESCRIPTOR.full_name}: {exc}") from exc
    return message


def check_message(msg: Message, path: str = "") -> list[str]:
    """Every problem of a parsed fragment that does not need the rest of the bootstrap.

    The same walk as :func:`validate_bootstrap_file` (every Any resolved and unpacked, the PGV
    subset) plus the ext_proc rules of §1.3 for each ExternalProcessor inside; cross-references
    (cluster names) are left to the caller, which knows the other fragments.
    """
    errors: list[str] = []
    found: list[tuple[str, Message]] = []
    try:
        for sub_path, sub in walk(msg, path):
            check_pgv(sub, sub_path, errors)
            found.append((sub_path, sub))
    except EnvoyConfigError as exc:
        errors.append(str(exc))
    if not errors:
        for sub_path, sub in found:
            if sub.DESCRIPTOR.full_name == _EXT_PROC:
                _check_ext_proc(sub, sub_path, errors)
    return errors


# --------------------------------------------------------------------------- walking


def _set_fields(msg: Message) -> Iterator[tuple[FieldDescriptor, Any]]:
    yield from msg.ListFields()


def unpack_any(any_msg: any_pb2.Any, path: str) -> Message:
    url = any_msg.type_url
    if not url.startswith(TYPE_URL_PREFIX):
        raise EnvoyConfigError(f"{path}: Any type_url {url!r} lacks the {TYPE_URL_PREFIX!r} prefix")
    name = url[len(TYPE_URL_PREFIX):]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError as exc:
        raise EnvoyConfigError(f"{path}: Any type {name!r} is not a known message") from exc
    inner = message_factory.GetMessageClass(descriptor)()
    if not any_msg.Unpack(inner):
        raise EnvoyConfigError(f"{path}: Any of type {name!r} does not unpack")
    return inner


def walk(msg: Message, path: str = "") -> Iterator[tuple[str, Message]]:
    """Yield (path, message) for ``msg`` and every message below it, unpacking each Any."""
    yield path or msg.DESCRIPTOR.full_name, msg
    if msg.DESCRIPTOR.full_name == "google.protobuf.Any":
        inner = unpack_any(msg, path)
        yield from walk(inner, f"{path}<{inner.DESCRIPTOR.full_name}>")
        return
    for field, value in _set_fields(msg):
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        sub = f"{path}.{field.name}" if path else field.name
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    yield from walk(item, f"{sub}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from walk(item, f"{sub}[{index}]")
        else:
            yield from walk(value, sub)


# --------------------------------------------------------------------------- PGV subset

_NUMERIC_RULES = {
    FieldDescriptor.TYPE_DOUBLE: "double", FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_SINT32: "sint32", FieldDescriptor.TYPE_SINT64: "sint64",
    FieldDescriptor.TYPE_FIXED32: "fixed32", FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32", FieldDescriptor.TYPE_SFIXED64: "sfixed64",
}
_WRAPPERS = {
    "google.protobuf.DoubleValue": "double", "google.protobuf.FloatValue": "float",
    "google.protobuf.Int32Value": "int32", "google.protobuf.Int64Value": "int64",
    "google.protobuf.UInt32Value": "uint32", "google.protobuf.UInt64Value": "uint64",
    "google.protobuf.StringValue": "string", "google.protobuf.BoolValue": "bool",
}


def _rules_of(field: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = field.GetOptions()
    if options.HasExtension(validate_pb2.rules):
        return options.Extensions[validate_pb2.rules]
    return None


def _check_numeric(rules: Message, value: float, where: str, errors: list[str]) -> None:
    if getattr(rules, "ignore_empty", False) and value == 0:
        return
    has = rules.HasField
    if has("const") and value != rules.const:
        errors.append(f"{where}: {value} must equal {rules.const}")
    if has("lt") and not value < rules.lt:
        errors.append(f"{where}: {value} must be < {rules.lt}")
    if has("lte") and not value <= rules.lte:
        errors.append(f"{where}: {value} must be <= {rules.lte}")
    if has("gt") and not value > rules.gt:
        errors.append(f"{where}: {value} must be > {rules.gt}")
    if has("gte") and not value >= rules.gte:
        errors.append(f"{where}: {value} must be >= {rules.gte}")
    allowed = list(getattr(rules, "in"))
    if allowed and value not in allowed:
        errors.append(f"{where}: {value} not in {allowed}")
    if value in list(rules.not_in):
        errors.append(f"{where}: {value} is a forbidden value")


def _check_string(rules: validate_pb2.StringRules, value: str, where: str, errors: list[str]) -> None:
    if rules.ignore_empty and value == "":
        return
    raw = value.encode()
    if rules.HasField("min_len") and len(value) < rules.min_len:
        errors.append(f"{where}: {value!r} shorter than {rules.min_len}")
    if rules.HasField("max_len") and len(value) > rules.max_len:
        errors.append(f"{where}: {value!r} longer than {rules.max_len}")
    if rules.HasField("min_bytes") and len(raw) < rules.min_bytes:
        errors.append(f"{where}: {value!r} shorter than {rules.min_bytes} bytes")
    if rules.HasField("max_bytes") and len(raw) > rules.max_bytes:
        errors.append(f"{where}: {value!r} longer than {rules.max_bytes} bytes")
    if rules.HasField("prefix") and not value.startswith(rules.prefix):
        errors.append(f"{where}: {value!r} must start with {rules.prefix!r}")
    if rules.HasField("pattern") and re.search(rules.pattern, value) is None:
        errors.append(f"{where}: {value!r} does not match {rules.pattern!r}")
    allowed = list(getattr(rules, "in"))
    if allowed and value not in allowed:
        errors.append(f"{where}: {value!r} not in {allowed}")


def _duration_seconds(d: Message) -> float:
    return d.seconds + d.nanos / 1e9


def _check_scalar(field: FieldDescriptor, rules: validate_pb2.FieldRules, value: Any, where: str,
                  errors: list[str]) -> None:
    kind = rules.WhichOneof("type")
    if kind is None:
        return
    if kind in _NUMERIC_RULES.values():
        _check_numeric(getattr(rules, kind), value, where, errors)
    elif kind == "string":
        _check_string(rules.string, value, where, errors)
    elif kind == "enum" and field.type == FieldDescriptor.TYPE_ENUM:
        enum_rules = rules.enum
        if enum_rules.defined_only and field.enum_type.values_by_number.get(value) is None:
            errors.append(f"{where}: {value} is not a defined {field.enum_type.full_name}")
        allowed = list(getattr(enum_rules, "in"))
        if allowed and value not in allowed:
            errors.append(f"{where}: enum value {value} not allowed")
        if value in list(enum_rules.not_in):
            errors.append(f"{where}: enum value {value} is forbidden")


def check_pgv(msg: Message, path: str, errors: list[str]) -> None:
    """Check the validate.rules annotations of ``msg``'s own fields (not recursive)."""
    descriptor = msg.DESCRIPTOR
    for oneof in descriptor.oneofs:
        opts = oneof.GetOptions()
        if opts.HasExtension(validate_pb2.required) and opts.Extensions[validate_pb2.required]:
            if msg.WhichOneof(oneof.name) is None:
                errors.append(f"{path}: one of {[f.name for f in oneof.fields]} is required")
    for field in descriptor.fields:
        rules = _rules_of(field)
        if rules is None:
            continue
        if field.containing_oneof is not None and msg.WhichOneof(field.containing_oneof.name) != field.name:
            continue  # only the member that is set is validated
        where = f"{path}.{field.name}"
        is_repeated = field.is_repeated
        is_map = field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        value = getattr(msg, field.name)
        kind = rules.WhichOneof("type")
        if rules.HasField("message") and rules.message.required and not is_repeated:
            if not msg.HasField(field.name):
                errors.append(f"{where}: is required")
        if is_map:
            if kind == "map":
                if rules.map.HasField("min_pairs") and len(value) < rules.map.min_pairs:
                    errors.append(f"{where}: needs at least {rules.map.min_pairs} entries")
                if rules.map.HasField("max_pairs") and len(value) > rules.map.max_pairs:
                    errors.append(f"{where}: allows at most {rules.map.max_pairs} entries")
            continue
        if is_repeated:
            if kind == "repeated":
                rep = rules.repeated
                if not (rep.ignore_empty and len(value) == 0):
                    if rep.HasField("min_items") and len(value) < rep.min_items:
                        errors.append(f"{where}: needs at least {rep.min_items} items")
                    if rep.HasField("max_items") and len(value) > rep.max_items:
                        errors.append(f"{where}: allows at most {rep.max_items} items")
                if rep.HasField("items") and field.type != FieldDescriptor.TYPE_MESSAGE:
                    for index, item in enumerate(value):
                        _check_scalar(field, rep.items, item, f"{where}[{index}]", errors)
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            type_name = field.message_type.full_name
            present = msg.HasField(field.name)
            if kind == "duration":
                dur = rules.duration
                if dur.required and not present:
                    errors.append(f"{where}: is required")
                if present:
                    seconds = _duration_seconds(value)
                    for op, test in (("lt", lambda a, b: a < b), ("lte", lambda a, b: a <= b),
                                     ("gt", lambda a, b: a > b), ("gte", lambda a, b: a >= b)):
                        if dur.HasField(op) and not test(seconds, _duration_seconds(getattr(dur, op))):
                            errors.append(f"{where}: {seconds}s violates {op} "
                                          f"{_duration_seconds(getattr(dur, op))}s")
            elif kind == "any":
                if rules.any.required and not present:
                    errors.append(f"{where}: is required")
                allowed = list(getattr(rules.any, "in"))
                if present and allowed and value.type_url not in allowed:
                    errors.append(f"{where}: type {value.type_url} not allowed here")
            elif type_name in _WRAPPERS and present and kind is not None:
                _check_scalar(field, rules, value.value, where, errors)
            continue
        _check_scalar(field, rules, value, where, errors)


# --------------------------------------------------------------------------- semantics

_ROUTER = "envoy.extensions.filters.http.router.v3.Router"
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_EXT_PROC = "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
_PM = processing_mode_pb2.ProcessingMode


def _check_ext_proc(cfg: ext_proc_pb2.ExternalProcessor, path: str, errors: list[str]) -> None:
    if cfg.HasField("grpc_service") == cfg.HasField("http_service"):
        errors.append(f"{path}: exactly one of grpc_service / http_service must be set")
    mode = cfg.processing_mode
    directions = (
        ("request", mode.request_body_mode, mode.request_trailer_mode),
        ("response", mode.response_body_mode, mode.response_trailer_mode),
    )
    for direction, body_mode, trailer_mode in directions:
        if body_mode == _PM.GRPC:
            errors.append(f"{path}: {direction}_body_mode GRPC is not implemented by Envoy (§1.3)")
        if body_mode == _PM.FULL_DUPLEX_STREAMED:
            if trailer_mode != _PM.SEND:
                errors.append(f"{path}: {direction}_body_mode FULL_DUPLEX_STREAMED requires "
                              f"{direction}_trailer_mode SEND (§1.3)")
            if cfg.failure_mode_allow:
                errors.append(f"{path}: {direction}_body_mode FULL_DUPLEX_STREAMED cannot be "
                              "combined with failure_mode_allow: true (§1.3)")
    if cfg.send_body_without_waiting_for_header_response and not any(
        b == _PM.STREAMED for b in (mode.request_body_mode, mode.response_body_mode)
    ):
        errors.append(f"{path}: send_body_without_waiting_for_header_response needs a STREAMED body (§1.6)")


def _cluster_speaks_http2(cluster: Message) -> bool:
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    options = cluster.typed_extension_protocol_options
    if key in options:
        opts = http_protocol_options_pb2.HttpProtocolOptions()
        if not options[key].Unpack(opts):
            return False
        if opts.HasField("explicit_http_config"):
            return opts.explicit_http_config.HasField("http2_protocol_options")
        return opts.HasField("auto_config") and opts.auto_config.HasField("http2_protocol_options")
    # Deprecated cluster-level field, still accepted by Envoy.
    return cluster.HasField("http2_protocol_options")


def check_semantics(bootstrap: bootstrap_pb2.Bootstrap, errors: list[str]) -> None:
    clusters = {c.name: c for c in bootstrap.static_resources.clusters}
    dynamic_clusters = bootstrap.HasField("dynamic_resources") and bootstrap.dynamic_resources.HasField("cds_config")
    if len(clusters) != len(bootstrap.static_resources.clusters):
        errors.append("static_resources.clusters: duplicate cluster names")
    listeners = [l.name for l in bootstrap.static_resources.listeners]
    if len(set(listeners)) != len(listeners):
        errors.append("static_resources.listeners: duplicate listener names")

    grpc_clusters: list[tuple[str, str]] = []
    for path, msg in walk(bootstrap):
        name = msg.DESCRIPTOR.full_name
        if name == _HCM:
            filters = list(msg.http_filters)
            if filters:
                last = filters[-1]
                if last.typed_config.type_url != TYPE_URL_PREFIX + _ROUTER:
                    errors.append(f"{path}.http_filters: the last HTTP filter must be the router, "
                                  f"found {last.name}")
                for f in filters[:-1]:
                    if f.typed_config.type_url == TYPE_URL_PREFIX + _ROUTER:
                        errors.append(f"{path}.http_filters: router {f.name} is not last")
        elif name == _EXT_PROC:
            _check_ext_proc(msg, path, errors)
        elif name == "envoy.config.route.v3.RouteAction":
            if msg.WhichOneof("cluster_specifier") == "cluster" and not dynamic_clusters:
                if msg.cluster not in clusters:
                    errors.append(f"{path}.cluster: unknown cluster {msg.cluster!r}")
        elif name == "envoy.config.core.v3.GrpcService.EnvoyGrpc":
            grpc_clusters.append((path, msg.cluster_name))
    for path, cluster_name in grpc_clusters:
        if cluster_name not in clusters:
            if not dynamic_clusters:
                errors.append(f"{path}.cluster_name: unknown cluster {cluster_name!r}")
        elif not _cluster_speaks_http2(clusters[cluster_name]):
            errors.append(f"{path}.cluster_name: cluster {cluster_name!r} is used for gRPC "
                          "but is not configured for HTTP/2")


# --------------------------------------------------------------------------- entry point


def validate_bootstrap_file(path: Path) -> bootstrap_pb2.Bootstrap:
    """Parse and check ``path``; raise :class:`EnvoyConfigError` listing every problem."""
    bootstrap = parse_bootstrap(load_yaml(path))
    errors: list[str] = []
    any_count = 0
    try:
        for sub_path, msg in walk(bootstrap):
            if msg.DESCRIPTOR.full_name == "google.protobuf.Any":
                any_count += 1
            check_pgv(msg, sub_path, errors)
    except EnvoyConfigError as exc:  # an Any that does not resolve stops the walk
        errors.append(str(exc))
    if not errors:
        check_semantics(bootstrap, errors)
    if errors:
        raise EnvoyConfigError(f"{path}:\n  " + "\n  ".join(errors))
    return bootstrap
