"""--control-plane URL: the poller against a real HTTP server on 127.0.0.1 (fake_control_plane.py).

ETag/If-None-Match (a 304 parses nothing), changes applied within interval + 1 s, 5xx with
exponential backoff, timeouts (no answer, a stalled body), garbage, oversized bodies (with and
without content-length), the server gone and back, the bearer token (and its rotation), and the
last known good document in --state-dir used across a restart while the control plane is down."""
from __future__ import annotations

import json
import re
import subprocess
import time

import grpc
import pytest

from extproc_helpers import CHANNEL_OPTIONS, Stream, request_headers
from fake_control_plane import FakeControlPlane
from overlayd_proc import OVERLAY_CONFIG_YAML, OverlaydProcess, http_get, overlayd_bin, scrape, wait_until

DOC_A = OVERLAY_CONFIG_YAML
DOC_B = OVERLAY_CONFIG_YAML.replace("crm.example.com", "erp.example.com")
FAST = ("--control-plane-interval", "0.2", "--control-plane-backoff", "0.1", "--control-plane-max-backoff", "0.8",
        "--control-plane-timeout", "1")


@pytest.fixture
def plane():
    server = FakeControlPlane(DOC_A)
    yield server
    server.close()


@pytest.fixture
def run(tmp_path):
    started: list[OverlaydProcess] = []

    def start(url: str, *extra: str) -> OverlaydProcess:
        proc = OverlaydProcess(None, extra_args=("--control-plane", url, *extra)).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            assert proc.stop() == 0, proc.describe()


def config(proc) -> dict:
    reply = http_get(proc.admin_addr, "/config")
    assert reply.status == 200, reply.text
    return json.loads(reply.body)


def overlaid(proc, host: str) -> bool:
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    try:
        stream = Stream(channel)
        stream.send(request_headers(host, eos=True))
        answer = stream.recv(why=f"request_headers for {host}")
        stream.cancel()
        return not answer.HasField("mode_override")
    finally:
        channel.close()


def fetches(proc, result: str) -> float:
    return scrape(proc.admin_addr).value("overlayd_control_plane_fetches_total", result=result) or 0


def applied(proc) -> dict:
    return wait_until(lambda: (c := config(proc))["lastResult"] == "applied" and c, 10, "first document applied")


def test_200_then_304_parses_nothing_and_routes(plane, run):
    proc = run(plane.url, *FAST)
    first = applied(proc)
    assert first["source"] == plane.url and first["documentsParsed"] == 1
    assert http_get(proc.admin_addr, "/readyz").status == 200
    assert overlaid(proc, "crm.example.com") and not overlaid(proc, "erp.example.com")
    etag = first["lastFetch"]["etag"]
    assert etag and etag.startswith('"')

    seen = plane.wait_for_requests(4, 10)
    assert "if-none-match" not in seen[0].headers
    assert all(s.headers.get("if-none-match") == etag and s.status == 304 for s in seen[1:4]), seen
    later = wait_until(lambda: (c := config(proc))["lastFetch"]["result"] == "not_modified" and c, 5, "304 recorded")
    assert later["documentsParsed"] == 1 and later["version"] == first["version"]
    assert fetches(proc, "applied") == 1 and fetches(proc, "not_modified") >= 2 and fetches(proc, "failed") == 0


def test_a_change_takes_effect_within_interval_plus_one_second(plane, run):
    proc = run(plane.url, "--control-plane-interval", "1")
    first = applied(proc)
    changed = time.monotonic()
    plane.set(document=DOC_B)
    wait_until(lambda: config(proc)["version"] != first["version"], 2.5, "change applied")
    assert time.monotonic() - changed <= 1 * 1.1 + 1  # the interval (with its 10 % jitter) + 1 s
    assert overlaid(proc, "erp.example.com") and not overlaid(proc, "crm.example.com")


