#!/usr/bin/env python3
"""1,000 simulated sidecars against one `overlayd control-plane` (issue 15, "Scale").

Each simulated sidecar is one keep-alive HTTP/1.1 connection (asyncio, no dependencies) that
long-polls `GET /v1/desired-state?wait=30` with its ETag and POSTs a report to `/v1/reports`
every 10 s (spread over the first interval). Meanwhile the operator changes the weights every
15 s; for each change the script measures how long until all sidecars hold the new version.

Prints, for the control plane process: CPU seconds per second and peak RSS (from /proc), p50/p99
of `/v1/reports` and of an unheld `/v1/desired-state` (a sidecar's first fetch, and a second
probe client), and the propagation time of every change (p50/max over changes). A benchmark, not
a test: nothing is asserted beyond the answers being right.

    python3 bench/controlplane/scale.py [--sidecars 1000] [--seconds 60] [--bin PATH] [--pin]

--pin: the control plane on CPU 0 (taskset) and this client on CPU 1, so the client's own work
does not queue behind the server's (nor the server's behind the client's).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-operator-token-0123456789"
REPORT_TOKEN = "bench-report-token-0123456789ab"
SEED = (ROOT / "Sources/OverlayCore/Config/EmbeddedDemo.swift").read_text()
SEED = SEED[SEED.index('"""') + 3:]
SEED = "\n".join(line[8:] for line in SEED[:SEED.index('"""')].splitlines())


async def request(reader, writer, method: str, path: str, headers: dict[str, str], body: bytes = b""):
    head = f"{method} {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    response_headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        response_headers[name.strip().lower()] = value.strip()
    length = int(response_headers.get("content-length", "0"))
    payload = await reader.readexactly(length) if length else b""
    return status, response_headers, payload


class Stats:
    def __init__(self):
        self.reports: list[float] = []
        self.fetches: list[float] = []
        self.versions: dict[int, str] = {}
        self.seen: dict[str, dict[int, float]] = {}
        self.errors = 0


async def sidecar(index: int, host: str, port: int, stats: Stats, stop: asyncio.Event):
    reader, writer = await asyncio.open_connection(host, port)
    etag = None
    instance = f"bench-{index}"
    next_report = time.monotonic() + (index % 1000) / 100.0
    try:
        while not stop.is_set():
            headers = {"if-none-match": etag} if etag else {}
            path = "/v1/desired-state?wait=30" if etag else "/v1/desired-state"
            started = time.monotonic()
            status, answer, _ = await request(reader, writer, "GET", path, headers)
            if not etag:
                stats.fetches.append(time.monotonic() - started)
            if status == 200:
                etag = answer["etag"]
                stats.seen.setdefault(etag, {})[index] = time.monotonic()
            elif status != 304:
                stats.errors += 1
                await asyncio.sleep(1)
            if time.monotonic() >= next_report:
                next_report += 10
                body = json.dumps({"instance": instance, "host": instance, "version": (etag or "").strip('"'),
                                   "intervalSeconds": 10,
                                   "decisions": [{"overlay": "demo-canary", "model": "mock-fast", "count": 8},
                                                 {"overlay": "demo-canary", "model": "mock-smart", "count": 2}],
                                   "modelCalls": [{"model": "mock-fast", "ok": 8, "error": 0, "breaker": "closed",
                                                   "latencyBuckets": [{"le": 0.025, "count": 8}, {"le": "+Inf", "count": 8}]}]
                                   }).encode()
                started = time.monotonic()
                status, _, _ = await request(reader, writer, "POST", "/v1/reports",
                                             {"authorization": f"Bearer {REPORT_TOKEN}",
                                              "content-type": "application/json"}, body)
                stats.reports.append(time.monotonic() - started)
                if status != 204:
                    stats.errors += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        stats.errors += 1
    finally:
        writer.close()


def proc_sample(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) * 1024
    return cpu, rss


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sidecars", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--bin", default=os.environ.get("OVERLAYD_BIN", str(ROOT / ".build/release/overlayd")))
    parser.add_argument("--pin", action="store_true", help="control plane on CPU 0, this client on CPU 1")
    args = parser.parse_args()
    pin = ["taskset", "-c", "0"] if args.pin else []
    if args.pin:
        os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="overlayd-cp-bench-"))
    (work / "operator.token").write_text(TOKEN + "\n")
    (work / "report.token").write_text(REPORT_TOKEN + "\n")
    (work / "seed.yaml").write_text(SEED)
    proc = subprocess.Popen(
        [*pin, args.bin, "control-plane", "--listen", "127.0.0.1:0", "--data", str(work / "data"), "--seed",
         str(work / "seed.yaml"), "--token-file", str(work / "operator.token"), "--report-token-file",
         str(work / "report.token"), "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    # --log-level warning hides the notice line; ask the OS which port it took.
    address = None
    for _ in range(300):
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        match = re.search(rf"127\.0\.0\.1:(\d+)\s.*pid={proc.pid},", out)
        if match:
            address = ("127.0.0.1", int(match.group(1)))
            break
        await asyncio.sleep(0.1)
    assert address, "the control plane did not listen"
    stats = Stats()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sidecar(i, *address, stats, stop)) for i in range(args.sidecars)]
    cpu0, _ = proc_sample(proc.pid)
    t0 = time.monotonic()
    peak_rss = 0
    changes: list[tuple[str, float]] = []
    reader, writer = await asyncio.open_connection(*address)
    fast = 80
    while time.monotonic() - t0 < args.seconds:
        await asyncio.sleep(1)
        _, rss = proc_sample(proc.pid)
        peak_rss = max(peak_rss, rss)
        if int(time.monotonic() - t0) % 15 == 14:
            fast = 50 if fast == 80 else 80
            body = json.dumps({"weights": {"mock-fast": fast, "mock-smart": 100 - fast}}).encode()
            started = time.monotonic()
            status, answer, payload = await request(reader, writer, "PUT", "/v1/overlays/demo-canary/weights",
                                                    {"authorization": f"Bearer {TOKEN}",
                                                     "content-type": "application/json"}, body)
            assert status == 200, payload
            changes.append((answer["etag"], started))
    cpu1, _ = proc_sample(proc.pid)
    elapsed = time.monotonic() - t0
    stop.set()
    proc.terminate()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    proc.wait(15)
    propagation = []
    for etag, started in changes:
        seen = stats.seen.get(etag, {})
        if len(seen) == args.sidecars:
            propagation.append(max(seen.values()) - started)
        else:
            print(f"change {etag}: only {len(seen)} of {args.sidecars} sidecars got it", file=sys.stderr)
    print(f"sidecars: {args.sidecars}, {elapsed:.0f} s, errors: {stats.errors}")
    print(f"control plane CPU: {(cpu1 - cpu0) / elapsed * 100:.1f} % of one core; peak RSS {peak_rss / 2**20:.1f} MiB")
    print(f"/v1/reports: {len(stats.reports)} posts, p50 {pct(stats.reports, 0.5):.2f} ms, p99 {pct(stats.reports, 0.99):.2f} ms")
    print(f"/v1/desired-state (unheld first fetch): p50 {pct(stats.fetches, 0.5):.2f} ms, p99 {pct(stats.fetches, 0.99):.2f} ms")
    if propagation:
        print(f"change reaches all {args.sidecars}: p50 {statistics.median(propagation) * 1000:.0f} ms, "
              f"max {max(propagation) * 1000:.0f} ms over {len(propagation)} changes")


if __name__ == "__main__":
    asyncio.run(main())
