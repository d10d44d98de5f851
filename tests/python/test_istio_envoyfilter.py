"""envoy-config/istio/overlayd-envoyfilter.yaml, and the deployment variants of envoy.yaml.

The EnvoyFilter's patch values are parsed into the Envoy messages Istio builds from them
(istio_envoyfilter_check); sidecar.yaml and front-proxy.yaml are full bootstraps (already
parsed by test_envoy_config.py) whose specifics are asserted here. All four configurations must
carry the very same ext_proc filter settings as envoy.yaml, whose comments give the reasons.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from envoy_config_check import EnvoyConfigError, validate_bootstrap_file, walk
from istio_envoyfilter_check import EnvoyFilterError, check_envoyfilter, load

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "envoy-config"
ENVOYFILTER = CONFIG_DIR / "istio" / "overlayd-envoyfilter.yaml"
DEPLOYMENT = REPO_ROOT / "deploy" / "kubernetes" / "deployment.yaml"
EXT_PROC = "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"


def _ext_proc(message) -> ext_proc_pb2.ExternalProcessor:
    (found,) = [m for _, m in walk(message) if m.DESCRIPTOR.full_name == EXT_PROC]
    return found


def _without_cluster(cfg: ext_proc_pb2.ExternalProcessor) -> ext_proc_pb2.ExternalProcessor:
    copy_ = ext_proc_pb2.ExternalProcessor()
    copy_.CopyFrom(cfg)
    copy_.grpc_service.envoy_grpc.cluster_name = ""
    return copy_


def _endpoint(cluster):
    (locality,) = cluster.load_assignment.endpoints
    (lb,) = locality.lb_endpoints
    return lb.endpoint.address


# --------------------------------------------------------------------------- the EnvoyFilter


def test_envoyfilter_patches_parse_as_envoy_messages():
    parsed = check_envoyfilter(load(ENVOYFILTER))
    http_filter, cluster = parsed["filter"], parsed["cluster"]
    assert http_filter.name == "envoy.filters.http.ext_proc"
    assert _ext_proc(http_filter).grpc_service.envoy_grpc.cluster_name == cluster.name == "overlayd-ext-proc"
    address = _endpoint(cluster).socket_address
    assert (address.address, address.port_value) == ("127.0.0.1", 50051)
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")


def test_envoyfilter_placement():
    resource = load(ENVOYFILTER)
    assert (resource["apiVersion"], resource["kind"]) == ("networking.istio.io/v1alpha3", "EnvoyFilter")
    filter_patch, cluster_patch = resource["spec"]["configPatches"]
    assert filter_patch["applyTo"] == "HTTP_FILTER"
    assert filter_patch["match"] == {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
        "name": "envoy.filters.network.http_connection_manager",
        "subFilter": {"name": "envoy.filters.http.router"}}}}}
    assert filter_patch["patch"]["operation"] == "INSERT_BEFORE"
    assert cluster_patch["applyTo"] == "CLUSTER"
    assert cluster_patch["match"] == {"context": "SIDECAR_INBOUND"}
    assert cluster_patch["patch"]["operation"] == "ADD"


def test_envoyfilter_selects_the_deployments_pods():
    selector = load(ENVOYFILTER)["spec"]["workloadSelector"]["labels"]
    pod_labels = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["metadata"]["labels"]
    assert selector and all(pod_labels.get(k) == v for k, v in selector.items()), (selector, pod_labels)


def _patch(resource, index):
    return resource["spec"]["configPatches"][index]


def _ext_proc_value(resource):
    return _patch(resource, 0)["patch"]["value"]["typed_config"]


def _cluster_value(resource):
    return _patch(resource, 1)["patch"]["value"]


BROKEN_FILTERS = {
    # name: (edit of the parsed resource, text the error must contain)
    "unknown-field-in-ext_proc": (lambda r: _ext_proc_value(r).__setitem__("failure_mode_alow", True), "failure_mode_alow"),
    "unknown-field-in-HttpFilter": (lambda r: _patch(r, 0)["patch"]["value"].__setitem__("disable", False), "disable"),
    "typo-in-@type": (lambda r: _ext_proc_value(r).__setitem__(
        "@type", "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcesor"), "ExternalProcesor"),
    "wrong-enum": (lambda r: _ext_proc_value(r)["processing_mode"].__setitem__("response_body_mode", "STREAMING"),
                   "STREAMING"),
    "full-duplex-with-fail-open": (lambda r: _ext_proc_value(r)["processing_mode"].update(
        response_body_mode="FULL_DUPLEX_STREAMED", response_trailer_mode="SEND"), "FULL_DUPLEX_STREAMED"),
    "message-timeout-out-of-range": (lambda r: _ext_proc_value(r).__setitem__("message_timeout", "7200s"),
                                     "message_timeout"),
    "unknown-field-in-cluster": (lambda r: _cluster_value(r).__setitem__("connect_timout", "1s"), "connect_timout"),
    "cluster-without-http2": (lambda r: _cluster_value(r)["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].__setitem__(
        "explicit_http_config", {"http_protocol_options": {}}), "HTTP/2"),
    "cluster-name-mismatch": (lambda r: _cluster_value(r).__setitem__("name", "overlayd"), "is not the added cluster"),
    "insert-after-the-router": (lambda r: _patch(r, 0)["patch"].__setitem__("operation", "INSERT_AFTER"), "INSERT_BEFORE"),
    "outbound-context": (lambda r: _patch(r, 0)["match"].__setitem__("context", "SIDECAR_OUTBOUND"), "SIDECAR_INBOUND"),
    "no-subFilter": (lambda r: _patch(r, 0)["match"]["listener"]["filterChain"]["filter"].pop("subFilter"), "subFilter"),
    "unknown-applyTo": (lambda r: _patch(r, 1).__setitem__("applyTo", "CLUSTERS"), "CLUSTERS"),
    "unknown-operation": (lambda r: _patch(r, 1)["patch"].__setitem__("operation", "APPEND"), "APPEND"),
    "cluster-ADD-with-object-match": (lambda r: _patch(r, 1)["match"].__setitem__("cluster", {"name": "x"}),
                                      "an ADD matches nothing"),
    "misplaced-match-key": (lambda r: _patch(r, 0)["match"]["listener"].__setitem__("subFilter", {"name": "x"}),
                            "subFilter"),
    "no-workloadSelector": (lambda r: r["spec"].pop("workloadSelector"), "workloadSelector"),
}


@pytest.mark.parametrize("variant", sorted(BROKEN_FILTERS))
def test_broken_envoyfilter_is_rejected(variant: str, tmp_path: Path):
    edit, must_mention = BROKEN_FILTERS[variant]
    original = load(ENVOYFILTER)
    broken = copy.deepcopy(original)
    edit(broken)
    assert broken != original
    path = tmp_path / "envoyfilter.yaml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    with pytest.raises(EnvoyFilterError) as info:
        check_envoyfilter(load(path))
    assert must_mention in str(info.value), str(info.value)


# --------------------------------------------------------------------------- every variant


def test_every_variant_has_the_ext_proc_settings_of_envoy_yaml():
    """Same failure_mode_allow, allow_mode_override, message_timeout, processing modes, metadata."""
    reference = _ext_proc(validate_bootstrap_file(CONFIG_DIR / "envoy.yaml"))
    variants = {
        "sidecar.yaml": _ext_proc(validate_bootstrap_file(CONFIG_DIR / "sidecar.yaml")),
        "front-proxy.yaml": _ext_proc(validate_bootstrap_file(CONFIG_DIR / "front-proxy.yaml")),
        "istio/overlayd-envoyfilter.yaml": _ext_proc(check_envoyfilter(load(ENVOYFILTER))["filter"]),
    }
    for name, cfg in variants.items():
        assert _without_cluster(cfg) == _without_cluster(reference), name
        assert cfg.failure_mode_allow and cfg.allow_mode_override, name


def test_sidecar_talks_to_overlayd_over_the_unix_socket():
    bootstrap = validate_bootstrap_file(CONFIG_DIR / "sidecar.yaml")
    clusters = {c.name: c for c in bootstrap.static_resources.clusters}
    assert set(clusters) == {"overlayd", "app"}
    assert _endpoint(clusters["overlayd"]).pipe.path == "/var/run/overlayd/overlayd.sock"
    app = _endpoint(clusters["app"]).socket_address
    assert (app.address, app.port_value) == ("127.0.0.1", 8080)
    (listener,) = bootstrap.static_resources.listeners
    assert listener.address.socket_address.port_value == 10000
    assert (bootstrap.admin.address.socket_address.address) == "127.0.0.1"


def test_front_proxy_resolves_app_and_overlayd_by_dns():
    bootstrap = validate_bootstrap_file(CONFIG_DIR / "front-proxy.yaml")
    clusters = {c.name: c for c in bootstrap.static_resources.clusters}
    assert set(clusters) == {"overlayd", "legacy_app"}
    got = {}
    for name, cluster in clusters.items():
        assert cluster.type == cluster.STRICT_DNS, name
        address = _endpoint(cluster).socket_address
        got[name] = (address.address, address.port_value)
    assert got == {"overlayd": ("overlayd", 50051), "legacy_app": ("legacy-app", 8080)}
    assert _ext_proc(bootstrap).grpc_service.envoy_grpc.cluster_name == "overlayd"


BROKEN_BOOTSTRAPS = {
    # name: (file, edit of its text, text the error must mention)
    "sidecar-empty-pipe-path": ("sidecar.yaml", lambda t: t.replace("path: /var/run/overlayd/overlayd.sock", 'path: ""'),
                                "path"),
    "sidecar-pipe-as-socket_address": ("sidecar.yaml", lambda t: t.replace("pipe:\n", "socket_address:\n", 1), "path"),
    "front-proxy-cluster-type-typo": ("front-proxy.yaml", lambda t: t.replace("type: STRICT_DNS", "type: STRICTDNS", 1),
                                      "STRICTDNS"),
    "front-proxy-overlayd-http1": ("front-proxy.yaml", lambda t: t.replace("http2_protocol_options: {}",
                                                                           "http_protocol_options: {}"), "HTTP/2"),
    "front-proxy-route-to-missing-cluster": ("front-proxy.yaml", lambda t: t.replace("cluster: legacy_app",
                                                                                     "cluster: legacy-app"), "legacy-app"),
}


@pytest.mark.parametrize("variant", sorted(BROKEN_BOOTSTRAPS))
def test_broken_deployment_bootstrap_is_rejected(variant: str, tmp_path: Path):
    """Broken copies of sidecar.yaml / front-proxy.yaml fail the same Bootstrap check."""
    name, edit, must_mention = BROKEN_BOOTSTRAPS[variant]
    original = (CONFIG_DIR / name).read_text()
    broken = edit(original)
    assert broken != original
    path = tmp_path / name
    path.write_text(broken)
    with pytest.raises(EnvoyConfigError) as info:
        validate_bootstrap_file(path)
    assert must_mention in str(info.value), str(info.value)
