"""The world around overlayd during the soak, all on 127.0.0.1:

* :class:`LegacyApp` - the host app: serves :mod:`pages` by path, counts every request id it is
  asked for (``x-soak-rid``), remembers the ``x-overlay-model`` header it got, and closes
  keep-alive connections idle for 2 s (as real servers do, racing the proxy's pooled reuse);
* :class:`FlappingOpenAI` - an OpenAI-compatible ``/v1/chat/completions`` whose mode the soak
  cycles: normal, down (listener closed: connection refused), slow (answers after the model's
  timeout), 500, 429 with Retry-After, garbage JSON, truncated SSE;
* :class:`FlappingControlPlane` - serves one of two valid desired-state documents, or fails:
  down, 500, garbage body, oversized body (20 MB), hanging (accepts, never answers).

"down" closes the listening socket and a later mode opens it again on the same port (the
configurations name the port). Handlers that hang or dawdle wait on an event that every mode
change sets, so nothing outlives its mode by more than that.
"""

from __future__ import annotations

import collections
import http.server
import json
import random
import socket
import sys
import threading
import zlib
from socketserver import ThreadingMixIn

import pages


class _Server(ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    unexpected_errors = 0

    def handle_error(self, request, client_address):
        """A peer that hangs up mid-answer (a client gone away, overlayd's timeouts) is normal
        here; anything else is counted (``unexpected_errors``) instead of printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            type(self).unexpected_errors += 1


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # http.server writes a response's head and body in two writes: with Nagle on, the body waits
    # for the head's ACK, which the peer's kernel delays by up to 40 ms (delayed ACK), and every
    # latency measured through these fakes had that in it.
    disable_nagle_algorithm = True
    owner: "_Restartable"

    def setup(self):
        super().setup()
        self.owner._opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.owner._closed(self.connection)

    def log_message(self, *args):
        pass

    def log_error(self, *args):
        pass


class _Restartable:
    """An HTTP server on a fixed 127.0.0.1 port that can be taken down and brought back."""

    def __init__(self, handler: type, name: str):
        handler.owner = self
        self._handler = handler
        self._name = name
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.rebind_failures = 0
        self._up()

    def _up(self) -> None:
        server = _Server(("127.0.0.1", self.port), self._handler)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name=self._name)
        self._thread.start()

    def _opened(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(conn)

    def set_listening(self, listening: bool) -> None:
        """False: close the listener and every open connection (clients see refused / reset)."""
        with self._lock:
            if listening and self._server is None:
                try:
                    self._up()
                except OSError:
                    self.rebind_failures += 1  # the port is taken meanwhile: stays down, retried next time
            elif not listening and self._server is not None:
                server, self._server = self._server, None
                server.shutdown()
                server.server_close()
                with self._conn_lock:
                    open_now = list(self._connections)
                for conn in open_now:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def close(self) -> None:
        self.set_listening(False)


# ---------------------------------------------------------------------------------- legacy app


class LegacyApp(_Restartable):
    IDLE_TIMEOUT = 2.0

    def __init__(self, seed: int = 1):
        self.counts: collections.Counter[str] = collections.Counter()
        self.models: dict[str, str | None] = {}
        self.count_lock = threading.Lock()
        self.rng = random.Random(seed)
        self.closing = threading.Event()
        app = self

        class Handler(_Quiet):
            timeout = self.IDLE_TIMEOUT  # a keep-alive connection idle this long is closed

            def do_GET(self):
                app._serve(self)

            do_POST = do_HEAD = do_GET

        super().__init__(Handler, "legacy-app")

    def _serve(self, req: http.server.BaseHTTPRequestHandler) -> None:
        rid = req.headers.get("x-soak-rid", "")
        length = int(req.headers.get("content-length") or 0)
        if length:
            req.rfile.read(length)  # the request body is consumed (the emulator checks it before forwarding)
        with self.count_lock:
            self.counts[rid] += 1
            self.models[rid] = req.headers.get("x-overlay-model")
        delay = float(req.headers.get("x-soak-delay") or 0)
        if delay:
            self.closing.wait(delay)  # a slow page (the simulated app's behaviour, not a synchronisation)
        try:
            variant, path_rid = pages.variant_of(req.path)
            pg = pages.page(variant, path_rid)
        except (ValueError, IndexError):
            req.send_response(400)
            req.send_header("content-length", "0")
            req.end_headers()
            return
        req.send_response(pg.status)
        for name, value in pg.headers:
            req.send_header(name, value)
        with self.count_lock:
            chunked = self.rng.random() < 0.5
            cuts = sorted(self.rng.sample(range(1, len(pg.body)), min(4, len(pg.body) - 1)))
        if chunked:
            req.send_header("transfer-encoding", "chunked")
            req.end_headers()
            if req.command != "HEAD":
                for a, b in zip([0, *cuts], [*cuts, len(pg.body)]):
                    req.wfile.write(b"%x\r\n%s\r\n" % (b - a, pg.body[a:b]))
                req.wfile.write(b"0\r\n\r\n")
        else:
            req.send_header("content-length", str(len(pg.body)))
            req.end_headers()
            if req.command != "HEAD":
                req.wfile.write(pg.body)

    def close(self) -> None:
        self.closing.set()
        super().close()


# ---------------------------------------------------------------------------------- model backend


class FlappingOpenAI(_Restartable):
    MODES = ("normal", "down", "slow", "500", "429", "garbage", "sse_truncated")
    SLOW_SECONDS = 3.0  # beyond every AIModel's timeouts.total in the soak's configurations

    def __init__(self):
        self.mode = "normal"
        self.changed = threading.Event()
        self.calls: collections.Counter[str] = collections.Counter()
        self.stream_requested = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(_Quiet):
            def do_POST(self):
                fake._answer(self)

        super().__init__(Handler, "fake-openai")
        self.base = f"http://127.0.0.1:{self.port}/v1"

    def set_mode(self, mode: str) -> None:
        with self.lock:
            self.mode = mode
            old, self.changed = self.changed, threading.Event()
        old.set()  # release handlers dawdling in the previous mode
        self.set_listening(mode != "down")

    def _answer(self, req) -> None:
        length = int(req.headers.get("content-length") or 0)
        raw = req.rfile.read(length)
        with self.lock:
            mode, changed = self.mode, self.changed
            self.calls[mode] += 1
        try:
            request = json.loads(raw)
            prompt = request["messages"][-1]["content"]
            if request.get("stream"):
                with self.lock:
                    self.stream_requested += 1
        except (ValueError, KeyError, IndexError, TypeError):
            self._send(req, 400, b'{"error": {"message": "bad request"}}')
            return
        text = f"Fake model on {prompt} <b>&amp;</b> \u2028 ✓"
        ok = json.dumps({"id": "chatcmpl-soak", "object": "chat.completion", "model": request.get("model"),
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}]}).encode()
        if mode == "slow":
            changed.wait(self.SLOW_SECONDS)
            self._send(req, 200, ok)
        elif mode == "500":
            self._send(req, 500, b'{"error": {"message": "soak: internal error", "type": "server_error"}}')
        elif mode == "429":
            self._send(req, 429, b'{"error": {"message": "soak: rate limited"}}', (("retry-after", "1"),))
        elif mode == "garbage":
            self._send(req, 200, b'{"choices": [{"message": {"content": "cut here')
        elif mode == "sse_truncated":
            req.send_response(200)
            req.send_header("content-type", "text/event-stream")
            req.send_header("connection", "close")
            req.end_headers()
            req.wfile.write(b'data: {"choices":[{"delta":{"content":"partial "}}]}\n\n'
                            b'data: {"choices":[{"delta":{"content":"answ')
            req.close_connection = True
        else:
            self._send(req, 200, ok)

    @staticmethod
    def _send(req, status: int, body: bytes, extra=()) -> None:
        try:
            req.send_response(status)
            req.send_header("content-type", "application/json")
            req.send_header("content-length", str(len(body)))
            for name, value in extra:
                req.send_header(name, value)
            req.end_headers()
            req.wfile.write(body)
        except OSError:
            req.close_connection = True  # the client gave up (its timeout): nothing to do


# ---------------------------------------------------------------------------------- control plane


class FlappingControlPlane(_Restartable):
    MODES = ("normal", "down", "500", "garbage", "oversized", "hanging")
    OVERSIZED = 20 * 1024 * 1024

    def __init__(self, documents: list[str]):
        self.documents = [d.encode() for d in documents]
        self.current = 0
        self.mode = "normal"
        self.changed = threading.Event()
        self.lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.garbage_kind = 0
        plane = self

        class Handler(_Quiet):
            def do_GET(self):
                plane._answer(self)

        super().__init__(Handler, "fake-control-plane")
        self.url = f"http://127.0.0.1:{self.port}/v1/desired-state"

    def set_mode(self, mode: str) -> None:
        with self.lock:
            if mode == "normal" and self.mode != "normal":
                self.current = (self.current + 1) % len(self.documents)  # a real change each time
            self.mode = mode
            old, self.changed = self.changed, threading.Event()
        old.set()
        self.set_listening(mode != "down")

    def _answer(self, req) -> None:
        with self.lock:
            mode, changed, doc = self.mode, self.changed, self.documents[self.current]
            self.requests[mode] += 1
            self.garbage_kind += 1
            garbage_kind = self.garbage_kind
        try:
            if mode == "hanging":
                changed.wait(60)
                req.close_connection = True
                return
            if mode == "500":
                self._send(req, 500, b"control plane: internal error\n")
            elif mode == "garbage":
                body = (b"\xff\xfe\x00 not utf-8 \x80\x81" if garbage_kind % 2 else
                        b"apiVersion: [unclosed\n  kind: {{{ : :\n\t- garbage")
                self._send(req, 200, body)
            elif mode == "oversized":
                req.send_response(200)
                req.send_header("content-type", "application/yaml")
                req.send_header("content-length", str(self.OVERSIZED))
                req.end_headers()
                block = b"# padding " + b"x" * 65526 + b"\n"
                for _ in range(self.OVERSIZED // len(block)):
                    req.wfile.write(block)
                req.wfile.write(b"#" * (self.OVERSIZED % len(block)))
            else:
                etag = '"%08x"' % zlib.crc32(doc)
                if req.headers.get("if-none-match") == etag:
                    req.send_response(304)
                    req.send_header("etag", etag)
                    req.send_header("content-length", "0")
                    req.end_headers()
                else:
                    self._send(req, 200, doc, (("etag", etag),))
        except OSError:
            req.close_connection = True  # overlayd hung up (size limit, timeout): expected

    @staticmethod
    def _send(req, status: int, body: bytes, extra=()) -> None:
        req.send_response(status)
        req.send_header("content-type", "application/yaml")
        req.send_header("content-length", str(len(body)))
        for name, value in extra:
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(body)

