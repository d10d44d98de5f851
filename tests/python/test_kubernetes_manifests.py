"""deploy/kubernetes/: every manifest is valid, the pod hangs together, and the CRDs agree with
overlayd's validator.

How each artefact is checked (details in k8s_check.py and crd_agreement.py):

* built-in kinds: kubernetes-validate's strict JSON schemas of Kubernetes 1.30 and 1.37
  (unknown fields, wrong types, missing required fields);
* ServiceMonitor: a strict schema of the prometheus-operator fields we use;
* CRDs: the same strict CRD schema, plus structural-schema rules, CEL rules that compile,
  fieldPaths and printer columns that exist, defaults that validate;
* the set: cross-references no schema sees (selectors, ports, probes, socket, RBAC, drain vs
  grace period, the ConfigMap equal to envoy-config/sidecar.yaml byte for byte);
* AIOverlay/AIModel documents: an emulation of the API server (schema with strict fields and
  defaults, every x-kubernetes-validations rule evaluated with celpy) against
  `overlayd validate`, over the shared fixtures in fixtures/crd_agreement/.

Every check is shown to fail on a deliberately broken copy (tmp_path).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

import k8s_check
from crd_agreement import FIXTURE_DIR, all_fixtures, load_fixture, names_field, overlayd_validate, serve_options
from k8s_check import (
    CRD_DIR, DEPLOY_DIR, REPO_ROOT, CrdValidator, ManifestError, check_manifest, configmap_mismatch,
    deployment_problems, load_documents, manifest_files,
)

MANIFESTS = manifest_files()
DOCS = [(path, index, doc) for path in MANIFESTS for index, doc in enumerate(load_documents(path))]
ALL_DOCS = [doc for _, _, doc in DOCS]
# The sidecar's pod and what serves it (scaling/ holds a model backend, checked on its own).
POD_DOCS = [doc for path, _, doc in DOCS if "scaling" not in path.relative_to(DEPLOY_DIR).parts]
SIDECAR = REPO_ROOT / "envoy-config" / "sidecar.yaml"
CONFIGMAP = DEPLOY_DIR / "envoy-configmap.yaml"
CRDS = {doc["spec"]["names"]["kind"]: doc for doc in ALL_DOCS if doc["kind"] == "CustomResourceDefinition"}
FIXTURES = all_fixtures()
VALIDATOR = CrdValidator.from_dir()


def _doc_id(item) -> str:
    path, index, doc = item
    return f"{path.relative_to(DEPLOY_DIR)}#{index}:{doc.get('kind')}"


def _write_yaml(path: Path, docs: list) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


# --------------------------------------------------------------------------- every manifest


def test_the_expected_manifests_exist():
    kinds = sorted(doc["kind"] for doc in ALL_DOCS)
    assert kinds == sorted([
        "ConfigMap", "ConfigMap", "CustomResourceDefinition", "CustomResourceDefinition", "Deployment", "Role",
        "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor",
        # scaling/: a model backend and its two alternative scalers (test_scaling_manifests.py).
        "Deployment", "Service", "ScaledObject", "HorizontalPodAutoscaler",
    ])
    assert {p.relative_to(DEPLOY_DIR).as_posix() for p in MANIFESTS} >= {
        "crds/aioverlays.orchestrator.io.yaml", "crds/aimodels.orchestrator.io.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY_DIR)))
def test_manifest_parses_and_names_itself(path: Path):
    docs = load_documents(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is a {type(doc).__name__}"
        for key in ("apiVersion", "kind"):
            assert isinstance(doc.get(key), str) and doc[key], f"{path}: {key} missing"
        assert isinstance(doc.get("metadata", {}).get("name"), str), f"{path}: metadata.name missing"
        # Namespace-agnostic: `kubectl apply -n <namespace>` decides.
        assert "namespace" not in doc["metadata"], f"{path}: {doc['kind']} pins a namespace"


@pytest.mark.parametrize("item", DOCS, ids=_doc_id)
def test_manifest_is_valid(item):
    """Built-in kinds against Kubernetes' strict schemas; CRDs also as structural schemas."""
    _, _, doc = item
    check_manifest(doc)


def test_the_pod_hangs_together():
    """Selectors, ports, probes, socket, RBAC, drain/grace, and the sidecar bootstrap agree."""
    assert deployment_problems(POD_DOCS) == []


