"""Connections that come and go leave nothing behind, on every listener of `overlayd serve`.

The proxy kept the whole pipeline of every client connection it closed (found with a heap profile
after the fault soak; `test_proxy_hostile.py::test_closed_connections_leave_no_memory_behind`).
The same check here for the ext_proc listener (a Process exchange or a health check per connection)
and the admin port: after a warm-up of 1,000 connections, 4,000 more leave RSS within 4 MiB
(about 3 KB a connection, the size of that leak, would be 12 MiB).
"""

from __future__ import annotations

import socket
import threading

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc_helpers import request_headers
from overlayd_proc import poll_metric
from raw_grpc import grpc_frame, raw_call

HEALTH = grpc_frame(b"")
PROCESS = grpc_frame(request_headers("crm.example.com", "/accounts", eos=True).SerializeToString())


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])


def churn(count: int, one) -> None:
    failures: list[str] = []

    def worker(k: int) -> None:
        for i in range(k, count, 4):
            try:
                one(i)
            except Exception as err:  # reported below, with the others
                failures.append(f"{i}: {err!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, f"{len(failures)} of {count} connections failed, first: {failures[:3]}"


def assert_flat(proc, one, what: str) -> None:
    churn(1000, one)  # warm-up: allocator arenas, caches, the result store
    before = rss_kib(proc.proc.pid)
    churn(4000, one)
    after = rss_kib(proc.proc.pid)
    assert after - before < 4096, f"{what}: RSS grew {after - before} KiB over 4,000 connections ({before} -> {after})"


def test_ext_proc_connections_leave_no_memory_behind(start_overlayd):
    proc = start_overlayd()

    def one(i: int) -> None:
        if i % 2:
            outcome = raw_call(proc.grpc_target, "/grpc.health.v1.Health/Check", [HEALTH])
        else:
            outcome = raw_call(proc.grpc_target, "/envoy.service.ext_proc.v3.ExternalProcessor/Process", [PROCESS])
            answers = [ep.ProcessingResponse.FromString(frame) for frame in outcome.messages]
            assert answers and answers[0].HasField("request_headers"), outcome
        assert outcome.grpc_status == 0, outcome

    assert_flat(proc, one, "ext_proc")


def test_admin_connections_leave_no_memory_behind(start_overlayd):
    proc = start_overlayd()
    host, port = proc.admin_addr.rsplit(":", 1)

    def one(i: int) -> None:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:200]

    assert_flat(proc, one, "admin")
    poll_metric(proc.admin_addr, "overlayd_admin_client_connections", lambda v: v <= 1)
