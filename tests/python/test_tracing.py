"""Distributed tracing (issue 17) against a real OTLP receiver.

The receiver is an HTTP server on 127.0.0.1 that decodes what overlayd posts to ``/v1/traces``
(OTLP/HTTP, protobuf) with ``opentelemetry-proto``'s ``ExportTraceServiceRequest``. overlayd runs as
``serve`` (driven as Envoy would, with the host app's ``traceparent`` in request_headers) or as
``proxy`` (the client's ``traceparent`` on the request), with ``--otlp-endpoint`` and
``--trace-sample-ratio 1``. Spans are read after a graceful stop (SIGTERM): the stop flushes the
exporter, so no wait on the batch delay is needed.

Checked: the exchange span's parent is the incoming span and its trace id is kept; the span names
and their key attributes; the challenger's span of a Shadow overlay is a root with a link to the
exchange's span; an OpenAI-compatible backend receives a ``traceparent`` of the same trace; an
unsampled incoming flag, ratio 0 and no endpoint send nothing; a ratio between records that share
of new traces, each whole, and only those send a ``traceparent``; bad flag values are refused
with the flag and the value named.
"""
from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import subprocess
import threading

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from extproc_helpers import CHANNEL_OPTIONS, PM, Stream, protocol_config, request_headers, response_body, response_headers
from overlayd_proc import OverlaydProcess, overlayd_bin, poll_metric, running_proxy
from test_openai_backend import FakeOpenAI

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SHADOW_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SHADOW_PARENT_ID = "b7ad6b7169203331"
PAGE = b"<!doctype html><html><head><title>t</title></head><body>x</body></html>"
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


# xds-protos ships an old copy of these modules in the same package; scripts/test installs
# opentelemetry-proto's last (an old copy lacks `scope_spans`).
assert "scope_spans" in trace_pb2.ResourceSpans.DESCRIPTOR.fields_by_name, (
    f"{trace_pb2.__file__} is not opentelemetry-proto's (xds-protos' old copy?): rerun scripts/test --setup-only")


def serve(handler) -> http.server.ThreadingHTTPServer:
    """An HTTP server on a free port of 127.0.0.1, serving in a thread until shut down."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class OTLPReceiver:
    """POST /v1/traces: an ExportTraceServiceRequest; every span is kept with its resource's
    attributes. Answers 200 with an empty ExportTraceServiceResponse."""

    def __init__(self):
        self.spans: list[tuple[dict, trace_pb2.Span]] = []
        self.posts: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                with outer.lock:
                    outer.posts.append({"path": self.path, "content_type": self.headers.get("content-type")})
                    for resource_spans in request.resource_spans:
                        resource = attributes(resource_spans.resource.attributes)
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                outer.spans.append((resource, span))
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = serve(Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def named(self, name: str) -> list[trace_pb2.Span]:
        with self.lock:
            return [span for _, span in self.spans if span.name == name]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def attributes(kvs) -> dict:
    out = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


@pytest.fixture
def receiver():
    server = OTLPReceiver()
    yield server
    server.close()


@pytest.fixture
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


def config(base: str) -> str:
    return f"""\
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {{name: gpt}}
spec: {{provider: openai, baseURL: {base}, model: gpt-4o-mini}}
---
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {{name: challenger}}
spec: {{provider: mock}}
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {{name: crm}}
spec:
  hostApp: crm.example.com
  models: [{{name: gpt}}]
  userKey: {{header: x-user}}
  injection: {{latencyBudget: 5s}}
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {{name: shadowed}}
spec:
  hostApp: shadow.example.com
  strategy: Shadow
  models: [{{name: gpt}}, {{name: challenger}}]
  shadow: {{sampleRate: 1.0}}
  injection: {{latencyBudget: 5s}}
