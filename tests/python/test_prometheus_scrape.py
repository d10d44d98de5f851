"""A real Prometheus (Debian's ``prometheus``) on 127.0.0.1 scrapes two running overlayd processes
and loads deploy/prometheus/overlayd.rules.yml; through its HTTP API the test checks that every
metric the rules, the Grafana dashboard and the KEDA trigger name exists, that every rule
evaluates without error, and that every dashboard query is valid PromQL.

The two processes produce every series: ``a`` serves a file (``--config``) with a Canary and a
Shadow overlay and gets ext_proc requests (model calls, a drift pair, the forecast with one-second
buckets); ``b`` follows ``a``'s ``/v1/desired-state`` as its control plane.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import grpc
import pytest

import prometheus_names as names
from extproc_helpers import CHANNEL_OPTIONS, Stream, request_headers
from overlayd_proc import OverlaydProcess, scrape, wait_until

CONFIG = """\
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: crm}
spec:
  hostApp: crm.example.com
  models: [{name: mock-a, weight: 100}]
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: shadowed}
spec:
  hostApp: shadow.example.com
  strategy: Shadow
  models: [{name: mock-a}, {name: mock-b}]
  shadow: {sampleRate: 1.0}
"""

# The forecast's error of the 15-bucket horizon needs 16 buckets of one second; Prometheus
# scrapes every second.
SERIES_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, **params: str) -> dict:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def overlayds(tmp_path_factory):
    directory = tmp_path_factory.mktemp("scrape")
    config = directory / "overlays.yaml"
    config.write_text(CONFIG)
    a = OverlaydProcess(config, extra_args=("--forecast-bucket", "1")).start()
    b = None
    try:
        b = OverlaydProcess(None, extra_args=(
            "--control-plane", f"http://{a.admin_addr}/v1/desired-state", "--control-plane-interval", "1")).start()
        channel = grpc.insecure_channel(a.grpc_target, options=CHANNEL_OPTIONS)
        for host in ("crm.example.com", "shadow.example.com"):
            stream = Stream(channel)
            stream.send(request_headers(host))
            stream.recv(why="request_headers")
            stream.cancel()
        channel.close()
        yield a, b
    finally:
        for proc in (b, a):
            if proc is not None:
                assert proc.stop() == 0, proc.describe()


@pytest.fixture(scope="module")
def prometheus(overlayds, tmp_path_factory):
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not on PATH (scripts/test installs Debian's prometheus)"
    directory = tmp_path_factory.mktemp("prometheus")
    config = directory / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(names.RULES)],
        "scrape_configs": [{"job_name": "overlayd", "static_configs": [
            {"targets": [proc.admin_addr for proc in overlayds]}]}],
    }))
    port = _free_port()
    log = (directory / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited {proc.returncode}:\n{(directory / 'prometheus.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, 30, "prometheus ready")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.close()
        assert code == 0, (directory / "prometheus.log").read_text()[-2000:]


def _everything_named() -> set[str]:
    return names.metric_names(names.rule_exprs() + names.dashboard_exprs() + names.scaling_exprs())


def test_every_metric_named_in_the_rules_dashboard_and_scalers_exists_in_prometheus(prometheus, overlayds):
    wanted = _everything_named()
    assert {"overlayd_model_call_rate_forecast", "overlayd_model_breaker_open", "overlayd_drift_flag"} <= wanted

    def missing():
        have = set(_api(prometheus, "/api/v1/label/__name__/values"))
        return wanted - have

    deadline = time.monotonic() + SERIES_TIMEOUT
    while (lack := missing()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not lack, (f"not in Prometheus after {SERIES_TIMEOUT}s: {sorted(lack)}\n"
                      f"a's /metrics names: {sorted({n for n, _, _ in scrape(overlayds[0].admin_addr).samples})}")
    # Both overlayds are scraped, as the same job.
    up = _api(prometheus, "/api/v1/query", query='up{job="overlayd"} == 1')["result"]
    assert len(up) == 2, up


def test_every_rule_evaluates_without_error(prometheus):
    wanted = {rule.get("record") or rule.get("alert") for rule in names.rules()}

    def evaluated():
        groups = _api(prometheus, "/api/v1/rules")["groups"]
        loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
        if set(loaded) != wanted or any(rule.get("lastEvaluation", "").startswith("0001") for rule in loaded.values()):
            return None
        return loaded

    loaded = wait_until(evaluated, 30, "every rule loaded and evaluated once")
    broken = {name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] != "ok"}
    assert not broken, broken


def test_every_recorded_series_the_dashboard_and_scalers_read_is_defined_by_the_rules():
    used = names.recorded_references(names.dashboard_exprs() + names.scaling_exprs())
    assert used <= names.recorded_names(), used - names.recorded_names()


def test_every_dashboard_query_is_valid_promql_with_data(prometheus, overlayds):
    # Every metric exists (first test); each query must parse, and the ones over metrics that
    # have samples by now return data.
    for title, target in names.dashboard_targets():
        query = names.grafana_to_promql(target["expr"])
        data = _api(prometheus, "/api/v1/query", query=query)
        assert data["resultType"] in {"vector", "scalar"}, (title, query, data)
    data = wait_until(
        lambda: _api(prometheus, "/api/v1/query", query='sum by (model, horizon) (overlayd_model_call_rate_forecast)')["result"],
        SERIES_TIMEOUT, "a forecast in Prometheus")
    assert {(r["metric"]["model"], r["metric"]["horizon"]) for r in data} >= {("mock-a", "5s"), ("mock-a", "15s")}, data


def test_the_scaler_queries_return_the_forecast(prometheus):
    for query in names.scaling_exprs():
        data = wait_until(lambda q=query: _api(prometheus, "/api/v1/query", query=q.replace("vllm-llama", "mock-a")
                                               .replace('"15m"', '"15s"'))["result"],
                          SERIES_TIMEOUT, f"data for {query}")
        assert float(data[0]["value"][1]) >= 0, data
