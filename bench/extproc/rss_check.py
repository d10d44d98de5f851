#!/usr/bin/env python3
"""Memory of an ext_proc server under open streams and after many streams.

  rss_check.py --pid PID --target HOST:PORT --open 1000 [--churn 1000000]

1. idle RSS (VmRSS from /proc/PID/status);
2. opens --open Process streams over a few HTTP/2 connections, each sending request_headers
   and reading the answer, and holds them all open; RSS while they are open;
3. closes them (client cancel, as Envoy does), then drives --churn header-only streams with
   h2load (the shared bench fixture) and reads RSS again.
Prints one line per measurement. Only 127.0.0.1 targets.
"""
import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024


def headers_request(i):
    hm = base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=":authority", raw_value=b"app.example.com"),
        base_pb2.HeaderValue(key=":path", raw_value=f"/page/{i}".encode()),
        base_pb2.HeaderValue(key=":method", raw_value=b"GET"),
    ])
    return ep.ProcessingRequest(request_headers=ep.HttpHeaders(headers=hm, end_of_stream=False))


async def hold(target, n, pid, connections):
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1), ("grpc.channel_id", i)]) for i in range(connections)]
    stubs = [ep_grpc.ExternalProcessorStub(c) for c in channels]
    calls = []

    async def one(i):
        call = stubs[i % connections].Process()
        await call.write(headers_request(i))
        answer = await call.read()
        assert answer.HasField("request_headers"), answer
        calls.append(call)

    await asyncio.gather(*(one(i) for i in range(n)))
    open_rss = rss_mb(pid)
    for call in calls:
        call.cancel()
    for c in channels:
        await c.close()
    return open_rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--open", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--churn", type=int, default=1_000_000)
    ap.add_argument("--body", default=os.path.join(os.environ.get("BENCH_WORK", "/tmp/overlayd-bench"), "bodies/headers.grpc"))
    args = ap.parse_args()
    host = args.target.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("only 127.0.0.1 targets")
    idle = rss_mb(args.pid)
    print(f"rss idle_mb={idle:.1f}")
    open_rss = asyncio.run(hold(args.target, args.open, args.pid, args.connections))
    print(f"rss open_streams={args.open} mb={open_rss:.1f}")
    if args.churn:
        h2load = shutil.which("h2load")
        if not h2load:
            sys.exit("h2load missing (Debian nghttp2-client)")
        out = subprocess.run([h2load, "-n", str(args.churn), "-c", "8", "-m", "16", "-t", "1", "-d", args.body,
                              "-H", "content-type: application/grpc", "-H", "te: trailers",
                              f"http://{args.target}/envoy.service.ext_proc.v3.ExternalProcessor/Process"],
                             capture_output=True, text=True)
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out.stdout)
        after = rss_mb(args.pid)
        print(f"rss after_streams={done.group(2) if done else '?'} mb={after:.1f} delta_vs_idle_mb={after - idle:.1f}")


if __name__ == "__main__":
    main()
