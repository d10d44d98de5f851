"""--config is reloaded when the file changes: a valid document is swapped in whole (new exchanges
see it), an invalid one changes nothing and is reported with every problem; admin /config and
/v1/desired-state show what is active."""
from __future__ import annotations

import json
import os
import time
import urllib.request

import grpc

from extproc_helpers import CHANNEL_OPTIONS, Stream, request_headers
from overlayd_proc import wait_until, OVERLAY_CONFIG_YAML

POLL = 0.2
NEW_HOST_DOC = OVERLAY_CONFIG_YAML.replace("crm.example.com", "erp.example.com")


def _config_path(proc) -> str:
    return proc.args[proc.args.index("--config") + 1]


def _replace(path: str, text: str) -> None:
    """Atomic replace, as editors and ConfigMap updates do."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _get(addr: str, path: str, headers: dict | None = None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://{addr}{path}", headers=headers or {})
    try:
        with opener.open(request, timeout=5) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _config(proc) -> dict:
    status, _, body = _get(proc.admin_addr, "/config")
    assert status == 200
    return json.loads(body)


def _overlaid(channel, host: str) -> bool:
    stream = Stream(channel)
    stream.send(request_headers(host, eos=True))
    answer = stream.recv(why=f"request_headers for {host}")
    stream.cancel()
    return not answer.HasField("mode_override")  # pass-through carries the mode_override


def test_a_changed_file_is_applied_and_a_bad_one_rejected(start_overlayd):
    proc = start_overlayd(extra_args=("--config-poll-interval", str(POLL)))
    path = _config_path(proc)
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    first = _config(proc)
    assert first["source"] == path and first["lastResult"] == "applied" and first["lastRejection"] is None
    assert _overlaid(channel, "crm.example.com") and not _overlaid(channel, "erp.example.com")

    # A valid change takes effect within the poll interval + 1 s.
    changed_at = time.monotonic()
    _replace(path, NEW_HOST_DOC)
    second = wait_until(lambda: (c := _config(proc))["version"] != first["version"] and c, POLL + 1, "reload")
    assert time.monotonic() - changed_at <= POLL + 1
    assert second["lastResult"] == "applied"
    assert _overlaid(channel, "erp.example.com") and not _overlaid(channel, "crm.example.com")

    # An invalid document changes nothing; /config says why, with every problem.
    _replace(path, NEW_HOST_DOC.replace("weight: 100", "weight: 120").replace("strategy: Canary", "strategy: Blue"))
    third = wait_until(lambda: (c := _config(proc))["lastResult"] == "rejected" and c, POLL + 1, "rejection")
    assert third["version"] == second["version"]
    problems = third["lastRejection"]["problems"]
    assert "AIOverlay crm: spec.strategy: must be one of Canary, Shadow, got \"Blue\"" in problems, problems
    assert "AIOverlay crm: spec.models[0].weight: must be 0...100, got 120" in problems, problems
    assert _overlaid(channel, "erp.example.com")
    assert "configuration rejected" in proc.output()

    # A file that disappears is reported and changes nothing either.
    os.remove(path)
    fourth = wait_until(lambda: (c := _config(proc))["lastResult"] == "unreadable" and c, POLL + 1, "unreadable")
    assert fourth["version"] == second["version"]
    assert _overlaid(channel, "erp.example.com")

    metrics = _get(proc.admin_addr, "/metrics")[2].decode()
    assert 'overlayd_config_reloads_total{result="applied"} 1' in metrics, metrics
    assert 'overlayd_config_reloads_total{result="rejected"} 1' in metrics
    assert 'overlayd_config_reloads_total{result="unreadable"} 1' in metrics
    channel.close()


def test_desired_state_serves_the_active_document_with_an_etag(start_overlayd):
    proc = start_overlayd()
    status, headers, body = _get(proc.admin_addr, "/v1/desired-state")
    assert status == 200
    assert body.decode() == OVERLAY_CONFIG_YAML
    etag = headers["ETag"]
    assert etag == f"\"{_config(proc)['version']}\""
    status, _, body = _get(proc.admin_addr, "/v1/desired-state", {"If-None-Match": etag})
    assert status == 304 and body == b""
    status, _, _ = _get(proc.admin_addr, "/v1/desired-state", {"If-None-Match": "\"other\""})
    assert status == 200


def test_no_valid_config_at_start_serves_pass_through_until_the_file_is_fixed(tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from overlayd_proc import OverlaydProcess

    path = tmp_path / "overlays.yaml"
    path.write_text(OVERLAY_CONFIG_YAML.replace("weight: 100", "weight: 120"))
    proc = OverlaydProcess(path, extra_args=("--config-poll-interval", str(POLL))).start()
    try:
        channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
        status, _, body = _get(proc.admin_addr, "/readyz")
        assert status == 503 and b"no valid configuration" in body
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        report = _config(proc)
        assert report["lastResult"] == "rejected"
        assert report["lastRejection"]["problems"] == ["AIOverlay crm: spec.models[0].weight: must be 0...100, got 120"]
        assert not _overlaid(channel, "crm.example.com"), "without a valid config every host must pass through"

        _replace(str(path), OVERLAY_CONFIG_YAML)
        wait_until(lambda: _get(proc.admin_addr, "/readyz")[0] == 200, POLL + 1, "ready after the fix")
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING, "the watch is told of the change"
        watch.cancel()
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        assert _overlaid(channel, "crm.example.com")
        channel.close()
    finally:
        assert proc.stop() == 0, proc.describe()