def test_server_errors_back_off_exponentially_and_recover(plane, run):
    plane.set(mode="status", status=500)
    proc = run(plane.url, *FAST)
    seen = plane.wait_for_requests(6, 15)
    gaps = [b.at - a.at for a, b in zip(seen, seen[1:])]
    # 0.1, 0.2, 0.4, 0.8, 0.8 s, each spread down by at most 10 % (and never shorter).
    for gap, want in zip(gaps, [0.1, 0.2, 0.4, 0.8, 0.8]):
        assert gap >= want * 0.9 - 0.01, gaps
    report = config(proc)
    assert report["lastFetch"]["result"] == "failed" and report["lastFetch"]["httpStatus"] == 500
    assert "HTTP 500" in report["lastFetch"]["error"] and report["lastFetch"]["consecutiveFailures"] >= 5
    # Never had a document: pass-through, not ready.
    assert http_get(proc.admin_addr, "/readyz").status == 503
    assert not overlaid(proc, "crm.example.com")
    assert fetches(proc, "failed") >= 5

    plane.set(mode="ok")
    recovered = applied(proc)
    assert recovered["lastFetch"]["consecutiveFailures"] == 0
    wait_until(lambda: http_get(proc.admin_addr, "/readyz").status == 200, 5, "ready after recovery")
    assert overlaid(proc, "crm.example.com")


@pytest.mark.parametrize("mode", ["hang", "stall-body"])
def test_a_fetch_that_does_not_finish_times_out_and_changes_nothing(plane, run, mode):
    proc = run(plane.url, *FAST)
    first = applied(proc)
    plane.set(mode=mode, document=DOC_B)
    report = wait_until(lambda: (c := config(proc))["lastFetch"]["result"] == "failed" and c, 10, "timeout")
    assert "timed out" in report["lastFetch"]["error"], report
    assert report["version"] == first["version"] and overlaid(proc, "crm.example.com")


def test_a_stop_while_a_fetch_is_held_is_not_a_failed_fetch(plane, run):
    """SIGTERM while the control plane holds a fetch ends it quietly: exit 0, and no "fetch
    failed" warning (the stop cancels the fetch; that is not the control plane failing)."""
    plane.set(mode="hang")
    proc = run(plane.url, "--control-plane-timeout", "30")
    plane.wait_for_requests(1, 10)
    assert proc.stop() == 0, proc.describe()
    assert "control-plane fetch failed" not in proc.output(), proc.output()


@pytest.mark.parametrize("body,expect", [
    (b"\xff\xfe\x00garbage", ("failed", "not UTF-8")),
    (b"{this is: [not yaml", ("rejected", None)),
    (b"<html>502 bad gateway</html>", ("rejected", None)),
])
def test_garbage_changes_nothing(plane, run, body, expect):
    proc = run(plane.url, *FAST)
    first = applied(proc)
    plane.set(mode="raw", raw_body=body)
    result, error = expect
    report = wait_until(lambda: (c := config(proc))["lastFetch"]["result"] == result and c, 10, result)
    assert report["version"] == first["version"] and overlaid(proc, "crm.example.com")
    if error:
        assert error in report["lastFetch"]["error"]
    else:
        assert report["lastRejection"]["source"] == plane.url and report["lastRejection"]["problems"]


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_document_is_refused(plane, run, chunked):
    proc = run(plane.url, *FAST, "--control-plane-max-bytes", "2048")
    first = applied(proc)
    padding = "# " + "x" * 78 + "\n"
    plane.set(document=DOC_B + padding * 100, chunked=chunked)
    report = wait_until(lambda: (c := config(proc))["lastFetch"]["result"] == "failed" and c, 10, "size limit")
    assert "exceeds the limit" in report["lastFetch"]["error"], report
    assert report["version"] == first["version"] and report["documentsParsed"] == 1


def test_server_gone_and_back(plane, run):
    proc = run(plane.url, *FAST)
    first = applied(proc)
    plane.go_down()
    report = wait_until(lambda: (c := config(proc))["lastFetch"]["consecutiveFailures"] >= 2 and c, 10, "failures")
    assert report["version"] == first["version"] and overlaid(proc, "crm.example.com")
    assert http_get(proc.admin_addr, "/readyz").status == 200  # the active config keeps serving

    back = plane.come_back(DOC_B)
    try:
        wait_until(lambda: config(proc)["version"] != first["version"], 10, "applied after the server came back")
        assert overlaid(proc, "erp.example.com")
    finally:
        back.close()


def test_the_bearer_token_is_sent_and_rotation_is_followed(plane, run, tmp_path):
    token = tmp_path / "token"
    token.write_text("first-token\n")
    proc = run(plane.url, *FAST, "--control-plane-token-file", str(token))
    applied(proc)
    assert plane.seen()[0].headers.get("authorization") == "Bearer first-token"
    token.write_text("second-token")
    wait_until(lambda: plane.seen()[-1].headers.get("authorization") == "Bearer second-token", 5, "rotated token")
    assert "first-token" not in proc.output() and "second-token" not in proc.output()


