"""A scriptable control plane: a real HTTP/1.1 server on 127.0.0.1 (port 0 unless given) that
serves one desired-state document with an ETag, answers 304 to a matching If-None-Match, and
can be switched to fail in the ways a real one does (5xx, hanging, a stalled body, garbage,
oversized bodies). Every request is recorded (monotonic time, path, headers)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Seen:
    at: float
    path: str
    headers: dict[str, str]
    status: int


class FakeControlPlane:
    def __init__(self, document: str, port: int = 0):
        self.lock = threading.Lock()
        self.document = document.encode()
        self.mode = "ok"  # ok | status | hang | stall-body | raw
        self.status = 500
        self.raw_body = b""
        self.chunked = False
        self.requests: list[Seen] = []
        self.release = threading.Event()
        self.arrived = threading.Condition(self.lock)
        # The connections being served: close() ends them too, as a control plane that goes away
        # does (a kept-alive connection's handler thread would otherwise go on answering).
        self.connections: set[socket.socket] = set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                with outer.lock:
                    outer.connections.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with outer.lock:
                        outer.connections.discard(self.connection)

            def do_GET(self):
                with outer.lock:
                    mode, status, body, raw, chunked = (outer.mode, outer.status, outer.document, outer.raw_body,
                                                        outer.chunked)
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                headers = {k.lower(): v for k, v in self.headers.items()}
                code = 200
                if mode == "status":
                    code = status
                elif mode == "ok" and headers.get("if-none-match") == etag:
                    code = 304
                outer._record(Seen(time.monotonic(), self.path, headers, code))
                if mode == "hang":
                    outer.release.wait(30)
                    return
                if mode == "status":
                    self._reply(code, b"control plane is down\n", None, False)
                elif mode == "stall-body":
                    self.send_response(200)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    outer.release.wait(30)
                elif mode == "raw":
                    self._reply(200, raw, None, chunked)
                elif code == 304:
                    self.send_response(304)
                    self.send_header("etag", etag)
                    self.end_headers()
                else:
                    self._reply(200, body, etag, chunked)

            def _reply(self, code, body, etag, chunked):
                self.send_response(code)
                self.send_header("content-type", "application/yaml")
                if etag:
                    self.send_header("etag", etag)
                if chunked:
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(body), 1000):
                        piece = body[i:i + 1000]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            # So that go_down() can hold the port while this server closes, and come_back() bind
            # it again while still held (every socket on the port must set it).
            allow_reuse_port = True

        self.held: socket.socket | None = None
        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-control-plane")
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/desired-state"

    def _record(self, seen: Seen) -> None:
        with self.arrived:
            self.requests.append(seen)
            self.arrived.notify_all()

    def set(self, **changes) -> None:
        with self.lock:
            for key, value in changes.items():
                if key == "document":
                    value = value.encode()
                setattr(self, key, value)

    def seen(self) -> list[Seen]:
        with self.lock:
            return list(self.requests)

    def wait_for_requests(self, count: int, timeout: float) -> list[Seen]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{count} requests not within {timeout}s (got {len(self.requests)})")
                self.arrived.wait(remaining)
            return list(self.requests)

    def go_down(self) -> None:
        """The control plane goes away: connections are refused from now on. The port stays
        bound (not listening) until come_back(), so that nothing takes it meanwhile: a freed
        port is handed out again as an ephemeral port, the sidecar's own connects included."""
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", self.port))
        self.close()
        self.held = held

    def come_back(self, document: str) -> "FakeControlPlane":
        """A new control plane on the same port (after go_down()), serving `document`."""
        back = FakeControlPlane(document, port=self.port)
        if self.held is not None:
            self.held.close()
            self.held = None
        return back

    def close(self) -> None:
        if self.held is not None:
            self.held.close()
            self.held = None
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            serving = list(self.connections)
        for connection in serving:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its client
