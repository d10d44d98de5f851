"""Malformed and abusive HTTP/2 on the ext_proc listener, sent as raw frames (hyperframe, hpack):
a bad preface, oversized frames, an HPACK bomb, window overflows, streams past the limit, reset,
PING and SETTINGS floods. Each gets the answer RFC 9113 calls for (GOAWAY or RST_STREAM with the
right code, or the connection closed), and the server keeps serving: a connection opened before
the attack completes a call afterwards, and so does a new one.
"""

from __future__ import annotations

import socket
import struct
import time

import grpc
import pytest
from hpack import Encoder, NeverIndexedHeaderTuple
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from extproc_helpers import CHANNEL_OPTIONS, exchange, request_headers

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
READ_TIMEOUT = 10.0

# RFC 9113 §7 error codes
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, CANCEL = 0x1, 0x3, 0x6, 0x8


class RawConnection:
    """A client connection that sends whatever bytes it is given and parses what comes back."""

    def __init__(self, target: str):
        host, _, port = target.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=READ_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.frames: list[Frame] = []
        self.closed = False
        self.encoder = Encoder()

    def start(self) -> "RawConnection":
        self.send(PREFACE + SettingsFrame(0).serialize())
        return self

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def headers_block(self, path: str = PROCESS) -> bytes:
        return self.encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                                    (":authority", "sidecar"), ("content-type", "application/grpc"),
                                    ("te", "trailers")])

    def open_stream(self, stream_id: int, *, end: bool = False) -> None:
        frame = HeadersFrame(stream_id, self.headers_block())
        frame.flags.add("END_HEADERS")
        if end:
            frame.flags.add("END_STREAM")
        self.send(frame.serialize())

    def read_until(self, done, timeout: float = READ_TIMEOUT) -> list[Frame]:
        """Reads frames until ``done(frames)`` or the connection closes; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done(self.frames) and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no expected frame within {timeout}s; got {self.frames}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self.buffer += chunk
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9:9 + length]))
                self.buffer = self.buffer[9 + length:]
                self.frames.append(frame)
                if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                    ack = PingFrame(0, frame.opaque_data)
                    ack.flags.add("ACK")
                    self.send(ack.serialize())
        return self.frames

    def read_until_closed(self, timeout: float = READ_TIMEOUT) -> list[Frame]:
        return self.read_until(lambda _: False, timeout)

    def goaway(self) -> GoAwayFrame | None:
        return next((f for f in self.frames if isinstance(f, GoAwayFrame) and f.last_stream_id != 2**31 - 1), None)

    def resets(self) -> dict[int, int]:
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def close(self) -> None:
        self.sock.close()


def served(target: str) -> bool:
    """A fresh gRPC connection completes a pass-through exchange."""
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        outcome = exchange(channel, [request_headers("passthrough.test")])
        return outcome.code == grpc.StatusCode.OK and len(outcome.responses) == 1


@pytest.fixture
def server(start_overlayd):
    """A fresh overlayd (few streams, so the limit is reachable) and a channel opened before the attack."""
    proc = start_overlayd(extra_args=("--max-concurrent-streams", "100"))
    before = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    assert exchange(before, [request_headers("passthrough.test")]).code == grpc.StatusCode.OK
    yield proc
    # Still serving: the connection from before the attack, and a new one.
    try:
        assert exchange(before, [request_headers("passthrough.test")]).code == grpc.StatusCode.OK
        assert served(proc.grpc_target)
    finally:
        before.close()


def test_a_bad_preface_closes_the_connection(server):
    conn = RawConnection(server.grpc_target)
    conn.send(b"GET / HTTP/1.1\r\nHost: sidecar\r\n\r\n")
    conn.read_until_closed()
    assert conn.closed
    conn.close()


def test_a_frame_larger_than_max_frame_size_is_a_frame_size_error(server):
    conn = RawConnection(server.grpc_target).start()
    conn.open_stream(1)
    oversized = DataFrame(1, b"\0" * 20_000)  # SETTINGS_MAX_FRAME_SIZE is 16,384
    conn.send(oversized.serialize())
    conn.read_until_closed()
    assert conn.goaway() is not None and conn.goaway().error_code == FRAME_SIZE_ERROR, conn.frames
    conn.close()


def test_an_hpack_bomb_is_refused_without_decoding_it_all(server):
    """One 4 KB header inserted in the dynamic table, then referenced 2,000 times: an 8 MB header
    list from a few kilobytes on the wire. The stream is refused past the advertised
    SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB); the connection lives on."""
    conn = RawConnection(server.grpc_target).start()
    big = ("x-bomb", "b" * 4000)
    first = conn.encoder.encode([big])  # literal with incremental indexing: dynamic index 62
    block = conn.headers_block() + first + bytes([0x80 | 62]) * 2000
    frame = HeadersFrame(1, block[:16_000])
    frame.flags.add("END_STREAM")
    rest = block[16_000:]
    if rest:
        conn.send(frame.serialize())
        continuation = ContinuationFrame(1, rest)
        continuation.flags.add("END_HEADERS")
        conn.send(continuation.serialize())
    else:
        frame.flags.add("END_HEADERS")
        conn.send(frame.serialize())
    conn.read_until(lambda frames: any(isinstance(f, (RstStreamFrame, GoAwayFrame)) and
                                       getattr(f, "last_stream_id", 0) != 2**31 - 1 for f in frames))
    assert conn.resets() == {1: PROTOCOL_ERROR} and conn.goaway() is None, conn.frames
    # No response headers were produced for the bomb.
    assert not any(isinstance(f, HeadersFrame) for f in conn.frames), conn.frames
    conn.close()


def test_a_connection_window_overflow_is_a_flow_control_error(server):
    conn = RawConnection(server.grpc_target).start()
    conn.send(WindowUpdateFrame(0, 2**31 - 1).serialize())  # the window starts at 65,535
    conn.read_until_closed()
    assert conn.goaway() is not None and conn.goaway().error_code == FLOW_CONTROL_ERROR, conn.frames
    conn.close()


def test_a_stream_window_overflow_resets_that_stream(server):
    conn = RawConnection(server.grpc_target).start()
    conn.open_stream(1)
    conn.send(WindowUpdateFrame(1, 2**31 - 1).serialize())
    conn.read_until(lambda frames: any(isinstance(f, RstStreamFrame) for f in frames))
    assert conn.resets() == {1: FLOW_CONTROL_ERROR}, conn.frames
    conn.close()


def test_streams_past_the_concurrency_limit_end_the_connection(server):
    """RFC 9113 §5.1.2 makes it a stream error at least; libnghttp2 ends the connection with
    GOAWAY(PROTOCOL_ERROR), naming the last stream it took (Envoy keeps to the advertised limit)."""
    conn = RawConnection(server.grpc_target).start()
    # Our SETTINGS (100 streams) must be acknowledged before the limit binds.
    conn.read_until(lambda frames: any(isinstance(f, SettingsFrame) and "ACK" not in f.flags for f in frames))
    ack = SettingsFrame(0)
    ack.flags.add("ACK")
    conn.send(ack.serialize())
    for index in range(101):
        conn.open_stream(1 + 2 * index)  # open: no END_STREAM, no message
    conn.read_until_closed()
    goaway = conn.goaway()
    assert goaway is not None and goaway.error_code == PROTOCOL_ERROR and goaway.last_stream_id == 199, conn.frames
    conn.close()


def test_a_reset_flood_leaves_the_server_serving(server):
    """30,000 streams opened and reset at once on one connection (CVE-2023-44487's shape)."""
    conn = RawConnection(server.grpc_target).start()
    # Static-table entries and never-indexed literals only: the same bytes are valid every time.
    block = conn.encoder.encode([(":method", "POST"), (":scheme", "http"), NeverIndexedHeaderTuple(":path", PROCESS),
                                 NeverIndexedHeaderTuple(":authority", "sidecar"),
                                 NeverIndexedHeaderTuple("content-type", "application/grpc")])
    burst = bytearray()
    for index in range(30_000):
        stream = 1 + 2 * index
        frame = HeadersFrame(stream, block)
        frame.flags.add("END_HEADERS")
        burst += frame.serialize() + RstStreamFrame(stream, CANCEL).serialize()
    conn.send(bytes(burst))
    # Envoy's own pattern at a rate no Envoy reaches: the guard (200,000 resets a second; it was
    # 20,000 deep at first and this test found that a second's worth of one connection's
    # exchanges tripped it) lets it pass, every reset stream is simply gone, and the connection still answers a PING.
    conn.send(PingFrame(0, b"12345678").serialize())
    conn.read_until(lambda frames: any(isinstance(f, PingFrame) and "ACK" in f.flags for f in frames), timeout=30)
    assert not conn.closed and conn.goaway() is None, conn.frames[-3:]
    conn.close()


def test_a_ping_flood_without_reading_is_bounded(server):
    conn = RawConnection(server.grpc_target).start()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pings = b"".join(PingFrame(0, struct.pack(">Q", index)).serialize() for index in range(200_000))
    conn.sock.settimeout(5)
    try:
        conn.sock.sendall(pings)  # the server stops reading once its acks back up, or closes
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        pass
    conn.close()


def test_a_settings_flood_ends_the_connection(server):
    """20,000 SETTINGS in one burst: libnghttp2 stops once 1,000 acknowledgements are queued."""
    conn = RawConnection(server.grpc_target).start()
    conn.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65_535}).serialize() * 20_000)
    conn.read_until_closed(timeout=30)
    acks = sum(1 for f in conn.frames if isinstance(f, SettingsFrame) and "ACK" in f.flags)
    assert conn.closed and acks <= 1_001, (acks, conn.frames[-3:])
    conn.close()