def test_last_known_good_is_used_across_a_restart(plane, run, tmp_path):
    state = tmp_path / "state"
    proc = run(plane.url, *FAST, "--state-dir", str(state))
    first = applied(proc)
    # Written right after the document is applied (the store swaps first, then the file is saved).
    lkg = state / "last-known-good.json"
    saved = wait_until(lambda: lkg.exists() and (d := json.loads(lkg.read_text()))["document"] == DOC_A and d,
                       5, "the state file")
    assert saved["source"] == plane.url and saved["document"] == DOC_A and saved["etag"] == first["lastFetch"]["etag"]
    assert not [p for p in state.iterdir() if p.name != "last-known-good.json"]  # no temporary left
    assert proc.stop() == 0

    plane.go_down()
    again = run(plane.url, *FAST, "--state-dir", str(state))
    report = config(again)
    assert report["version"] == first["version"] and report["lastResult"] == "last-known-good"
    assert http_get(again.admin_addr, "/readyz").status == 200
    assert overlaid(again, "crm.example.com")
    wait_until(lambda: (c := config(again))["lastFetch"] and c["lastFetch"]["result"] == "failed", 10, "a failed fetch")

    back = plane.come_back(DOC_A)
    try:
        seen = back.wait_for_requests(1, 10)
        assert seen[0].headers.get("if-none-match") == saved["etag"] and seen[0].status == 304
        assert config(again)["documentsParsed"] == 0  # the 304 parsed nothing
    finally:
        back.close()


def test_no_document_and_no_control_plane_serves_pass_through_not_ready(run, tmp_path):
    closed = FakeControlPlane(DOC_A)
    closed.go_down()  # its port refuses connections and stays taken
    try:
        proc = run(closed.url, *FAST, "--state-dir", str(tmp_path / "empty"))
        report = wait_until(lambda: (c := config(proc))["lastFetch"] and c, 10, "a fetch")
        assert report["lastFetch"]["result"] == "failed" and report["overlays"] == []
        assert http_get(proc.admin_addr, "/readyz").status == 503
        assert not overlaid(proc, "crm.example.com")
    finally:
        closed.close()


def test_a_kubernetes_list_is_accepted(plane, run):
    items = json.dumps({
        "apiVersion": "orchestrator.io/v1", "kind": "AIOverlayList", "metadata": {"resourceVersion": "7"},
        "items": [{"apiVersion": "orchestrator.io/v1", "kind": "AIOverlay", "metadata": {"name": "crm"},
                   "spec": {"hostApp": "crm.example.com", "models": [{"name": "m", "weight": 100}],
                            "strategy": "Canary"}}]})
    plane.set(document=items)
    proc = run(plane.url, *FAST)
    assert applied(proc)["overlays"] == ["crm (crm.example.com)"]


def test_https_verifies_the_server_against_the_system_roots(run, tmp_path):
    """An https control plane with a self-signed certificate is refused (the system roots do not
    vouch for it): HTTPS is spoken, and verification is on."""
    import ssl
    import subprocess as sp
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    sp.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
           check=True, capture_output=True)
    server = FakeControlPlane(DOC_A)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    try:
        proc = run(server.url.replace("http://", "https://"), *FAST)
        report = wait_until(lambda: (c := config(proc))["lastFetch"] and c, 10, "a fetch")
        fetch = report["lastFetch"]
        assert fetch["result"] == "failed" and fetch["httpStatus"] is None, fetch
        assert re.search(r"(?i)certificate|ssl|tls|handshake", fetch["error"]), fetch["error"]
        assert report["overlays"] == [] and not server.seen()  # no request got through
    finally:
        server.close()


@pytest.mark.parametrize("args,message", [
    (["--config", "x.yaml", "--control-plane", "http://127.0.0.1:1/"], "--config and --control-plane are exclusive"),
    (["--control-plane", "ftp://127.0.0.1/x"], "--control-plane must be an http:// or https:// URL"),
    (["--control-plane", "http:///nohost"], "--control-plane must name a host"),
    (["--state-dir", "/tmp/x"], "--state-dir, --control-plane-token-file and --control-plane-report-token-file need --control-plane"),
    (["--control-plane", "http://127.0.0.1:1/", "--control-plane-max-backoff", "0.5"],
     "--control-plane-max-backoff must be --control-plane-backoff (1.0)...86400 seconds, got 0.5"),
])
def test_bad_control_plane_flags_are_refused(args, message):
    done = subprocess.run([str(overlayd_bin()), "serve", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and message in done.stderr, done.stderr
