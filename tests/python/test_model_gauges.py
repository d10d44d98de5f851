"""The model gauges overlayd samples in the background: ``overlayd_model_breaker_open`` (every
second, from the clients' circuit breakers) and the call-rate forecast's ``--forecast-bucket``
option. The forecast's values are tested in Swift (CallRateForecastTests); its series reaching a
real Prometheus in test_prometheus_scrape.py.
"""

from __future__ import annotations

import socket
import subprocess

import grpc

from extproc_helpers import CHANNEL_OPTIONS, Stream, request_headers
from overlayd_proc import OverlaydProcess, overlayd_bin, poll_metric, scrape


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: connections are refused


def test_breaker_gauge_turns_1_when_an_openai_backend_keeps_failing(tmp_path):
    config = tmp_path / "overlays.yaml"
    config.write_text(f"""\
---
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {{name: down}}
spec: {{provider: openai, baseURL: "http://127.0.0.1:{_closed_port()}/v1", timeouts: {{connect: 200ms, total: 1s}}}}
---
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {{name: local}}
spec: {{provider: mock}}
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {{name: crm}}
spec:
  hostApp: crm.example.com
  models: [{{name: down}}]
""")
    proc = OverlaydProcess(config).start()
    try:
        poll_metric(proc.admin_addr, "overlayd_model_breaker_open", lambda v: v == 0, model="down")
        poll_metric(proc.admin_addr, "overlayd_model_breaker_open", lambda v: v == 0, model="local")
        channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
        # The breaker opens after 5 failed calls in a row (README "Clients").
        for _ in range(5):
            stream = Stream(channel)
            stream.send(request_headers("crm.example.com"))
            stream.recv(why="request_headers")
            stream.cancel()
        channel.close()
        poll_metric(proc.admin_addr, "overlayd_model_calls_total", lambda v: v == 5, timeout=15,
                    model="down", result="error")
        poll_metric(proc.admin_addr, "overlayd_model_breaker_open", lambda v: v == 1, timeout=5, model="down")
        assert scrape(proc.admin_addr).value("overlayd_model_breaker_open", model="local") == 0
    finally:
        assert proc.stop() == 0, proc.describe()


def test_forecast_bucket_must_divide_a_day():
    for bad in ("7", "0", "7200"):
        result = subprocess.run([str(overlayd_bin()), "serve", "--forecast-bucket", bad],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode != 0
        assert f"--forecast-bucket must be 1...3600 seconds and divide 86400, got {bad}" in result.stderr, result.stderr