def test_overlayd_container_uses_only_options_overlayd_has():
    deployment = next(d for d in POD_DOCS if d["kind"] == "Deployment")
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "overlayd"]
    flags = [a for a in container["args"] if a.startswith("--")]
    assert container["args"][0] == "serve" and flags
    assert sorted(set(flags) - serve_options()) == []


def test_configmap_embeds_the_sidecar_bootstrap_byte_for_byte():
    assert configmap_mismatch(CONFIGMAP, SIDECAR) is None


# --------------------------------------------------------------------------- CRDs


@pytest.mark.parametrize("kind,plural", [("AIOverlay", "aioverlays"), ("AIModel", "aimodels")])
def test_crd_identity(kind: str, plural: str):
    crd = CRDS[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.orchestrator.io"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == ("orchestrator.io", "Namespaced")
    assert spec["names"]["plural"] == plural and spec["names"]["listKind"] == f"{kind}List"
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[-1] == "Age" and len(columns) >= 3
    schema = version["schema"]["openAPIV3Schema"]
    assert k8s_check.structural_problems(schema) == []
    # Every node is typed (the structural check's first rule, asserted once more on its own).
    untyped = [p for p, n in k8s_check.iter_nodes(schema)
               if "type" not in n and not n.get("x-kubernetes-preserve-unknown-fields")]
    assert untyped == []
    # Unknown fields under spec: pruned by default, so the docs must point at --validate=strict.
    assert not any(n.get("x-kubernetes-preserve-unknown-fields")
                   for p, n in k8s_check.iter_nodes(schema["properties"]["spec"]))
    text = (CRD_DIR / f"{plural}.orchestrator.io.yaml").read_text()
    assert "--validate=strict" in text
    assert "checked only by overlayd" in " ".join(schema["description"].split())


def test_defaults_are_those_of_overlayd():
    """What the API server stores for minimal documents: overlayd's defaults, made explicit."""
    overlay = VALIDATOR.defaulted({"apiVersion": "orchestrator.io/v1", "kind": "AIOverlay", "metadata": {"name": "x"},
                                   "spec": {"hostApp": "a.example.com", "models": [{"name": "m"}]}})
    assert overlay["spec"]["strategy"] == "Canary"
    model = VALIDATOR.defaulted({"apiVersion": "orchestrator.io/v1", "kind": "AIModel", "metadata": {"name": "x"},
                                 "spec": {"provider": "mock", "mock": {}}})
    assert model["spec"] == {"provider": "mock", "timeouts": {"connect": "2s", "total": "30s"},
                             "maxConcurrency": 16, "mock": {"latency": "0ms", "errorRate": 0}}
    openai = VALIDATOR.defaulted({"apiVersion": "orchestrator.io/v1", "kind": "AIModel", "metadata": {"name": "x"},
                                  "spec": {"provider": "openai", "baseURL": "https://a.example.com", "timeouts": {"total": "1m"}}})
    assert openai["spec"]["timeouts"] == {"total": "1m", "connect": "2s"}
    assert "mock" not in openai["spec"], "mock must not be defaulted onto an openai model"


def test_every_cel_rule_is_broken_by_some_fixture():
    """Each x-kubernetes-validations rule rejects at least one `reject` fixture (none is dead)."""
    messages = {r["message"] for crd in CRDS.values() for _, node in
                k8s_check.iter_nodes(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
                for r in node.get("x-kubernetes-validations", [])}
    produced = " ".join(p for f in FIXTURES if f.expect == "reject" for p in VALIDATOR.problems(f.documents[0]))
    assert sorted(m for m in messages if m not in produced) == []


# --------------------------------------------------------------------------- agreement


def test_fixture_set_is_sound():
    counts = {(f.documents[0].get("kind"), f.expect) for f in FIXTURES}
    for kind in ("AIOverlay", "AIModel"):
        assert (kind, "accept") in counts and (kind, "reject") in counts, kind
    assert len({f.name for f in FIXTURES}) == len(FIXTURES) >= 60


def test_seed_example_is_the_readme_example():
    """good-aioverlay-seed.yaml is the README's AIOverlay example, exactly (same data)."""
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    (example,) = [b for b in blocks if isinstance(b, dict) and b.get("metadata", {}).get("name") == "salesforce-copilot"]
    seed = load_fixture(FIXTURE_DIR / "good-aioverlay-seed.yaml")
    assert seed.documents == [example]
    assert example["spec"] == {"hostApp": "salesforce.com", "strategy": "Canary", "models": [
        {"name": "gpt-4-turbo", "weight": 80}, {"name": "llama-3-local", "weight": 20}]}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_crd_verdict(fixture):
    """The API server emulation: accepts `accept` and `overlayd-only`, rejects the rest at `path`."""
    subject, *context = fixture.documents
    for doc in context:
        assert VALIDATOR.problems(doc) == [], f"{fixture.name}: a context document is itself invalid"
    problems = VALIDATOR.problems(subject)
    if fixture.expect in ("accept", "overlayd-only"):
        assert problems == [], f"{fixture.name} ({fixture.reason}) rejected by the CRD: {problems}"
    else:
        assert problems, f"{fixture.name} ({fixture.reason}) accepted by the CRD"
        assert any(names_field(p, fixture.field) for p in problems), \
            f"{fixture.name}: the CRD rejects it, but not at {fixture.field}: {problems}"


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_overlayd_verdict(fixture):
    """`overlayd validate`: accepts `accept` and `crd-only`, rejects the rest naming `path`."""
    verdict = overlayd_validate(fixture.path)
    if fixture.expect in ("accept", "crd-only"):
        assert verdict.accepted, f"{fixture.name} ({fixture.reason}) rejected by overlayd:\n{verdict.output}"
    else:
        assert not verdict.accepted, f"{fixture.name} ({fixture.reason}) accepted by overlayd:\n{verdict.output}"
        assert verdict.names(fixture.field), \
            f"{fixture.name}: overlayd rejects it, but not at {fixture.field}:\n{verdict.output}"


# --------------------------------------------------------------------------- broken copies


def _crd_copy(kind: str) -> dict:
    return copy.deepcopy(CRDS[kind])


def _schema(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _break_untyped(crd):
    del _schema(crd)["properties"]["spec"]["properties"]["hostApp"]["type"]


def _break_cel_syntax(crd):
    _schema(crd)["properties"]["spec"]["x-kubernetes-validations"][0]["rule"] += " &&"


def _break_field_path(crd):
    _schema(crd)["properties"]["spec"]["x-kubernetes-validations"][0]["fieldPath"] = ".modles"


def _break_schema_keyword(crd):
    _schema(crd)["properties"]["spec"]["properties"]["hostApp"]["patern"] = "x"


def _break_printer_column(crd):
    crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] = ".spec.hostapp"


def _break_unique_items(crd):
    _schema(crd)["properties"]["spec"]["properties"]["models"]["uniqueItems"] = True


def _break_metadata(crd):
    _schema(crd)["properties"]["metadata"]["properties"] = {"name": {"type": "string", "maxLength": 10}}


def _break_crd_name(crd):
    crd["metadata"]["name"] = "aioverlay.orchestrator.io"


BROKEN_CRDS = {
    # name: (kind, edit, text the error must contain)
    "node-without-type": ("AIOverlay", _break_untyped, "spec.hostApp: type is required"),
    "cel-syntax-error": ("AIOverlay", _break_cel_syntax, "does not compile"),
    "fieldPath-not-in-schema": ("AIOverlay", _break_field_path, "fieldPath '.modles'"),
    "misspelt-schema-keyword": ("AIOverlay", _break_schema_keyword, "patern"),
    "printer-column-to-nowhere": ("AIOverlay", _break_printer_column, ".spec.hostapp"),
    "uniqueItems-true": ("AIOverlay", _break_unique_items, "uniqueItems"),
    "metadata-restricted": ("AIOverlay", _break_metadata, "metadata: at the root only"),
    "name-not-plural.group": ("AIOverlay", _break_crd_name, "<plural>.<group>"),
    "invalid-default": ("AIModel", lambda c: _schema(c)["properties"]["spec"]["properties"]["maxConcurrency"]
                        .__setitem__("default", 0), "default 0 is invalid"),
    "default-breaking-a-cel-rule": ("AIModel", lambda c: _schema(c)["properties"]["spec"]["properties"]["timeouts"]
                                    ["properties"]["connect"].__setitem__("default", "2m"), "must be 1ms..60s"),
}


@pytest.mark.parametrize("variant", sorted(BROKEN_CRDS))
def test_broken_crd_is_rejected(variant: str, tmp_path: Path):
    kind, edit, must_mention = BROKEN_CRDS[variant]
    pristine = _crd_copy(kind)
    broken = _crd_copy(kind)
    edit(broken)
    assert broken != pristine
    check_manifest(load_documents(_write_yaml(tmp_path / "pristine.yaml", [pristine]))[0])
    (doc,) = load_documents(_write_yaml(tmp_path / "crd.yaml", [broken]))
    with pytest.raises(ManifestError) as info:
        check_manifest(doc)
    assert must_mention in str(info.value), str(info.value)


# A CRD that lost a rule (or a bound) no longer agrees with overlayd: the agreement check sees it.
WEAKENED_CRDS = {
    "without-the-weights-sum-rule": ("AIOverlay", lambda s: s["properties"]["spec"]["x-kubernetes-validations"].pop(1),
                                     "bad-aioverlay-weights-sum.yaml"),
    "without-the-hostApp-pattern": ("AIOverlay", lambda s: s["properties"]["spec"]["properties"]["hostApp"].pop("pattern"),
                                    "bad-aioverlay-hostapp-port.yaml"),
    "weight-without-range": ("AIOverlay", lambda s: [s["properties"]["spec"]["properties"]["models"]["items"]
                                                     ["properties"]["weight"].pop(k) for k in ("minimum", "maximum")],
                             "bad-aioverlay-weight-above-100.yaml"),
    "preserving-unknown-spec-fields": ("AIModel", lambda s: s["properties"]["spec"].__setitem__(
        "x-kubernetes-preserve-unknown-fields", True), "bad-aimodel-unknown-spec-field.yaml"),
    "without-the-apiKey-one-of-rule": ("AIModel", lambda s: s["properties"]["spec"]["properties"]["apiKey"]
                                       .pop("x-kubernetes-validations"), "bad-aimodel-apikey-both.yaml"),
}


@pytest.mark.parametrize("variant", sorted(WEAKENED_CRDS))
def test_weakened_crd_breaks_agreement(variant: str):
    kind, edit, fixture_name = WEAKENED_CRDS[variant]
    fixture = load_fixture(FIXTURE_DIR / fixture_name)
    assert VALIDATOR.problems(fixture.documents[0]), "the real CRD rejects it"
    crds = [copy.deepcopy(c) for c in VALIDATOR.crds]
    edit(_schema(next(c for c in crds if c["spec"]["names"]["kind"] == kind)))
    assert CrdValidator(crds).problems(fixture.documents[0]) == [], \
        f"{fixture_name} should pass the weakened CRD, so test_crd_verdict would fail"


def _deployment(docs):
    return next(d for d in docs if d["kind"] == "Deployment")


def _container(docs, name):
    return next(c for c in _deployment(docs)["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _set_arg(docs, flag, value):
    args = _container(docs, "overlayd")["args"]
    args[args.index(flag) + 1] = value


BROKEN_SETS = {
    # name: (edit of all manifest documents, text the problem must contain)
    "grace-not-above-drain": (lambda d: _deployment(d)["spec"]["template"]["spec"].__setitem__(
        "terminationGracePeriodSeconds", 10), "must exceed overlayd's --drain-timeout"),
    "socket-path-mismatch": (lambda d: _set_arg(d, "--listen", "unix:/var/run/overlayd/ext_proc.sock"),
                             "Envoy's overlayd cluster connects to"),
    "listen-on-tcp": (lambda d: _set_arg(d, "--listen", "127.0.0.1:50051"), "is not a unix: socket"),
    "admin-port-clash": (lambda d: (_set_arg(d, "--admin", "0.0.0.0:8080"), _container(d, "overlayd")["ports"][0]
                                    .__setitem__("containerPort", 8080)), "bind the same port"),
    "admin-on-loopback": (lambda d: _set_arg(d, "--admin", "127.0.0.1:9901"), "must listen on 0.0.0.0"),
    "readiness-on-healthz": (lambda d: _container(d, "overlayd")["readinessProbe"]["httpGet"].__setitem__(
        "path", "/healthz"), "readinessProbe must be httpGet /readyz"),
    "runs-as-root": (lambda d: _container(d, "overlayd")["securityContext"].__setitem__("runAsUser", 0),
                     "securityContext.runAsUser"),
    "capabilities-kept": (lambda d: _container(d, "overlayd")["securityContext"].pop("capabilities"),
                          "securityContext.capabilities"),
    "no-limits": (lambda d: _container(d, "envoy")["resources"].pop("limits"), "envoy resources.limits"),
    "socket-not-shared": (lambda d: _container(d, "envoy")["volumeMounts"].pop(1), "must be one volume mounted in both"),
    "service-selects-nothing": (lambda d: next(x for x in d if x["kind"] == "Service")["spec"]["selector"]
                                .__setitem__("app.kubernetes.io/name", "crm"), "Service selector"),
    "service-bypasses-envoy": (lambda d: next(x for x in d if x["kind"] == "Service")["spec"]["ports"][0]
                               .__setitem__("targetPort", "app"), "must target Envoy"),
    "monitor-wrong-port": (lambda d: next(x for x in d if x["kind"] == "ServiceMonitor")["spec"]["endpoints"][0]
                           .__setitem__("port", "metrics"), "no Service port name"),
    "role-without-watch": (lambda d: next(x for x in d if x["kind"] == "Role")["rules"][0]["verbs"].remove("watch"),
                           "Role lacks"),
    "role-may-write": (lambda d: next(x for x in d if x["kind"] == "Role")["rules"][0]["verbs"].append("update"),
                       "Role grants more"),
    "binding-to-other-account": (lambda d: next(x for x in d if x["kind"] == "RoleBinding")["subjects"][0]
                                 .__setitem__("name", "default"), "does not bind the ServiceAccount"),
    "configmap-not-mounted": (lambda d: next(x for x in d if x["kind"] == "ConfigMap")["metadata"]
                              .__setitem__("name", "envoy"), "not a file of a mounted ConfigMap"),
}


@pytest.mark.parametrize("variant", sorted(BROKEN_SETS))
def test_broken_manifest_set_is_rejected(variant: str, tmp_path: Path):
    edit, must_mention = BROKEN_SETS[variant]
    docs = copy.deepcopy(POD_DOCS)
    edit(docs)
    assert docs != POD_DOCS
    reloaded = load_documents(_write_yaml(tmp_path / "all.yaml", docs))
    problems = deployment_problems(reloaded)
    assert any(must_mention in p for p in problems), problems


BROKEN_MANIFESTS = {
    # name: (file, edit of its text, text the error must contain)
    "probe-field-typo": ("deployment.yaml", lambda t: t.replace("path: /healthz", "paht: /healthz"), "paht"),
    "port-as-string": ("deployment.yaml", lambda t: t.replace("containerPort: 9901", 'containerPort: "9901"'),
                       "containerPort"),
    "security-context-typo": ("deployment.yaml", lambda t: t.replace("readOnlyRootFilesystem: true",
                                                                     "readOnlyRootFileSystem: true", 1),
                              "readOnlyRootFileSystem"),
    "service-port-typo": ("service.yaml", lambda t: t.replace("targetPort: http-metrics", "targetport: http-metrics"),
                          "targetport"),
    "rolebinding-without-roleRef": ("rbac.yaml", lambda t: re.sub(r"roleRef:\n(  .*\n)+", "", t), "roleRef"),
    "servicemonitor-field-typo": ("servicemonitor.yaml", lambda t: t.replace("interval: 30s", "intervall: 30s"),
                                  "intervall"),
    "servicemonitor-bad-interval": ("servicemonitor.yaml", lambda t: t.replace("interval: 30s", "interval: 30 sec"),
                                    "30 sec"),
    "configmap-data-typo": ("envoy-configmap.yaml", lambda t: t.replace("\ndata:\n", "\ndatas:\n", 1), "datas"),
}


@pytest.mark.parametrize("variant", sorted(BROKEN_MANIFESTS))
def test_broken_manifest_is_rejected(variant: str, tmp_path: Path):
    name, edit, must_mention = BROKEN_MANIFESTS[variant]
    original = (DEPLOY_DIR / name).read_text()
    broken = edit(original)
    assert broken != original, "the edit did not change the file"
    (tmp_path / "pristine.yaml").write_text(original)
    for doc in load_documents(tmp_path / "pristine.yaml"):
        check_manifest(doc)
    (tmp_path / name).write_text(broken)
    errors = []
    for doc in load_documents(tmp_path / name):
        try:
            check_manifest(doc)
        except ManifestError as exc:
            errors.append(str(exc))
    assert errors and must_mention in "\n".join(errors), errors


def test_stale_configmap_is_detected(tmp_path: Path):
    """One changed byte of the bootstrap (a port) and the byte-for-byte check fails."""
    stale = tmp_path / "envoy-configmap.yaml"
    stale.write_text(CONFIGMAP.read_text().replace("port_value: 10000", "port_value: 10001"))
    problem = configmap_mismatch(stale, SIDECAR)
    assert problem is not None and "line" in problem
    reindented = tmp_path / "reindented.yaml"
    reindented.write_text(CONFIGMAP.read_text().replace("    #   Service :80", "    #  Service :80"))
    assert configmap_mismatch(reindented, SIDECAR) is not None
