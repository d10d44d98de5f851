"""`overlayd proxy` at the edge (issue 18, part 1): clients that hold connections without using
them, and bodies over the limit, against the real binary over raw sockets.

- a connection that never sends a byte, and one that sends half a request head (slowloris), are
  closed after --client-header-timeout (the second after a 408);
- an idle keep-alive connection is closed after --keepalive-timeout;
- a request body that stalls gets 408 after --client-body-timeout;
- a declared body over --max-request-body-bytes gets 413 and the upstream sees nothing;
- a request head over --max-request-head-bytes gets 431 and the upstream sees nothing;
- beyond --max-connections-per-client, new connections are closed at accept;
- meanwhile other clients are served; every refusal is counted by reason
  (`overlayd_proxy_client_limits_total`);
- the admin port has the same header timeout (408) and per-client cap, counted in
  `overlayd_admin_client_limits_total`.

The timeouts are set to about a second so that the waits are short; each wait is a blocking
read until the proxy closes (bounded by a generous socket timeout), never a sleep.
"""
from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time

import pytest

from overlayd_proc import overlayd_bin, poll_metric, proxy_process, scrape, wait_until

CONFIG = """\
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {name: instant}
spec: {provider: mock}
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: crm}
spec:
  hostApp: app.example
  models: [{name: instant, weight: 100}]
"""
PAGE = b"<!doctype html><html><head><title>CRM</title></head><body><p>hello</p></body></html>"
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 1.0
PER_CLIENT = 8
MAX_BODY = 1000
MAX_HEAD = 4096
# A close must come within the timeout plus this much (the proxy's timer, the loop, the test's reads).
SLACK = 10.0


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        Upstream.seen.append(("GET", self.path))
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def do_POST(self):
        Upstream.seen.append(("POST", self.path))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    config = tmp_path_factory.mktemp("edge") / "overlay.yaml"
    config.write_text(CONFIG)
    with proxy_process(
            f"http://127.0.0.1:{upstream.server_address[1]}", config,
            "--client-header-timeout", str(HEADER_TIMEOUT), "--client-body-timeout", str(BODY_TIMEOUT),
            "--keepalive-timeout", str(KEEPALIVE_TIMEOUT), "--max-connections-per-client", str(PER_CLIENT),
            "--max-request-body-bytes", str(MAX_BODY), "--max-request-head-bytes", str(MAX_HEAD),
            "--log-level", "info", timeout=30, stop_timeout=20) as proxy:
        yield proxy.port, proxy.admin
    upstream.shutdown()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT + SLACK)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the proxy sends until it closes, and how long that took; fails on the socket's
    timeout (the proxy never closed)."""
    started = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def limit_count(admin: str, reason: str) -> float:
    return scrape(admin).value("overlayd_proxy_client_limits_total", reason=reason) or 0.0


def get(port: int, path: str = "/") -> bytes:
    with connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n".encode())
        data, _ = read_until_closed(sock)
    return data


def test_a_silent_connection_is_closed_after_the_header_timeout(proxy):
    port, admin = proxy
    before = limit_count(admin, "header_timeout")
    with connect(port) as sock:
        data, waited = read_until_closed(sock)
    assert data == b"" and waited >= HEADER_TIMEOUT * 0.9, (data, waited)
    poll_metric(admin, "overlayd_proxy_client_limits_total", lambda v: (v or 0) >= before + 1, reason="header_timeout")


def test_half_a_request_head_gets_408_and_close_while_others_are_served(proxy):
    port, admin = proxy
    slow = [connect(port) for _ in range(4)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: app.example\r\nX-Slow: ")
    # Other clients are served meanwhile, overlay and all.
    page = get(port)
    assert page.startswith(b"HTTP/1.1 200") and b"overlayd-result" in page, page[:300]
    for sock in slow:
        data, waited = read_until_closed(sock)
        sock.close()
        assert data.startswith(b"HTTP/1.1 408"), data
        assert b"connection: close" in data.lower(), data
        assert waited <= HEADER_TIMEOUT + SLACK


def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(proxy):
    port, admin = proxy
    before = limit_count(admin, "keepalive_timeout")
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
        data, waited = read_until_closed(sock)
    # The response came whole, then nothing more until the proxy closed the idle connection.
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1 ") == 1, data[:200]
    assert waited >= KEEPALIVE_TIMEOUT * 0.9
    poll_metric(admin, "overlayd_proxy_client_limits_total", lambda v: (v or 0) >= before + 1, reason="keepalive_timeout")


def test_a_stalled_request_body_gets_408(proxy):
    port, admin = proxy
    before = limit_count(admin, "body_timeout")
    with connect(port) as sock:
        sock.sendall(b"POST /form HTTP/1.1\r\nHost: passthrough.example\r\nContent-Length: 100\r\n\r\nhalf")
        data, waited = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert waited >= BODY_TIMEOUT * 0.9
    poll_metric(admin, "overlayd_proxy_client_limits_total", lambda v: (v or 0) >= before + 1, reason="body_timeout")


def test_a_declared_body_over_the_limit_gets_413_and_never_reaches_the_app(proxy):
    port, admin = proxy
    Upstream.seen.clear()
    with connect(port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
                     + b"x" * 100)
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 413"), data
    assert ("POST", "/upload") not in Upstream.seen
    assert limit_count(admin, "body_too_large") >= 1
    # A body within the limit goes through.
    with connect(port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello"), data


def test_connections_beyond_the_per_client_cap_are_closed_at_accept(proxy):
    port, admin = proxy
    before = limit_count(admin, "per_client_connections")
    held = [connect(port) for _ in range(PER_CLIENT)]
    try:
        # Each held connection is admitted: a request on it is answered.
        for sock in held[:1]:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
            assert sock.recv(12) == b"HTTP/1.1 200"
        extra = connect(port)
        data, _ = read_until_closed(extra)
        extra.close()
        assert data == b""
        poll_metric(admin, "overlayd_proxy_client_limits_total", lambda v: (v or 0) >= before + 1, reason="per_client_connections")
    finally:
        for sock in held:
            sock.close()
    # Once they close, the client is admitted again.
    wait_until(lambda: get(port).startswith(b"HTTP/1.1 200"), SLACK, "the client to be admitted again")


def test_a_head_over_the_limit_gets_431_and_never_reaches_the_app(proxy):
    port, admin = proxy
    Upstream.seen.clear()
    before = limit_count(admin, "head_too_large")
    with connect(port) as sock:
        sock.sendall(b"GET /big-head HTTP/1.1\r\nHost: app.example\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n")
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 431"), data
    assert b"connection: close" in data.lower(), data
    # A long request line counts too.
    with connect(port) as sock:
        sock.sendall(b"GET /" + b"p" * MAX_HEAD + b" HTTP/1.1\r\nHost: app.example\r\n\r\n")
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 431"), data
    assert not any(path.startswith(("/big-head", "/ppp")) for _, path in Upstream.seen), Upstream.seen
    poll_metric(admin, "overlayd_proxy_client_limits_total", lambda v: (v or 0) >= before + 2, reason="head_too_large")
    # A head within the limit goes through.
    with connect(port) as sock:
        sock.sendall(b"GET /fits HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\nX-Big: "
                     + b"a" * (MAX_HEAD // 2) + b"\r\n\r\n")
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert ("GET", "/fits") in Upstream.seen


def test_the_admin_port_has_the_same_header_timeout_and_per_client_cap(proxy):
    port, admin = proxy
    admin_port = int(admin.rsplit(":", 1)[1])
    before = scrape(admin).value("overlayd_admin_client_limits_total", reason="header_timeout") or 0.0
    with connect(admin_port) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n")
        data, waited = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert HEADER_TIMEOUT * 0.9 <= waited <= HEADER_TIMEOUT + SLACK, waited
    poll_metric(admin, "overlayd_admin_client_limits_total", lambda v: (v or 0) >= before + 1, reason="header_timeout")
    refused_before = scrape(admin).value("overlayd_admin_client_limits_total", reason="per_client_connections") or 0.0
    held = [connect(admin_port) for _ in range(PER_CLIENT)]
    try:
        for sock in held:  # each is admitted: answered
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
            assert sock.recv(12) == b"HTTP/1.1 200"
        extra = connect(admin_port)
        data, _ = read_until_closed(extra)
        extra.close()
        assert data == b""
        # The proxy's own port is not affected by the admin port's count.
        assert get(port).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()

    def refused() -> float:
        # Until the held connections' closes are processed, a scrape may itself be over the cap.
        try:
            return scrape(admin).value("overlayd_admin_client_limits_total", reason="per_client_connections") or 0.0
        except (OSError, AssertionError):
            return 0.0
    wait_until(lambda: refused() >= refused_before + 1, SLACK, "the admin port's refusal to be counted")


@pytest.mark.parametrize("args, message", [
    (["--client-header-timeout", "0"], "--client-header-timeout must be 0...3600 seconds (exclusive of 0), got 0.0"),
    (["--keepalive-timeout", "4000"], "--keepalive-timeout must be 0...3600 seconds (exclusive of 0), got 4000.0"),
    (["--max-connections", "0"], "--max-connections must be 1...1000000, got 0"),
    (["--max-connections-per-client", "0"], "--max-connections-per-client must be 1...1000000, got 0"),
    (["--max-request-body-bytes=-1"], "--max-request-body-bytes must be 0...1099511627776, got -1"),
    (["--max-request-head-bytes", "100"], "--max-request-head-bytes must be 1024...81920, got 100"),
    (["--max-request-head-bytes", "100000"], "--max-request-head-bytes must be 1024...81920, got 100000"),
])
def test_bad_limits_are_refused_with_the_flag_and_value(args, message):
    result = subprocess.run([str(overlayd_bin()), "proxy", "--upstream", "http://127.0.0.1:9", *args],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
