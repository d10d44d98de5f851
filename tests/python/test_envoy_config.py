"""Envoy bootstrap files under envoy-config/ load as the real Envoy protos.

There is no Envoy binary on our machines; envoy_config_check does what Envoy's loader does
with the generated protos of xds-protos (strict JSON mapping, Any resolution, PGV rules,
cluster references), plus the ext_proc config rules of docs/envoy-ext-proc.md §1.3.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from envoy_config_check import EnvoyConfigError, walk, validate_bootstrap_file

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "envoy-config"
MAIN_CONFIG = CONFIG_DIR / "envoy.yaml"
# envoy-config/istio/ holds Istio resources (EnvoyFilter), not bootstraps; their patch values are
# parsed into Envoy messages by test_istio_envoyfilter.py.
ISTIO_DIR = CONFIG_DIR / "istio"
CONFIG_FILES = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if ISTIO_DIR not in p.parents)
PM = processing_mode_pb2.ProcessingMode


def test_config_dir_is_not_empty():
    """The parametrized test below must never silently run over zero files."""
    assert MAIN_CONFIG in CONFIG_FILES, f"{MAIN_CONFIG} missing; found {CONFIG_FILES}"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_bootstrap_parses_and_every_any_unpacks(path: Path):
    """Every envoy-config/**/*.yaml is a valid envoy.config.bootstrap.v3.Bootstrap.

    ParseDict with ignore_unknown_fields=False, then a walk that unpacks every Any (type URL
    resolvable in the descriptor pool) and checks validate.rules and cluster references.
    """
    bootstrap = validate_bootstrap_file(path)
    anys = [(p, m) for p, m in walk(bootstrap) if m.DESCRIPTOR.full_name == "google.protobuf.Any"]
    assert anys, "a bootstrap without a single typed_config is not what we ship"
    for any_path, any_msg in anys:
        assert any_msg.type_url.startswith("type.googleapis.com/"), any_path


def _find(bootstrap: bootstrap_pb2.Bootstrap, full_name: str):
    return [m for _, m in walk(bootstrap) if m.DESCRIPTOR.full_name == full_name]


def test_main_config_places_overlayd_beside_the_app():
    """The choices documented in envoy.yaml are the ones that parse (§1.1, §3, §10, §12, §13)."""
    bootstrap = validate_bootstrap_file(MAIN_CONFIG)

    admin = bootstrap.admin.address.socket_address
    assert (admin.address, admin.port_value) == ("127.0.0.1", 9902)

    (listener,) = bootstrap.static_resources.listeners
    assert (listener.address.socket_address.address, listener.address.socket_address.port_value) == ("0.0.0.0", 10000)

    (hcm,) = _find(bootstrap, "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.ext_proc", "envoy.filters.http.router"]
    assert hcm.http_filters[0].typed_config.type_url.endswith("envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor")
    assert hcm.http_filters[1].typed_config.type_url.endswith("envoy.extensions.filters.http.router.v3.Router")

    (ext_proc,) = _find(bootstrap, "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor")
    assert ext_proc.grpc_service.envoy_grpc.cluster_name == "overlayd"
    assert ext_proc.failure_mode_allow is True
    assert ext_proc.allow_mode_override is True
    assert ext_proc.message_timeout == duration_pb2.Duration(nanos=500_000_000)
    assert ext_proc.processing_mode == PM(
        request_header_mode=PM.SEND,
        response_header_mode=PM.SEND,
        request_body_mode=PM.NONE,
        response_body_mode=PM.STREAMED,
        request_trailer_mode=PM.SKIP,
        response_trailer_mode=PM.SKIP,
    )
    assert list(ext_proc.metadata_options.receiving_namespaces.untyped) == ["overlayd"]

    clusters = {c.name: c for c in bootstrap.static_resources.clusters}
    assert set(clusters) == {"overlayd", "app"}

    def endpoint(cluster):
        (locality,) = cluster.load_assignment.endpoints
        (lb,) = locality.lb_endpoints
        sa = lb.endpoint.address.socket_address
        return sa.address, sa.port_value

    assert endpoint(clusters["overlayd"]) == ("127.0.0.1", 50051)
    assert endpoint(clusters["app"]) == ("127.0.0.1", 8080)
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert clusters["overlayd"].typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")


def _indent_of(text: str, anchor: str) -> str:
    match = re.search(rf"^( *){re.escape(anchor)}", text, re.M)
    assert match, f"anchor {anchor!r} not found in {MAIN_CONFIG}"
    return match.group(1)


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {MAIN_CONFIG}"
    return text.replace(old, new)


def _insert_after(text: str, anchor_line: str, new_line: str) -> str:
    indent = _indent_of(text, anchor_line)
    return _replace_once(text, f"{indent}{anchor_line}\n", f"{indent}{anchor_line}\n{indent}{new_line}\n")


BROKEN_VARIANTS = {
    # name: (edit of the real file's text, text the error must mention)
    "unknown-field-in-ext_proc-typed_config": (
        lambda t: _insert_after(t, "allow_mode_override: true", "allow_mode_overide_extra: true"),
        "allow_mode_overide_extra",
    ),
    "unknown-field-in-processing_mode": (
        lambda t: _insert_after(t, "request_trailer_mode: SKIP", "request_trailers_mode: SKIP"),
        "request_trailers_mode",
    ),
    "unknown-top-level-field": (
        lambda t: t + "\nstatic_resource: {}\n",
        "static_resource",
    ),
    "typo-in-@type": (
        lambda t: _replace_once(t, "ext_proc.v3.ExternalProcessor\n", "ext_proc.v3.ExternalProcesor\n"),
        "ExternalProcesor",
    ),
    "typo-in-@type-package": (
        lambda t: _replace_once(t, "filters.http.router.v3.Router", "filters.http.routr.v3.Router"),
        "routr",
    ),
    "wrong-enum-value": (
        lambda t: _replace_once(t, "response_body_mode: STREAMED", "response_body_mode: STREAMING"),
        "STREAMING",
    ),
    # validate.rules: GrpcService.EnvoyGrpc.cluster_name has min_len 1.
    "empty-grpc-cluster-name": (
        lambda t: re.sub(r"(envoy_grpc:\n\s+cluster_name:) overlayd", r'\1 ""', t, count=1),
        "cluster_name",
    ),
    # validate.rules: message_timeout lte 3600s.
    "message-timeout-out-of-range": (
        lambda t: _replace_once(t, "message_timeout: 0.5s", "message_timeout: 7200s"),
        "message_timeout",
    ),
    "ext_proc-points-at-unknown-cluster": (
        lambda t: re.sub(r"(envoy_grpc:\n\s+cluster_name:) overlayd", r"\1 overlayd-typo", t, count=1),
        "overlayd-typo",
    ),
    "full-duplex-with-failure-mode-allow": (
        lambda t: _replace_once(t, "response_body_mode: STREAMED", "response_body_mode: FULL_DUPLEX_STREAMED"),
        "FULL_DUPLEX_STREAMED",
    ),
    "grpc-cluster-without-http2": (
        lambda t: _replace_once(t, "            http2_protocol_options: {}\n", "            http_protocol_options: {}\n"),
        "HTTP/2",
    ),
}


@pytest.mark.parametrize("variant", sorted(BROKEN_VARIANTS))
def test_check_rejects_broken_copies(variant: str, tmp_path: Path):
    """The validation above really fails: deliberately broken copies of envoy.yaml are rejected.

    Each copy is the real file with one human-sized mistake; the error must name it.
    """
    edit, must_mention = BROKEN_VARIANTS[variant]
    original = MAIN_CONFIG.read_text()
    broken = edit(original)
    assert broken != original, "the edit did not change the file"
    copy = tmp_path / "envoy.yaml"
    copy.write_text(broken)
    # The unmodified text in the same place passes, so the failure is caused by the edit.
    pristine = tmp_path / "pristine.yaml"
    pristine.write_text(original)
    validate_bootstrap_file(pristine)
    with pytest.raises(EnvoyConfigError) as info:
        validate_bootstrap_file(copy)
    assert must_mention in str(info.value), str(info.value)
