"""The PromQL expressions shipped in deploy/ (Prometheus rules, the Grafana dashboard, the KEDA and
HPA manifests) and the metric names they read.

Names are found by pattern: overlayd's metrics are ``overlayd_*`` series and our recording rules
``overlayd:*`` (defined in deploy/prometheus/overlayd.rules.yml); histogram series keep their
``_bucket`` suffix, which is what Prometheus stores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from overlayd_proc import REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus" / "overlayd.rules.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "overlayd.json"
KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"

METRIC_RE = re.compile(r"\b(overlayd_[a-zA-Z0-9_]+)\b")
RECORDED_RE = re.compile(r"\b(overlayd:[a-zA-Z0-9_:]+)\b")

# Grafana's variables, as a query at "now" sees them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$job": ".*", "${job}": ".*"}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def rule_exprs() -> list[str]:
    return [rule["expr"] for rule in rules()]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets(dash: dict | None = None) -> list[tuple[str, dict]]:
    """(panel title, target) for every query of every panel, rows' nested panels included."""
    found = []
    for panel in (dash or dashboard())["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target))
    return found


def grafana_to_promql(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def dashboard_exprs() -> list[str]:
    exprs = [target["expr"] for _, target in dashboard_targets()]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def scaling_exprs() -> list[str]:
    """The Prometheus queries of the KEDA ScaledObject and of the HPA's external metric."""
    exprs = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc.get("kind") == "ScaledObject":
                exprs += [t["metadata"]["query"] for t in doc["spec"]["triggers"] if t["type"] == "prometheus"]
            if doc.get("kind") == "HorizontalPodAutoscaler":
                exprs += [external_metric_query(m["external"]["metric"]) for m in doc["spec"]["metrics"]
                          if m["type"] == "External"]
    return exprs


def external_metric_query(metric: dict) -> str:
    """What prometheus-adapter's external rule (deploy/kubernetes/scaling/hpa-external.yaml) asks
    Prometheus for an HPA's external metric: the series summed, its selector as matchers."""
    labels = metric.get("selector", {}).get("matchLabels", {})
    matchers = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"sum({metric['name']}{{{matchers}}})"


def metric_names(exprs: list[str]) -> set[str]:
    names: set[str] = set()
    for expr in exprs:
        names |= set(METRIC_RE.findall(expr))
    return names


def recorded_references(exprs: list[str]) -> set[str]:
    names: set[str] = set()
    for expr in exprs:
        names |= set(RECORDED_RE.findall(expr))
    return names
