"""`overlayd proxy` speaks HTTP/2 by prior knowledge (h2c) on the same port as HTTP/1.1
(DEVELOPERS.md issue 6): an `h2` client opens the connection with the preface, runs several
streams at once, and gets the same decisions as HTTP/1.1 clients (overlaid page injected,
pass-through untouched, a large request body streamed to the upstream under HTTP/2 flow control).

The upstream is plain HTTP/1.1 (http.server, keep-alive); the proxy translates.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import signal
import socket
import subprocess
import threading

import h2.config
import h2.connection
import h2.events
import hyperframe.frame
import pytest

from overlayd_proc import overlayd_bin, proxy_process, running_proxy

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
  strategy: Canary
"""

PAGE = ("<!doctype html><html><head><title>CRM</title></head><body>"
        + "<p>row</p>" * 3000 + "</body></html>").encode()


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.end_headers()
        self.wfile.write(PAGE)

    def do_POST(self):
        length = int(self.headers["Content-Length"]) if "Content-Length" in self.headers else None
        if length is None:  # chunked
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(length)
        digest = hashlib.sha256(body).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(digest)))
        self.end_headers()
        self.wfile.write(digest)


@pytest.fixture(scope="module")
def proxy_port(tmp_path_factory):
    config = tmp_path_factory.mktemp("h2c") / "overlay.yaml"
    config.write_text(CONFIG)
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with running_proxy(f"http://127.0.0.1:{upstream.server_address[1]}", config) as port:
            yield port
    finally:
        upstream.shutdown()


class H2CClient:
    """Prior-knowledge HTTP/2 over one TCP connection; every wait bounded by `timeout`."""

    def __init__(self, port: int, timeout: float = 20.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        self.sock.sendall(self.conn.data_to_send())
        self.results: dict[int, dict] = {}
        self.pending: dict[int, bytes] = {}

    def request(self, method: str, path: str, authority: str, body: bytes | None = None) -> int:
        stream = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority)]
        if body is not None:
            headers.append(("content-length", str(len(body))))
        self.conn.send_headers(stream, headers, end_stream=body is None)
        self.results[stream] = {"headers": {}, "body": b"", "ended": False}
        if body is not None:
            self.pending[stream] = body
        self._pump_out()
        self.sock.sendall(self.conn.data_to_send())
        return stream

    def _pump_out(self):
        # Send what the peer's flow-control window allows; the rest waits for WINDOW_UPDATE.
        for stream, rest in list(self.pending.items()):
            while rest:
                window = min(self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size)
                if window <= 0:
                    break
                self.conn.send_data(stream, rest[:window])
                rest = rest[window:]
            if rest:
                self.pending[stream] = rest
            else:
                del self.pending[stream]
                self.conn.end_stream(stream)

    def wait(self, streams: list[int]) -> None:
        while not all(self.results[s]["ended"] for s in streams):
            data = self.sock.recv(65536)
            assert data, "the proxy closed the connection"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    self.results[event.stream_id]["headers"] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.results[event.stream_id]["body"] += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    self.results[event.stream_id]["ended"] = True
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream {event.stream_id} reset: {event.error_code}")
            self._pump_out()
            self.sock.sendall(self.conn.data_to_send())

    def close(self):
        self.conn.close_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.sock.close()


def test_concurrent_streams_get_the_same_decisions_as_http1(proxy_port):
    client = H2CClient(proxy_port)
    try:
        overlaid = [client.request("GET", f"/accounts?i={i}", "app.example") for i in range(6)]
        plain = [client.request("GET", "/accounts", "other.example") for _ in range(2)]
        client.wait(overlaid + plain)
        for stream in overlaid:
            result = client.results[stream]
            assert result["headers"][":status"] == "200"
            assert "content-length" not in result["headers"]  # the body changed
            assert result["headers"]["x-seen-host"] == "app.example"  # :authority became Host
            body = result["body"]
            assert body.count(b'id="overlayd-result"') == 1 and body.index(b'id="overlayd-result"') < body.index(b"</head>")
            assert b'"status":"ready"' in body and len(body) > len(PAGE)
        for stream in plain:
            result = client.results[stream]
            assert result["headers"][":status"] == "200"
            assert result["body"] == PAGE
            assert result["headers"]["content-length"] == str(len(PAGE))
    finally:
        client.close()


