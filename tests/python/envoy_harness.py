"""A stand-in for Envoy, so that a real browser can be pointed at overlayd before proxy mode exists.

:class:`EnvoyHarness` is a small threaded HTTP/1.1 server on ``127.0.0.1:0``. For every browser
request it does what Envoy's ext_proc filter does (``processing_mode`` request headers SEND,
response headers SEND, response body STREAMED, ``allow_mode_override: true``), with one
``Process`` stream to overlayd per request:

1. ``request_headers``: ``:authority`` is the host the harness presents (say ``crm.example.com``,
   whatever port the browser used), then ``:path``, ``:method``, ``:scheme`` and the browser's
   headers lower-cased, with ``protocol_config`` on this first message.
   An ``immediate_response`` answer (overlayd's own ``/__overlay/...`` endpoints) goes straight
   back to the browser; otherwise the header mutation is applied to the forwarded request.
2. The request goes to the upstream, the "legacy app" (:class:`LegacyApp`, a plain server-rendered
   site that knows nothing about overlays).
3. ``response_headers`` (``:status`` and the upstream's headers); the answer's header mutation is
   applied (overlayd removes ``content-length`` when it rewrites) and its ``mode_override`` is
   honoured (``response_body_mode: NONE``: the body is not sent to overlayd, it passes through).
4. The body in :data:`CHUNK_SIZE` pieces as ``response_body`` messages, the last with
   ``end_of_stream``; the browser gets ``body_mutation.body`` when an answer carries one, else
   the original piece. Without a content-length the browser gets ``Transfer-Encoding: chunked``.

Request bodies, trailers and ``FULL_DUPLEX_STREAMED`` are left out (the browser tests need none).
Every exchange is recorded in :attr:`EnvoyHarness.log` for assertions and failure messages.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc_helpers import CHANNEL_OPTIONS, PM, Stream, header_map, protocol_config

CHUNK_SIZE = 4 * 1024
UPSTREAM_TIMEOUT = 10.0
# Connection-level headers: Envoy does not hand them to ext_proc (HTTP/2 has none), nor forward them.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


@dataclass
class Exchange:
    """What the harness saw of one browser request."""
    method: str
    path: str
    status: int = 0
    immediate: bool = False  # answered by overlayd's immediate_response
    body_to_overlayd: bool = False  # response body chunks were sent to overlayd
    rewritten: bool = False  # at least one chunk came back with a body_mutation
    body: bytes = b""  # what the browser got
    error: str | None = None


def _headers_from_mutation(headers: dict[str, str], mutation) -> None:
    """Applies a HeaderMutation (set_headers, remove_headers) to lower-cased ``headers`` in place."""
    for name in mutation.remove_headers:
        headers.pop(name.lower(), None)
    for option in mutation.set_headers:
        raw = option.header.raw_value or option.header.value.encode()
        headers[option.header.key.lower()] = raw.decode("latin-1")


class EnvoyHarness:
    """``EnvoyHarness(grpc_target, upstream, host).start()`` then browse ``harness.url(path)``."""

    def __init__(self, grpc_target: str, upstream: str, authority: str):
        self.upstream = upstream  # "127.0.0.1:port"
        self.authority = authority
        self.channel = grpc.insecure_channel(grpc_target, options=CHANNEL_OPTIONS)
        self.log: list[Exchange] = []
        self._log_lock = threading.Lock()
        harness = self

        class Handler(_Handler):
            owner = harness

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="envoy-harness")

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def start(self) -> "EnvoyHarness":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
        self.channel.close()

    def record(self, exchange: Exchange) -> None:
        with self._log_lock:
            self.log.append(exchange)

    def exchanges(self, prefix: str = "") -> list[Exchange]:
        with self._log_lock:
            return [e for e in self.log if e.path.startswith(prefix)]

    def describe(self) -> str:
        return "\n".join(f"  {e.method} {e.path} -> {e.status}{' immediate' if e.immediate else ''}"
                         f"{' rewritten' if e.rewritten else ''}{' ERROR ' + e.error if e.error else ''}"
                         for e in self.exchanges())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: EnvoyHarness

    def log_message(self, format, *args):  # quiet: the exchange log is kept instead
        pass

    def do_GET(self):
        self._exchange()

    do_HEAD = do_POST = do_GET

    def _exchange(self) -> None:
        harness = self.owner
        record = Exchange(self.command, self.path)
        # Logged first and filled in before the bytes that complete the response are written, so a
        # client that has its response can rely on the log.
        harness.record(record)
        stream = Stream(harness.channel)
        try:
            self._run(stream, record)
        except Exception as err:  # overlayd or upstream failed: Envoy's failure_mode_allow false -> 500
            record.error = f"{type(err).__name__}: {err}"
            if record.status == 0:
                record.status = 500
                self._reply(500, {"content-type": "text/plain"}, f"harness: {record.error}\n".encode())
            else:
                self.close_connection = True
        finally:
            stream.cancel()  # the exchange is over (Envoy resets the ext_proc stream with it)

    def _run(self, stream: Stream, record: Exchange) -> None:
        harness = self.owner
        length = int(self.headers.get("content-length") or 0)
        request_body = self.rfile.read(length) if length else b""
        forwarded = {k.lower(): v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        forwarded.pop("host", None)  # becomes :authority
        pseudo = [(":authority", harness.authority), (":path", self.path), (":method", self.command),
                  (":scheme", "http")]
        stream.send(ep.ProcessingRequest(
            request_headers=ep.HttpHeaders(headers=header_map(pseudo + list(forwarded.items())),
                                           end_of_stream=not request_body),
            protocol_config=protocol_config(response_body_mode=PM.STREAMED)))
        answer = stream.recv(why=f"request_headers of {self.command} {self.path}")
        if answer.HasField("immediate_response"):
            immediate = answer.immediate_response
            headers: dict[str, str] = {}
            _headers_from_mutation(headers, immediate.headers)
            record.status, record.immediate, record.body = immediate.status.code or 200, True, immediate.body
            self._reply(record.status, headers, immediate.body)
            return
        assert answer.HasField("request_headers"), f"unexpected answer to request_headers: {answer}"
        _headers_from_mutation(forwarded, answer.request_headers.response.header_mutation)
        skip_response_headers = False
        send_body = True
        if answer.HasField("mode_override"):  # e.g. a pass-through: nothing more to send
            skip_response_headers = answer.mode_override.response_header_mode == PM.SKIP
            send_body = answer.mode_override.response_body_mode != PM.NONE

        upstream = http.client.HTTPConnection(harness.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            upstream.request(self.command, self.path, body=request_body or None,
                             headers={**forwarded, "host": harness.authority})
            reply = upstream.getresponse()
            headers = {k.lower(): v for k, v in reply.getheaders() if k.lower() not in HOP_BY_HOP}
            pieces = []
            if self.command != "HEAD":
                while piece := reply.read(CHUNK_SIZE):
                    pieces.append(piece)
        finally:
            upstream.close()
        record.status = reply.status

        if not skip_response_headers:
            stream.send(ep.ProcessingRequest(response_headers=ep.HttpHeaders(
                headers=header_map([(":status", str(reply.status)), *headers.items()]),
                end_of_stream=not pieces)))
            answer = stream.recv(why=f"response_headers of {self.path}")
            assert answer.HasField("response_headers"), f"unexpected answer to response_headers: {answer}"
            _headers_from_mutation(headers, answer.response_headers.response.header_mutation)
            if answer.HasField("mode_override"):
                send_body = answer.mode_override.response_body_mode != PM.NONE

        record.body_to_overlayd = send_body and bool(pieces)
        chunked = "content-length" not in headers
        if chunked:
            headers["transfer-encoding"] = "chunked"
        self._start(reply.status, headers)
        for index, piece in enumerate(pieces):
            if send_body:
                stream.send(ep.ProcessingRequest(
                    response_body=ep.HttpBody(body=piece, end_of_stream=index == len(pieces) - 1)))
                answer = stream.recv(why=f"response_body #{index} of {self.path}")
                assert answer.HasField("response_body"), f"unexpected answer to response_body: {answer}"
                mutation = answer.response_body.response.body_mutation
                if mutation.HasField("body") or mutation.HasField("clear_body"):
                    piece = mutation.body if mutation.HasField("body") else b""
                    record.rewritten = True
            record.body += piece
            self._write(piece, chunked)
        if chunked and self.command != "HEAD":
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- writing to the browser
    def _start(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name not in ("server", "date"):
                self.send_header(name, value)
        self.end_headers()

    def _write(self, piece: bytes, chunked: bool) -> None:
        if not piece or self.command == "HEAD":
            return
        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        headers = {**headers, "content-length": str(len(body))}
        headers.pop("transfer-encoding", None)
        self._start(status, headers)
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


# ------------------------------------------------------------------------------ the upstream

LEGACY_CSS = """
/* The legacy app's stylesheet: heavy-handed, it tries to style everything on the page. */
* { color: red !important; font-size: 40px; font-family: serif; }
body { background: #fffbe6; margin: 24px; }
table { border-collapse: collapse; }
td, th { border: 2px solid #999; padding: 4px 12px; }
"""


def legacy_page(title: str, rows: list[tuple[str, str]]) -> bytes:
    cells = "".join(f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in rows)
    # Enough filler that the page spans several harness chunks (the injection point sits in the first).
    filler = "".join(f"<!-- legacy row padding {i:04d} -->\n" for i in range(300))
    return (f"<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n<title>{title}</title>\n"
            f"<style>{LEGACY_CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
            f"<table><tr><th>Account</th><th>Balance</th></tr>{cells}</table>\n{filler}</body>\n</html>\n"
            ).encode()


LEGACY_PAGES = {
    "/accounts": ("text/html; charset=utf-8",
                  legacy_page("Accounts", [("Acme Corp", "$12,400"), ("Globex", "$8,150"), ("Initech", "$310")])),
    "/invoices": ("text/html; charset=utf-8",
                  legacy_page("Open invoices", [("INV-1001", "$1,200"), ("INV-1002", "$640")])),
    "/api/accounts": ("application/json", b'{"accounts": [{"name": "Acme Corp", "balance": 12400}]}'),
}


class LegacyApp:
    """The upstream: a server-rendered site on 127.0.0.1:0 that knows nothing about overlays.

    It records the request headers it received (``seen``), e.g. ``x-overlay-model``."""

    def __init__(self):
        app = self
        self.seen: list[tuple[str, dict[str, str]]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_GET(self):
                app.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                content_type, body = LEGACY_PAGES.get(self.path, ("text/plain", b"not found\n"))
                self.send_response(200 if self.path in LEGACY_PAGES else 404)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="legacy-app")

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "LegacyApp":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