"""


def drive_page(proc: OverlaydProcess, host: str, extra) -> bytes:
    """One overlaid HTML exchange, as Envoy drives it; returns the rewritten body."""
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    try:
        stream = Stream(channel)
        stream.send(request_headers(host, path="/accounts?id=7", extra=extra,
                                    config=protocol_config(response_body_mode=PM.STREAMED)))
        stream.recv(why="request_headers")
        stream.send(response_headers(200, eos=False, content_type="text/html"))
        stream.recv(why="response_headers")
        stream.send(response_body(PAGE, eos=True))
        body = stream.recv(why="response_body").response_body.response.body_mutation.body
        stream.half_close()
        stream.finish()
        return body
    finally:
        channel.close()


def start_serve(tmp_path, fake, *args: str) -> OverlaydProcess:
    path = tmp_path / "overlays.yaml"
    path.write_text(config(fake.base))
    return OverlaydProcess(path, extra_args=args).start()


def test_extproc_spans_join_the_host_apps_trace(tmp_path, receiver, fake):
    proc = start_serve(tmp_path, fake, "--otlp-endpoint", receiver.endpoint, "--trace-sample-ratio", "1")
    try:
        body = drive_page(proc, "crm.example.com", [
            ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"), ("tracestate", "vendor=abc"),
            ("x-request-id", "req-42"), ("x-user", "carol")])
        assert b"From the fake" in body
        drive_page(proc, "shadow.example.com", [("traceparent", f"00-{SHADOW_TRACE_ID}-{SHADOW_PARENT_ID}-01")])
        # The challenger runs in the background; a stop would cancel it, so wait until it is done.
        poll_metric(proc.admin_addr, "overlayd_shadow_jobs_total", lambda v: v == 1, result="done")
    finally:
        assert proc.stop() == 0, proc.describe()

    assert receiver.posts and all(p["path"] == "/v1/traces" for p in receiver.posts), receiver.posts
    assert all(p["content_type"] == "application/x-protobuf" for p in receiver.posts), receiver.posts
    resource = receiver.spans[0][0]
    assert resource["service.name"] == "overlayd"
    assert resource["service.version"] and resource["service.instance.id"]

    exchanges = {span.trace_id.hex(): span for span in receiver.named("overlayd.exchange")}
    assert set(exchanges) == {TRACE_ID, SHADOW_TRACE_ID}, exchanges.keys()
    exchange = exchanges[TRACE_ID]
    assert exchange.parent_span_id.hex() == PARENT_ID
    assert exchange.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert exchange.trace_state == "vendor=abc"
    attrs = attributes(exchange.attributes)
    assert attrs["overlayd.frontend"] == "extproc"
    assert attrs["overlayd.request_id"] == "req-42"
    assert attrs["overlayd.decision"] == "overlay" and attrs["overlayd.overlay"] == "crm"
    assert attrs["http.request.method"] == "GET" and attrs["url.path"] == "/accounts"
    assert attrs["server.address"] == "crm.example.com"

    def children(parent, name):
        return [s for s in receiver.named(name)
                if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id]

    (decision,) = children(exchange, "overlayd.decision")
    d = attributes(decision.attributes)
    assert d["overlayd.overlay"] == "crm" and d["overlayd.model"] == "gpt"
    assert d["overlayd.sticky"] is True and d["overlayd.shadow.sampled"] is False

    (model_call,) = children(exchange, "overlayd.model_call")
    m = attributes(model_call.attributes)
    assert m["overlayd.model"] == "gpt" and m["overlayd.model.provider"] == "openai"
    assert m["overlayd.model.status"] == "ok" and m["overlayd.model.attempts"] == 1
    assert m["overlayd.model.retries"] == 0 and m["overlayd.model.breaker"] == "closed"
    assert model_call.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    (attempt,) = children(model_call, "overlayd.model_attempt")
    a = attributes(attempt.attributes)
    assert a["overlayd.model.attempt"] == 1 and a["http.response.status_code"] == 200

    (injection,) = children(exchange, "overlayd.injection")
    i = attributes(injection.attributes)
    assert i["overlayd.injection.result"] == "injected"
    assert i["overlayd.result.status"] == "ready"
    assert i["overlayd.injection.bytes"] == len(PAGE)
    assert i["overlayd.injection.wait_ms"] >= 0

    # The backend got the model attempt's context: the host app's trace, the attempt's span.
    traceparents = [r["traceparent"] for r in fake.requests]
    sent = [TRACEPARENT_RE.match(tp or "") for tp in traceparents]
    assert all(sent), traceparents
    ours = [m for m in sent if m.group(1) == TRACE_ID]
    assert len(ours) == 1 and ours[0].group(2) == attempt.span_id.hex() and ours[0].group(3) == "01"

    # Shadow: the decision says sampled, and the challenger's span is a root of its own trace,
    # linked to the exchange's span (not its child).
    shadow = exchanges[SHADOW_TRACE_ID]
    (shadow_decision,) = children(shadow, "overlayd.decision")
    sd = attributes(shadow_decision.attributes)
    assert sd["overlayd.shadow.sampled"] is True and sd["overlayd.challenger"] == "challenger"
    assert sd["overlayd.sticky"] is False
    (challenger,) = receiver.named("overlayd.challenger_call")
    assert challenger.parent_span_id == b"" and challenger.trace_id != shadow.trace_id
    (link,) = challenger.links
    assert link.trace_id == shadow.trace_id and link.span_id == shadow.span_id
    c = attributes(challenger.attributes)
    assert c["overlayd.overlay"] == "shadowed" and c["overlayd.model"] == "challenger"
    (challenger_call,) = children(challenger, "overlayd.model_call")
    assert attributes(challenger_call.attributes)["overlayd.model.provider"] == "mock"


def test_proxy_spans_join_the_clients_trace(tmp_path, receiver, fake):
    class App(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

    app = serve(App)
    path = tmp_path / "overlays.yaml"
    path.write_text(config(fake.base))
    try:
        with running_proxy(f"http://127.0.0.1:{app.server_address[1]}", path,
                           extra_args=("--otlp-endpoint", receiver.endpoint + "/v1/traces",
                                       "--trace-sample-ratio", "1")) as port:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/accounts", headers={
                "host": "crm.example.com", "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                "x-request-id": "req-7", "x-user": "dave"})
            reply = conn.getresponse()
            page = reply.read()
            conn.close()
            assert reply.status == 200 and b"From the fake" in page
    finally:
        app.shutdown()
        app.server_close()

    (exchange,) = receiver.named("overlayd.exchange")
    assert exchange.trace_id.hex() == TRACE_ID and exchange.parent_span_id.hex() == PARENT_ID
    attrs = attributes(exchange.attributes)
    assert attrs["overlayd.frontend"] == "proxy" and attrs["overlayd.request_id"] == "req-7"
    assert attrs["http.response.status_code"] == 200
    names = {s.name for s in receiver.named("overlayd.decision") + receiver.named("overlayd.model_call")
             + receiver.named("overlayd.injection") if s.parent_span_id == exchange.span_id}
    assert names == {"overlayd.decision", "overlayd.model_call", "overlayd.injection"}
    (tp,) = [r["traceparent"] for r in fake.requests]
    assert TRACEPARENT_RE.match(tp).group(1) == TRACE_ID


@pytest.mark.parametrize("args, traceparent", [
    (("--trace-sample-ratio", "0"), None),  # a new trace at ratio 0 is not recorded
    (("--trace-sample-ratio", "1"), f"00-{TRACE_ID}-{PARENT_ID}-00"),  # the app's "not sampled" holds
], ids=["ratio-0", "unsampled-parent"])
def test_unsampled_exchanges_send_nothing(tmp_path, receiver, fake, args, traceparent):
    proc = start_serve(tmp_path, fake, "--otlp-endpoint", receiver.endpoint, *args)
    try:
        extra = [("traceparent", traceparent)] if traceparent else []
        assert b"From the fake" in drive_page(proc, "crm.example.com", extra)
    finally:
        assert proc.stop() == 0, proc.describe()
    assert receiver.spans == []
    (sent,) = [r["traceparent"] for r in fake.requests]
    if traceparent:  # the unsampled context still travels on
        assert TRACEPARENT_RE.match(sent).group(1) == TRACE_ID and sent.endswith("-00")


def test_a_ratio_records_that_share_of_new_traces_each_whole(tmp_path, receiver, fake):
    """overlayd picks new traces itself, before any span is opened: at 0.5, about half of 200
    exchanges without a traceparent are recorded (binomial: 100 ± 7; the bounds are ± 5.6 σ), each
    with its children, and exactly the picked ones send a traceparent (sampled) to the backend."""
    proc = start_serve(tmp_path, fake, "--otlp-endpoint", receiver.endpoint, "--trace-sample-ratio", "0.5")
    try:
        for _ in range(200):
            assert b"From the fake" in drive_page(proc, "crm.example.com", [])
    finally:
        assert proc.stop() == 0, proc.describe()
    exchanges = receiver.named("overlayd.exchange")
    assert 60 <= len(exchanges) <= 140, len(exchanges)
    recorded = {span.trace_id.hex() for span in exchanges}
    assert all(not span.parent_span_id for span in exchanges)
    decisions = {span.trace_id.hex() for span in receiver.named("overlayd.decision")}
    injections = {span.trace_id.hex() for span in receiver.named("overlayd.injection")}
    assert decisions == recorded and injections == recorded
    sent = [TRACEPARENT_RE.match(r["traceparent"]) for r in fake.requests if r["traceparent"]]
    assert len(fake.requests) == 200 and all(sent)
    assert {m.group(1) for m in sent} == recorded and all(m.group(3) == "01" for m in sent)


def test_without_an_endpoint_nothing_is_traced(tmp_path, fake):
    proc = start_serve(tmp_path, fake)
    try:
        drive_page(proc, "crm.example.com", [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01")])
    finally:
        assert proc.stop() == 0, proc.describe()
    assert [r["traceparent"] for r in fake.requests] == [None]  # no tracer: nothing is propagated to the backend
    assert "tracing on" not in proc.output()


@pytest.mark.parametrize("command", [["serve"], ["proxy", "--upstream", "http://127.0.0.1:9"]], ids=["serve", "proxy"])
@pytest.mark.parametrize("flags, message", [
    (["--otlp-endpoint", "ftp://127.0.0.1:4318"],
     "--otlp-endpoint must be an http:// or https:// URL with a host (an OTLP/HTTP receiver, e.g. "
     "http://127.0.0.1:4318), got ftp://127.0.0.1:4318"),
    (["--otlp-endpoint", "http://"], "--otlp-endpoint must be an http:// or https:// URL with a host"),
    (["--trace-sample-ratio", "1.5"], "--trace-sample-ratio must be a number in 0...1, got 1.5"),
    (["--trace-sample-ratio=-0.1"], "--trace-sample-ratio must be a number in 0...1, got -0.1"),
    (["--trace-sample-ratio", "nan"], "--trace-sample-ratio must be a number in 0...1, got nan"),
], ids=["scheme", "no-host", "above-1", "negative", "nan"])
def test_bad_tracing_flags_are_refused_with_flag_and_value(command, flags, message):
    result = subprocess.run([str(overlayd_bin()), *command, *flags, "--admin", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=20, env={**os.environ})
    assert result.returncode != 0, result.stderr
    assert message in result.stderr, result.stderr
    assert "listening" not in result.stderr, result.stderr
