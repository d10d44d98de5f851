"""A minimal gRPC-over-HTTP/2 (h2c, prior knowledge) client built on the ``h2`` package.

Why not grpcio for everything: grpcio (gRPC core) drops ``grpc-message`` when ``grpc-status``
is 0, so the "status OK with a details text" of contract 6/7 is invisible through it. This
client reads the trailers as sent. It also lets a test put arbitrary bytes in DATA frames
(broken gRPC framing), which grpcio cannot do.

Every wait is bounded by the ``timeout`` of the call.
"""

from __future__ import annotations

import socket
import struct
import time
import urllib.parse
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def grpc_frame(payload: bytes, compressed: bool = False) -> bytes:
    """The 5-byte gRPC message prefix (flag, big-endian length) + payload."""
    return struct.pack(">BI", 1 if compressed else 0, len(payload)) + payload


@dataclass
class RawOutcome:
    """What came back on one HTTP/2 stream."""
    http_status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    leftover: bytes = b""  # DATA bytes that do not form a complete gRPC message
    reset_code: int | None = None  # RST_STREAM error code, if the server reset the stream
    connection_closed: bool = False
    stream_ended: bool = False  # END_STREAM from the server

    def _last(self, name: str) -> str | None:
        for key, value in reversed(self.trailers or self.headers):
            if key == name:
                return value
        return None

    @property
    def grpc_status(self) -> int | None:
        value = self._last("grpc-status")
        return int(value) if value is not None else None

    @property
    def grpc_message(self) -> str:
        value = self._last("grpc-message")
        return urllib.parse.unquote(value) if value else ""

    @property
    def ended(self) -> bool:
        return self.stream_ended or self.reset_code is not None or self.connection_closed

    def __str__(self) -> str:
        return (f"http {self.http_status}, grpc-status {self.grpc_status}, grpc-message {self.grpc_message!r}, "
                f"{len(self.messages)} message(s), reset {self.reset_code}, closed {self.connection_closed}")

    __repr__ = __str__


def _connect(target: str, timeout: float) -> socket.socket:
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(target[len("unix:"):])
        return sock
    host, _, port = target.rpartition(":")
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def raw_call(target: str, path: str, data_frames: list[bytes], *, half_close: bool = True,
             timeout: float = 10.0, content_type: str = "application/grpc",
             extra_headers: list[tuple[str, str]] = ()) -> RawOutcome:
    """One POST stream on a fresh connection: send ``data_frames`` as DATA (each as given:
    use :func:`grpc_frame` for well-formed messages), END_STREAM after them if ``half_close``,
    then read until the server ends the stream (trailers, RST_STREAM or connection close).
    AssertionError if the stream is still open after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    sock = _connect(target, timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    out = RawOutcome()
    buffer = b""
    try:
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16 * 1024 * 1024})
        conn.increment_flow_control_window(16 * 1024 * 1024)
        sid = conn.get_next_available_stream_id()
        authority = "localhost" if target.startswith("unix:") else target
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                (":authority", authority), ("content-type", content_type),
                                ("te", "trailers"), *extra_headers])
        pending = b"".join(data_frames)
        sent_end = False

        def pump(block: bool) -> None:
            nonlocal buffer
            sock.sendall(conn.data_to_send())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"stream still open after {timeout}s: {out}")
            sock.settimeout(remaining if block else 0.0001)
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, socket.timeout):
                if block:
                    raise AssertionError(f"stream still open after {timeout}s: {out}") from None
                return
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                out.connection_closed = True
                return
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    out.headers = list(event.headers)
                    out.http_status = int(dict(event.headers).get(":status", 0))
                elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == sid:
                    out.trailers = list(event.headers)
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                    buffer += event.data
                    while len(buffer) >= 5:
                        _, length = struct.unpack(">BI", buffer[:5])
                        if len(buffer) < 5 + length:
                            break
                        out.messages.append(buffer[5:5 + length])
                        buffer = buffer[5 + length:]
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    out.stream_ended = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                    out.reset_code = int(event.error_code)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    out.connection_closed = True
            sock.sendall(conn.data_to_send())

        while not out.ended:
            # Send as much as flow control allows; then read (blocking only when nothing to send).
            while pending and not out.ended:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece, pending = pending[:window], pending[window:]
                conn.send_data(sid, piece)
            if not pending and half_close and not sent_end and not out.ended:
                conn.end_stream(sid)
                sent_end = True
            pump(block=not (pending and conn.local_flow_control_window(sid) > 0))
        out.leftover = buffer
        return out
    except h2.exceptions.StreamClosedError:
        out.leftover = buffer
        return out
    finally:
        try:
            conn.close_connection()
            sock.sendall(conn.data_to_send())
        except OSError:
            pass
        sock.close()
