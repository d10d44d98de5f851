"""deploy/kubernetes/scaling/: the model backend and its two alternative scalers on overlayd's
call-rate forecast (a KEDA ScaledObject, an autoscaling/v2 HPA on an external metric).

The schemas (kubernetes-validate for the built-in kinds, keda_check's for ScaledObject) run in
test_kubernetes_manifests.py with every other manifest; here: the cross-references no schema
sees, and each check failing on a broken copy. That the queried series exists on a running
overlayd, through a real Prometheus: test_prometheus_scrape.py.
"""

from __future__ import annotations

import copy

import pytest

import keda_check
import prometheus_names
from k8s_check import DEPLOY_DIR, ManifestError, check_manifest, load_documents

SCALING = DEPLOY_DIR / "scaling"
DOCS = [doc for path in sorted(SCALING.glob("*.yaml")) for doc in load_documents(path)]


def _one(docs, kind):
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def scaling_problems(docs: list[dict]) -> list[str]:
    problems = []
    deployment = _one(docs, "Deployment")
    name = deployment["metadata"]["name"]
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        target = _one(docs, kind)["spec"]["scaleTargetRef"]
        if (target.get("kind", "Deployment"), target["name"]) != ("Deployment", name):
            problems.append(f"{kind} scales {target}, not the Deployment {name}")
    scaled = _one(docs, "ScaledObject")
    for trigger in scaled["spec"]["triggers"]:
        query = trigger["metadata"]["query"]
        if prometheus_names.metric_names([query]) != {"overlayd_model_call_rate_forecast"}:
            problems.append(f"ScaledObject query reads {prometheus_names.metric_names([query])}, not the forecast")
        if f'model="{name}"' not in query:
            problems.append(f"ScaledObject query {query!r} does not select model={name}")
        if 'horizon="15m"' not in query and 'horizon="5m"' not in query:
            problems.append(f"ScaledObject query {query!r} selects no horizon overlayd exports (5m, 15m)")
    hpa = _one(docs, "HorizontalPodAutoscaler")
    for metric in hpa["spec"]["metrics"]:
        external = metric["external"]["metric"]
        labels = external.get("selector", {}).get("matchLabels", {})
        if external["name"] != "overlayd_model_call_rate_forecast":
            problems.append(f"HPA external metric {external['name']} is not the forecast")
        if labels.get("model") != name or labels.get("horizon") not in {"5m", "15m"}:
            problems.append(f"HPA external metric selector {labels} does not pick model={name} and a horizon")
    return problems


def test_the_scalers_target_the_backend_and_read_its_forecast():
    assert scaling_problems(DOCS) == []


def test_both_scalers_agree_on_bounds_and_target():
    scaled = _one(DOCS, "ScaledObject")["spec"]
    hpa = _one(DOCS, "HorizontalPodAutoscaler")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (hpa["minReplicas"], hpa["maxReplicas"])
    assert float(scaled["triggers"][0]["metadata"]["threshold"]) == float(hpa["metrics"][0]["external"]["target"]["averageValue"])


BROKEN = {
    "other-target": (lambda d: _one(d, "ScaledObject")["spec"]["scaleTargetRef"].__setitem__("name", "vllm"),
                     "not the Deployment"),
    "hpa-other-target": (lambda d: _one(d, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].__setitem__("name", "x"),
                         "not the Deployment"),
    "query-other-metric": (lambda d: _one(d, "ScaledObject")["spec"]["triggers"][0]["metadata"].__setitem__(
        "query", 'sum(rate(overlayd_model_calls_total{model="vllm-llama"}[5m]))'), "not the forecast"),
    "query-other-model": (lambda d: _one(d, "ScaledObject")["spec"]["triggers"][0]["metadata"].__setitem__(
        "query", 'sum(overlayd_model_call_rate_forecast{model="other",horizon="15m"})'), "does not select model"),
    "query-unknown-horizon": (lambda d: _one(d, "ScaledObject")["spec"]["triggers"][0]["metadata"].__setitem__(
        "query", 'sum(overlayd_model_call_rate_forecast{model="vllm-llama",horizon="1h"})'), "no horizon"),
    "hpa-selector": (lambda d: _one(d, "HorizontalPodAutoscaler")["spec"]["metrics"][0]["external"]["metric"]
                     ["selector"]["matchLabels"].__setitem__("horizon", "1h"), "does not pick"),
}


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_broken_scaling_set_is_rejected(variant):
    edit, must_mention = BROKEN[variant]
    docs = copy.deepcopy(DOCS)
    edit(docs)
    problems = scaling_problems(docs)
    assert any(must_mention in p for p in problems), problems


def _scaled():
    return copy.deepcopy(_one(DOCS, "ScaledObject"))


BROKEN_SCALEDOBJECTS = {
    "field-typo": (lambda d: d["spec"].__setitem__("maxReplicas", d["spec"].pop("maxReplicaCount")), "maxReplicas"),
    "no-target-name": (lambda d: d["spec"]["scaleTargetRef"].pop("name"), "'name' is a required property"),
    "threshold-not-a-number": (lambda d: d["spec"]["triggers"][0]["metadata"].__setitem__("threshold", "lots"),
                               "spec.triggers[0].metadata.threshold"),
    "threshold-as-int": (lambda d: d["spec"]["triggers"][0]["metadata"].__setitem__("threshold", 120),
                         "spec.triggers[0].metadata.threshold"),
    "prometheus-metadata-typo": (lambda d: d["spec"]["triggers"][0]["metadata"].__setitem__(
        "serverAdress", d["spec"]["triggers"][0]["metadata"].pop("serverAddress")), "serverAdress"),
    "no-triggers": (lambda d: d["spec"].__setitem__("triggers", []), "spec.triggers"),
    "bad-metric-type": (lambda d: d["spec"]["triggers"][0].__setitem__("metricType", "Average"), "metricType"),
    "min-above-max": (lambda d: d["spec"].__setitem__("minReplicaCount", 50), "above spec.maxReplicaCount"),
    "hpa-behavior-typo": (lambda d: d["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
                          .__setitem__("stabilisationWindowSeconds", 60), "stabilisationWindowSeconds"),
    "wrong-api-version": (lambda d: d.__setitem__("apiVersion", "keda.k8s.io/v1alpha1"), "apiVersion"),
}


def test_the_scaledobject_passes_its_schema():
    assert keda_check.scaledobject_problems(_scaled()) == []


@pytest.mark.parametrize("variant", sorted(BROKEN_SCALEDOBJECTS))
def test_broken_scaledobject_is_rejected(variant):
    edit, must_mention = BROKEN_SCALEDOBJECTS[variant]
    doc = _scaled()
    edit(doc)
    with pytest.raises(ManifestError) as caught:
        check_manifest(doc)
    assert must_mention in str(caught.value), str(caught.value)
