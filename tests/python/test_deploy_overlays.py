"""The desired state shipped with the Deployment is valid for overlayd and wired into the pod."""
import pathlib
import subprocess

import yaml

from overlayd_proc import overlayd_bin

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGMAP = ROOT / "deploy/kubernetes/overlays-configmap.yaml"
DEPLOYMENT = ROOT / "deploy/kubernetes/deployment.yaml"


def test_configmap_overlays_pass_overlayd_validate(tmp_path):
    data = yaml.safe_load(CONFIGMAP.read_text())["data"]["overlays.yaml"]
    path = tmp_path / "overlays.yaml"
    path.write_text(data)
    result = subprocess.run([str(overlayd_bin()), "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 1 overlay"), result.stdout


def test_a_broken_configmap_is_caught(tmp_path):
    data = yaml.safe_load(CONFIGMAP.read_text())["data"]["overlays.yaml"].replace("weight: 20", "weight: 30")
    path = tmp_path / "overlays.yaml"
    path.write_text(data)
    result = subprocess.run([str(overlayd_bin()), "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "spec.models: weights must sum to 100, got 110" in result.stdout


def test_overlayd_container_reads_the_configmap():
    docs = [d for d in yaml.safe_load_all(DEPLOYMENT.read_text()) if d]
    pod = docs[0]["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "overlayd"]
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    (mount,) = [m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = yaml.safe_load(CONFIGMAP.read_text())
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_path.rsplit("/", 1)[1] in configmap["data"]
