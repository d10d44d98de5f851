"""Offline check of the Istio EnvoyFilter in envoy-config/istio/.

No Istio control plane here either. What Istio does with an EnvoyFilter patch is: match a place
in the Envoy config it generates for the selected sidecars, then turn ``patch.value`` into the
Envoy message for that place (``HTTP_FILTER`` -> ``HttpFilter``, ``CLUSTER`` -> ``Cluster``) and
insert it. This module checks:

1. the resource: apiVersion networking.istio.io/v1alpha3, kind EnvoyFilter, metadata.name, a
   ``workloadSelector``, and only fields of Istio's EnvoyFilter API (strict schema below, with
   Istio's enums for ``applyTo``, ``match.context`` and ``patch.operation``);
2. each ``patch.value`` parsed into its real Envoy message from xds-protos (``ParseDict``, unknown
   fields rejected, every ``typed_config`` resolved and unpacked, the PGV rules Envoy enforces,
   and the ext_proc rules of docs/envoy-ext-proc.md §1.3) - envoy_config_check does this;
3. what overlayd needs: the ext_proc filter inserted INSERT_BEFORE the router inside the
   http_connection_manager of SIDECAR_INBOUND; a CLUSTER ADD of the cluster it names, speaking
   HTTP/2, that Istio's validation accepts (no object match on an ADD).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2

from envoy_config_check import (
    EnvoyConfigError, _cluster_speaks_http2, check_message, parse_message, walk,
)

HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
EXT_PROC_TYPE = "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"

_APPLY_TO = ["INVALID", "LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION",
             "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER"]
_CONTEXT = ["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"]
_OPERATION = ["INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"]
_NAME = {"type": "object", "additionalProperties": False, "properties": {"name": {"type": "string"}}}

# networking.istio.io/v1alpha3 EnvoyFilter, the fields of Istio's API reference (strict).
ENVOYFILTER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "networking.istio.io/v1alpha3"},
        "kind": {"const": "EnvoyFilter"},
        "metadata": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["configPatches"],
            "properties": {
                "workloadSelector": {
                    "type": "object", "additionalProperties": False, "required": ["labels"],
                    "properties": {"labels": {"type": "object", "minProperties": 1,
                                              "additionalProperties": {"type": "string"}}},
                },
                "priority": {"type": "integer"},
                "configPatches": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["applyTo", "patch"],
                        "properties": {
                            "applyTo": {"enum": _APPLY_TO},
                            "match": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "context": {"enum": _CONTEXT},
                                    "proxy": {"type": "object"},
                                    "listener": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "portNumber": {"type": "integer"},
                                            "name": {"type": "string"},
                                            "filterChain": {
                                                "type": "object",
                                                "additionalProperties": False,
                                                "properties": {
                                                    "name": {"type": "string"},
                                                    "sni": {"type": "string"},
                                                    "transportProtocol": {"type": "string"},
                                                    "applicationProtocols": {"type": "string"},
                                                    "destinationPort": {"type": "integer"},
                                                    "filter": {
                                                        "type": "object",
                                                        "additionalProperties": False,
                                                        "properties": {"name": {"type": "string"}, "subFilter": _NAME},
                                                    },
                                                },
                                            },
                                        },
                                    },
                                    "routeConfiguration": {"type": "object"},
                                    "cluster": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {"portNumber": {"type": "integer"}, "service": {"type": "string"},
                                                       "subset": {"type": "string"}, "name": {"type": "string"}},
                                    },
                                },
                            },
                            "patch": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["operation"],
                                "properties": {
                                    "operation": {"enum": _OPERATION},
                                    "value": {"type": "object"},
                                    "filterClass": {"enum": ["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


class EnvoyFilterError(Exception):
    """The EnvoyFilter would be rejected (by Istio or by Envoy) or does not do what overlayd needs."""


def load(path: Path) -> dict:
    with open(path, "rb") as fh:
        return yaml.safe_load(fh)


def check_envoyfilter(resource: dict) -> dict:
    """Check ``resource``; return {"filter": HttpFilter, "cluster": Cluster}; raise listing every problem."""
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in jsonschema.Draft202012Validator(ENVOYFILTER_SCHEMA).iter_errors(resource)]
    if problems:
        raise EnvoyFilterError("\n  ".join(["not a valid EnvoyFilter:"] + problems))
    patches = resource["spec"]["configPatches"]
    filters = [(i, p) for i, p in enumerate(patches) if p["applyTo"] == "HTTP_FILTER"]
    clusters = [(i, p) for i, p in enumerate(patches) if p["applyTo"] == "CLUSTER"]
    if len(filters) != 1 or len(clusters) != 1 or len(patches) != 2:
        raise EnvoyFilterError(f"expected one HTTP_FILTER and one CLUSTER patch, got {[p['applyTo'] for p in patches]}")
    if "workloadSelector" not in resource["spec"]:
        problems.append("spec.workloadSelector: required, or every sidecar of the namespace is patched")

    parsed: dict = {}
    (fi, fp), (ci, cp) = filters[0], clusters[0]

    # 1. The HTTP filter: before the router of the inbound HCM.
    where = f"configPatches[{fi}]"
    match = fp.get("match", {})
    if match.get("context") != "SIDECAR_INBOUND":
        problems.append(f"{where}.match.context: must be SIDECAR_INBOUND (requests to the app), got {match.get('context')}")
    chain_filter = match.get("listener", {}).get("filterChain", {}).get("filter", {})
    if chain_filter.get("name") != HCM:
        problems.append(f"{where}.match.listener.filterChain.filter.name: must be {HCM}")
    if chain_filter.get("subFilter", {}).get("name") != ROUTER:
        problems.append(f"{where}.match...subFilter.name: must be {ROUTER} (INSERT_BEFORE needs the filter to insert before)")
    if fp["patch"]["operation"] != "INSERT_BEFORE":
        problems.append(f"{where}.patch.operation: must be INSERT_BEFORE (the router is terminal), got {fp['patch']['operation']}")
    try:
        http_filter = parse_message(fp["patch"].get("value", {}), http_connection_manager_pb2.HttpFilter())
        problems += check_message(http_filter, f"{where}.patch.value")
        parsed["filter"] = http_filter
    except EnvoyConfigError as exc:
        problems.append(f"{where}.patch.value: {exc}")

    # 2. The cluster: added, HTTP/2, and the one the filter names.
    where = f"configPatches[{ci}]"
    if cp["patch"]["operation"] != "ADD":
        problems.append(f"{where}.patch.operation: must be ADD (a new cluster), got {cp['patch']['operation']}")
    if set(cp.get("match", {})) - {"context", "proxy"}:
        problems.append(f"{where}.match: an ADD matches nothing but context/proxy (Istio ignores or rejects the rest)")
    if cp.get("match", {}).get("context") != "SIDECAR_INBOUND":
        problems.append(f"{where}.match.context: must be SIDECAR_INBOUND like the filter")
    try:
        cluster = parse_message(cp["patch"].get("value", {}), cluster_pb2.Cluster())
        problems += check_message(cluster, f"{where}.patch.value")
        parsed["cluster"] = cluster
        if not _cluster_speaks_http2(cluster):
            problems.append(f"{where}.patch.value: cluster {cluster.name!r} is used for gRPC but is not configured for HTTP/2")
    except EnvoyConfigError as exc:
        problems.append(f"{where}.patch.value: {exc}")

    if "filter" in parsed and "cluster" in parsed:
        f = parsed["filter"]
        if f.name != "envoy.filters.http.ext_proc" or not f.typed_config.type_url.endswith("/" + EXT_PROC_TYPE):
            problems.append(f"the HTTP filter must be envoy.filters.http.ext_proc with an {EXT_PROC_TYPE}")
        names = [m.cluster_name for _, m in walk(f) if m.DESCRIPTOR.full_name == "envoy.config.core.v3.GrpcService.EnvoyGrpc"]
        if names != [parsed["cluster"].name]:
            problems.append(f"the filter's envoy_grpc cluster {names} is not the added cluster {parsed['cluster'].name!r}")
    if problems:
        raise EnvoyFilterError("\n  ".join(["EnvoyFilter problems:"] + problems))
    return parsed
