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
from overlayd_proc import http_get

OVERLAID = "crm.example.com"


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not within {timeout}s")


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
    _wait(lambda: _readyz(proc) == 503, 10, "/readyz 503 while draining")
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    _wait(lambda: _connect_refused(proc.grpc_target), 10, "new connections refused")
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