def test_a_large_request_body_streams_under_flow_control(proxy_port):
    client = H2CClient(proxy_port)
    try:
        body = os.urandom(5 * 1024 * 1024)  # far beyond the 1 MiB stream window the proxy grants
        stream = client.request("POST", "/upload", "other.example", body=body)
        small = client.request("POST", "/upload", "app.example", body=b"hello")
        client.wait([stream, small])
        assert client.results[stream]["headers"][":status"] == "200"
        assert client.results[stream]["body"] == hashlib.sha256(body).hexdigest().encode()
        assert client.results[small]["body"] == hashlib.sha256(b"hello").hexdigest().encode()
    finally:
        client.close()


def test_own_endpoints_answer_over_h2c(proxy_port):
    client = H2CClient(proxy_port)
    try:
        stream = client.request("GET", "/__overlay/overlay.js", "app.example")
        client.wait([stream])
        assert client.results[stream]["headers"][":status"] == "200"
        assert b"customElements" in client.results[stream]["body"]
    finally:
        client.close()


def test_http1_still_works_on_the_same_port(proxy_port):
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        sock.sendall(b"GET /accounts HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == PAGE


@pytest.mark.parametrize("sent", [b"", b"PRI * HTTP/2", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"])
def test_a_client_that_half_closes_before_a_request_is_let_go(proxy_port, sent):
    """Before the protocol is known, mid-preface, or on an idle HTTP/2 connection: the client's FIN
    closes the connection (nothing is kept open for a client that has left)."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        sock.sendall(sent)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):  # a socket timeout here fails the test
            data += chunk
    if sent.endswith(b"\r\n\r\n"):
        assert data[3:4] == b"\x04"  # the server's SETTINGS frame came first


def test_shutdown_does_not_wait_for_idle_connections(tmp_path):
    """SIGTERM while clients hold idle connections of every kind: a spare one that never sent a
    byte (browsers open these), an HTTP/1.1 keep-alive one and an HTTP/2 one, each after a
    request. The proxy closes them (GOAWAY for HTTP/2) and exits at once, well inside its 10 s
    drain timeout, which only a response still in flight may use."""
    config = tmp_path / "overlay.yaml"
    config.write_text(CONFIG)
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    held = []
    try:
        with running_proxy(f"http://127.0.0.1:{upstream.server_address[1]}", config, stop_timeout=5) as port:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))  # spare, silent
            keep_alive = socket.create_connection(("127.0.0.1", port), timeout=10)
            keep_alive.sendall(b"GET /accounts HTTP/1.1\r\nHost: other.example\r\n\r\n")
            data = b""
            while len(data) < len(PAGE) or not data.endswith(PAGE):
                data += keep_alive.recv(65536)
            held.append(keep_alive)
            h2 = H2CClient(port)
            h2.wait([h2.request("GET", "/accounts", "other.example")])
            held.append(h2.sock)
            # Like any HTTP/2 client, it keeps reading and answers the PING that follows the
            # proxy's first GOAWAY (RFC 9113 §6.8's graceful shutdown); it sees the GOAWAYs and
            # the end of the connection. (Read frame by frame: the h2 package refuses a PING
            # after a GOAWAY.)
            goaways: list[int] = []

            def serve_h2():
                pending = b""
                while data := h2.sock.recv(65536):
                    pending += data
                    while len(pending) >= 9:
                        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(pending[:9]))
                        if len(pending) < 9 + length:
                            break
                        frame.parse_body(memoryview(pending[9:9 + length]))
                        pending = pending[9 + length:]
                        if isinstance(frame, hyperframe.frame.GoAwayFrame):
                            goaways.append(frame.error_code)
                        elif isinstance(frame, hyperframe.frame.PingFrame) and "ACK" not in frame.flags:
                            h2.sock.sendall(hyperframe.frame.PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())

            reader = threading.Thread(target=serve_h2, daemon=True)
            reader.start()
        reader.join(10)
        assert not reader.is_alive() and goaways and goaways[-1] == 0  # NO_ERROR
        # The other connections were closed by the proxy: reading reaches the end.
        for sock in held[:2]:
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
    finally:
        for sock in held:
            sock.close()
        upstream.shutdown()


class HoldingUpstream(http.server.BaseHTTPRequestHandler):
    """Answers `/slow` once told to (`release`), every other path at once; records the paths."""
    protocol_version = "HTTP/1.1"
    arrived = threading.Event()
    release = threading.Event()
    paths: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        HoldingUpstream.paths.append(self.path)
        if self.path == "/slow":
            HoldingUpstream.arrived.set()
            HoldingUpstream.release.wait(30)
        body = f"answer to {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_shutdown_finishes_the_http1_request_in_flight_then_closes(tmp_path):
    """SIGTERM while an HTTP/1.1 request waits for the upstream, with a second request pipelined
    behind it: the first gets its whole response, which says `Connection: close`; then the
    connection closes, the second is never sent to the upstream, and the proxy exits 0. (One
    event loop, so that the shutdown reaches both client connections in one pass: an idle
    keep-alive connection closing says it has reached the busy one too.)"""
    config = tmp_path / "overlay.yaml"
    config.write_text(CONFIG)
    HoldingUpstream.arrived = threading.Event()
    HoldingUpstream.release = threading.Event()
    HoldingUpstream.paths = []
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HoldingUpstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    idle = busy = None
    try:
        with proxy_process(f"http://127.0.0.1:{upstream.server_address[1]}", config, "--threads", "1",
                           stop_timeout=10) as proxy:
            idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=15)
            idle.sendall(b"GET /first HTTP/1.1\r\nHost: other.example\r\n\r\n")
            got = b""
            while not got.endswith(b"answer to /first"):
                got += idle.recv(65536)
            busy = socket.create_connection(("127.0.0.1", proxy.port), timeout=15)
            busy.sendall(b"GET /slow HTTP/1.1\r\nHost: other.example\r\n\r\n"
                         b"GET /second HTTP/1.1\r\nHost: other.example\r\n\r\n")
            assert HoldingUpstream.arrived.wait(10)
            proxy.proc.send_signal(signal.SIGTERM)
            assert idle.recv(65536) == b""  # the idle connection is closed at once
            HoldingUpstream.release.set()
            received = b""
            while chunk := busy.recv(65536):
                received += chunk
            head, body = received.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"connection: close" in head.lower()
            assert body == b"answer to /slow"  # whole, and nothing after it: the second is not served
        assert HoldingUpstream.paths == ["/first", "/slow"]
    finally:
        HoldingUpstream.release.set()
        for sock in (idle, busy):
            if sock:
                sock.close()
        upstream.shutdown()


class StallingUpstream(http.server.BaseHTTPRequestHandler):
    """Sends a response head and half of a page, then holds the rest until told to finish."""
    protocol_version = "HTTP/1.1"
    release = threading.Event()

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "200000")
        self.end_headers()
        self.wfile.write(b"x" * 100_000)
        self.wfile.flush()
        self.release.wait(30)


@pytest.mark.parametrize("drain", ["0", "1"])
def test_drain_timeout_bounds_a_response_in_flight(tmp_path, drain):
    """`overlayd proxy --drain-timeout N`: on SIGTERM a response still streaming may run N seconds;
    then its connection is closed and the proxy exits 0, long before the default 10 s (the stop
    is required within 5 s). The client sees the body cut short."""
    config = tmp_path / "overlay.yaml"
    config.write_text(CONFIG)
    StallingUpstream.release = threading.Event()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StallingUpstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    client = None
    try:
        with running_proxy(f"http://127.0.0.1:{upstream.server_address[1]}", config, stop_timeout=5,
                           extra_args=("--drain-timeout", drain)) as port:
            client = socket.create_connection(("127.0.0.1", port), timeout=15)
            client.sendall(b"GET /export HTTP/1.1\r\nHost: other.example\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 100_000:
                received += client.recv(65536)
        # The proxy has exited (inside the context manager's 5 s): the connection it held is closed.
        while chunk := client.recv(65536):
            received += chunk
        head, body = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 200000" in head.lower()
        assert body == b"x" * 100_000  # the rest never came: the response was cut
    finally:
        StallingUpstream.release.set()
        if client:
            client.close()
        upstream.shutdown()


def test_drain_timeout_out_of_range_is_refused():
    for bad in ["-1", "3601"]:
        result = subprocess.run(
            [str(overlayd_bin()), "proxy", "--upstream", "http://127.0.0.1:1", f"--drain-timeout={bad}"],
            capture_output=True, text=True, timeout=30)
        assert result.returncode != 0
        assert f"--drain-timeout must be 0...3600 seconds, got {float(bad)}" in result.stderr
