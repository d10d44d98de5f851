"""deploy/control-plane/: the control plane's manifests are valid Kubernetes (the strict schemas
of k8s_check, as deploy/kubernetes/), hang together (selectors, ports, probes, the PVC and the
Secret's keys where the arguments expect them), use only options `overlayd control-plane` has,
and the sidecar patch, applied to deploy/kubernetes/deployment.yaml, points overlayd at the
control plane's Service with options `overlayd serve` has."""
from __future__ import annotations

import copy
import re
import subprocess

import pytest
import yaml

from k8s_check import REPO_ROOT, ManifestError, check_manifest
from overlayd_proc import overlayd_bin

DIR = REPO_ROOT / "deploy" / "control-plane"
DOCS = list(yaml.safe_load_all((DIR / "control-plane.yaml").read_text()))
PATCH = yaml.safe_load((DIR / "sidecar-patch.yaml").read_text())


def options(command: str) -> set[str]:
    text = subprocess.run([str(overlayd_bin()), command, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", text))


def kind(docs, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == name]
    return doc


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d["kind"])
def test_manifest_is_valid(doc):
    check_manifest(doc)
    assert "namespace" not in doc["metadata"]


def test_a_broken_copy_is_rejected():
    broken = copy.deepcopy(kind(DOCS, "Deployment"))
    broken["spec"]["replicas"] = "one"
    with pytest.raises(ManifestError):
        check_manifest(broken)


def problems(docs) -> list[str]:
    found = []
    deployment, service, claim = kind(docs, "Deployment"), kind(docs, "Service"), kind(docs, "PersistentVolumeClaim")
    pod = deployment["spec"]["template"]
    if deployment["spec"]["replicas"] != 1 or deployment["spec"]["strategy"]["type"] != "Recreate":
        found.append("one writer of the store: replicas 1 and strategy Recreate")
    labels = pod["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"]):
        if any(labels.get(k) != v for k, v in selector.items()):
            found.append(f"selector {selector} does not match {labels}")
    (container,) = pod["spec"]["containers"]
    args = container["args"]
    if args[0] != "control-plane" or set(a for a in args if a.startswith("--")) - options("control-plane"):
        found.append(f"args {args} are not a valid overlayd control-plane invocation")
    value = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("--")}
    port = int(value["--listen"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports.get(service["spec"]["ports"][0]["targetPort"]) != port:
        found.append("the Service does not reach --listen")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    if value["--data"] != mounts["data"] or volumes["data"]["persistentVolumeClaim"]["claimName"] != claim["metadata"]["name"]:
        found.append("--data is not the PersistentVolumeClaim")
    for flag, key in (("--token-file", "operator.token"), ("--report-token-file", "report.token")):
        if value[flag] != f"{mounts['tokens']}/{key}":
            found.append(f"{flag} is not the Secret's key {key}")
    if "secret" not in volumes["tokens"]:
        found.append("the tokens are not a Secret")
    for probe in ("readinessProbe", "livenessProbe"):
        if container[probe]["httpGet"]["path"] != "/healthz" or container[probe]["httpGet"]["port"] not in ports:
            found.append(f"{probe} does not ask /healthz on a container port")
    return found


def test_the_control_plane_hangs_together():
    assert problems(DOCS) == []


def test_a_control_plane_that_does_not_hang_together_is_caught():
    broken = copy.deepcopy(DOCS)
    kind(broken, "Deployment")["spec"]["replicas"] = 2
    kind(broken, "Service")["spec"]["selector"] = {"app": "other"}
    assert len(problems(broken)) == 2


def test_the_sidecar_patch_points_at_the_service():
    deployment = yaml.safe_load_all((REPO_ROOT / "deploy/kubernetes/deployment.yaml").read_text())
    deployment = next(d for d in deployment if d["kind"] == "Deployment")
    (patched,) = PATCH["spec"]["template"]["spec"]["containers"]
    # Strategic merge by name: the patch's args replace overlayd's; volumes are added.
    pod = deployment["spec"]["template"]["spec"]
    (overlayd,) = [c for c in pod["containers"] if c["name"] == patched["name"]]
    overlayd = {**overlayd, "args": patched["args"], "env": overlayd.get("env", []) + patched["env"],
                "volumeMounts": overlayd.get("volumeMounts", []) + patched["volumeMounts"]}
    pod = {**pod, "containers": [overlayd if c["name"] == "overlayd" else c for c in pod["containers"]],
           "volumes": pod["volumes"] + PATCH["spec"]["template"]["spec"]["volumes"]}
    check_manifest({**deployment, "spec": {**deployment["spec"], "template": {**deployment["spec"]["template"], "spec": pod}}})
    args = patched["args"]
    assert args[0] == "serve" and not set(a for a in args if a.startswith("--")) - options("serve")
    url = args[args.index("--control-plane") + 1]
    service = kind(DOCS, "Service")
    assert url == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/v1/desired-state"
    mounts = {m["name"]: m["mountPath"] for m in patched["volumeMounts"]}
    assert args[args.index("--control-plane-report-token-file") + 1] == mounts["overlayd-report-token"] + "/report.token"
    assert args[args.index("--state-dir") + 1] == mounts["overlayd-state"]
