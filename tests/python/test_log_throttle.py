"""A fault that repeats on every exchange is logged a few times, not once per exchange.

A misconfigured Envoy (or a model that is down, or an app that refuses connections) produces the
same problem on every request. overlayd writes each such line at most 5 times per 10 s (per
message and kind) and counts every occurrence in its metrics, so the log stays readable and
bounded while the metrics stay exact.
"""

from __future__ import annotations

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc_helpers import CHANNEL_OPTIONS, Stream
from overlayd_proc import scrape

PROTOCOL_ERROR_LINE = "ext_proc stream ended by a protocol error"
STREAMS = 30


def test_a_protocol_error_on_every_stream_is_logged_five_times_and_counted_every_time(start_overlayd):
    proc = start_overlayd()
    before = scrape(proc.admin_addr)
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    try:
        for _ in range(STREAMS):
            # An empty ProcessingRequest is a protocol error (no phase): the stream ends with
            # status OK (and a grpc-message naming the problem, which grpcio does not show for
            # OK), so Envoy continues unprocessed.
            bad = Stream(channel).send(ep.ProcessingRequest()).finish()
            assert bad.code == grpc.StatusCode.OK, bad
    finally:
        channel.close()
    after = scrape(proc.admin_addr)
    counted = sum(v for _, v in after.series("overlayd_extproc_errors_total")) \
        - sum(v for _, v in before.series("overlayd_extproc_errors_total"))
    assert counted == STREAMS, f"the metrics counted {counted} protocol errors, expected {STREAMS}"

    # Stopping the process drains its stderr to the end: every line it wrote is in output().
    assert proc.stop() == 0, proc.describe()
    lines = [line for line in proc.output().splitlines() if PROTOCOL_ERROR_LINE in line]
    assert len(lines) == 5, f"{len(lines)} protocol-error lines for {STREAMS} streams:\n" + "\n".join(lines)
