"""Graceful shutdown of the real binary (issue: SIGTERM/SIGINT stop accepting, let in-flight
streams finish within --drain-timeout, exit 0).

Envoy keeps its ext_proc connection open and a Process stream lives as long as the HTTP request
it belongs to (envoy-ext-proc.md §1), so a restart must not cut exchanges that are under way:
the listener closes, health turns NOT_SERVING, connections get GOAWAY, and streams already open
may finish. A stream that never finishes is cut when --drain-timeout runs out.
"""
from __future__ import annotations

import signal
import socket
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc_helpers import CHANNEL_OPTIONS, Stream, request_headers, response_headers
from overlayd_proc import wait_until, http_get

OVERLAID = "crm.example.com"


def _connect_refused(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def _readyz(proc) -> int:
    try:
        return http_get(proc.admin_addr, "/readyz").status
    except OSError:
        return -1


def test_sigterm_lets_an_in_flight_stream_finish(start_overlayd):
    proc = start_overlayd(extra_args=("--drain-timeout", "30"))
    assert _readyz(proc) == 200
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    health = health_pb2_grpc.HealthStub(channel)
    # A health watch opened before the drain (after GOAWAY no new stream can start).
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    stream = Stream(channel)
    stream.send(request_headers(OVERLAID, eos=True))
    assert stream.recv(why="request_headers before SIGTERM").HasField("request_headers")

    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)

    # Draining: not ready, health NOT_SERVING, the listener closed to new connections.
    wait_until(lambda: _readyz(proc) == 503, 10, "/readyz 503 while draining")
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    wait_until(lambda: _connect_refused(proc.grpc_target), 10, "new connections refused")
    assert proc.alive(), "overlayd exited while a stream was still in flight"

    # The stream that was under way still gets its answers, in order, and ends OK.
    stream.send(response_headers(200, eos=True))
    assert stream.recv(why="response_headers during the drain").HasField("response_headers")
    outcome = stream.close()
    assert outcome.code == grpc.StatusCode.OK, outcome
    channel.close()

    # With nothing left in flight the process exits 0, long before the 30 s drain bound.
    code = proc.proc.wait(timeout=10)
    assert code == 0, proc.describe()
    assert time.monotonic() - started < 20, "exit waited for the drain timeout despite no open stream"


def test_drain_timeout_bounds_a_stuck_stream(start_overlayd):
    proc = start_overlayd(extra_args=("--drain-timeout", "1"))
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    stream = Stream(channel)
    stream.send(request_headers(OVERLAID, eos=False))
    assert stream.recv(why="request_headers").HasField("request_headers")

    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    # The stream is never finished by the client: the drain bound (1 s) ends it.
    code = proc.proc.wait(timeout=15)
    elapsed = time.monotonic() - started
    assert code == 0, proc.describe()
    assert elapsed >= 0.9, f"exited after {elapsed:.2f}s, before the 1 s drain bound, with a stream open"
    outcome = stream.finish(timeout=10)
    assert outcome.code != grpc.StatusCode.OK or outcome.responses, outcome
    channel.close()


def test_sigint_drains_like_sigterm(start_overlayd):
    proc = start_overlayd()
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=10) == 0, proc.describe()
    assert "ext_proc drained" in proc.output()


def test_envoy_style_resets_never_trip_the_reset_flood_guard(start_overlayd):
    """Envoy ends every Process stream with RST_STREAM (envoy-ext-proc.md §1), so one Envoy
    connection resets a stream per HTTP exchange. 1,000 exchanges ended that way on ONE connection
    must not make overlayd send GOAWAY (libnghttp2's default guard allows a burst of about 1,000;
    overlayd raises it to 200,000 a second, README "Design")."""
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events

    from raw_grpc import _connect, grpc_frame

    proc = start_overlayd()
    sock = _connect(proc.grpc_target, 10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    message = grpc_frame(request_headers("other.example.com", eos=False).SerializeToString())
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/envoy.service.ext_proc.v3.ExternalProcessor/Process"),
               (":authority", "overlayd"), ("content-type", "application/grpc"), ("te", "trailers")]
    goaway = []

    def exchange(end: bool):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers)
        conn.send_data(sid, message, end_stream=end)
        sock.sendall(conn.data_to_send())
        got_data, trailers = False, None
        while not (got_data and (trailers is not None or not end)):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed by overlayd; GOAWAY: {goaway}"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ConnectionTerminated):
                    goaway.append(event)
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    got_data = got_data or event.stream_id == sid
                elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == sid:
                    trailers = dict(event.headers)
            sock.sendall(conn.data_to_send())
            assert not goaway, f"overlayd sent GOAWAY after {sid // 2} exchanges: {goaway}"
        if not end:
            conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)  # Envoy's default close
            sock.sendall(conn.data_to_send())
        return trailers

    sock.settimeout(10)
    for _ in range(1000):
        exchange(end=False)
    trailers = exchange(end=True)
    assert trailers.get("grpc-status") == "0", trailers
    assert not goaway
    sock.close()


def test_partial_messages_cannot_grow_memory_without_bound(start_overlayd):
    """A client that never completes its messages can make overlayd hold at most its connection
    window (16 MiB) plus the partial-message budget (2 x --max-message-bytes): past that the
    connection window is not refilled. Other connections are unaffected."""
    import socket as socketlib
    import struct

    import h2.config
    import h2.connection
    import h2.events

    from raw_grpc import _connect

    limit = 1 << 20
    proc = start_overlayd(extra_args=("--max-message-bytes", str(limit)))
    sock = _connect(proc.grpc_target, 10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/envoy.service.ext_proc.v3.ExternalProcessor/Process"),
               (":authority", "overlayd"), ("content-type", "application/grpc"), ("te", "trailers")]
    streams = {}
    for _ in range(40):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers)
        # A message that claims 1 MiB (the limit) and never gets its last 100 bytes.
        streams[sid] = struct.pack(">BI", 0, limit) + b"x" * (limit - 100)
    sent = 0

    def pump(timeout: float) -> bool:
        sock.settimeout(timeout)
        try:
            chunk = sock.recv(1 << 20)
        except socketlib.timeout:
            return False
        assert chunk, "overlayd closed the connection"
        conn.receive_data(chunk)
        sock.sendall(conn.data_to_send())
        return True

    idle_rounds = 0
    while idle_rounds < 2:  # the server grants no more window for two quiet periods in a row
        progressed = False
        for sid, data in streams.items():
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(data))
            if room > 0:
                conn.send_data(sid, data[:room])
                streams[sid] = data[room:]
                sent += room
                progressed = True
        sock.sendall(conn.data_to_send())
        if progressed:
            idle_rounds = 0
            while pump(0.05):
                pass
        else:
            idle_rounds += 0 if pump(1.0) else 1
        if sum(len(d) for d in streams.values()) == 0:
            break
    total = 40 * (limit + 5 - 100)
    bound = (1 << 24) + 2 * limit + (1 << 20)  # window + budget + one stream window of slack
    assert sent <= bound, f"the client pushed {sent} bytes of unfinished messages (bound {bound})"
    assert sent < total, "every byte was accepted: nothing bounds what a connection may buffer"

    # Other connections still work.
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    stream = Stream(channel)
    stream.send(request_headers(OVERLAID, eos=True))
    assert stream.recv(why="another connection").HasField("request_headers")
    assert stream.close().code == grpc.StatusCode.OK
    channel.close()
    sock.close()
