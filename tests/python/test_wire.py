"""Wire tests: the real overlayd binary driven as Envoy's ext_proc filter drives it.

"§" refers to docs/envoy-ext-proc.md (shared/docs). "Contract N" refers to the numbered points
of the overlayd wire contract these tests pin down:

  1 pass-through is one message        6 protocol errors end only the bad stream, status OK
  2 overlaid host: one answer/message  7 undecodable protobuf
  3 /__overlay/healthz                 8 empty stream
  4 observability mode                 9 client cancels mid-stream
  5 client half-close                 10 1,000 concurrent streams
 11 grpc.health.v1                    12 admin HTTP (/healthz, /metrics)
 13 unknown method                    14 every field of Envoy's message
 15 the helpers fail against a deliberately wrong server (meta-test)
"""

from __future__ import annotations

import asyncio
import re
from concurrent import futures
from typing import Callable

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from extproc_helpers import (
    BODY_PHASES, CHANNEL_OPTIONS, CONTINUE, END_TIMEOUT, PM, PROCESS_METHOD, Outcome, Stream, assert_answers_match,
    assert_overlaid_answers, chunks, describe, exchange, protocol_config,
    read_answers, request_body, request_headers, request_trailers, response_body,
    response_headers, response_trailers,
)
from overlayd_proc import OVERLAID_HOST, poll_metric, scrape, http_get
from raw_grpc import RawOutcome, grpc_frame, raw_call

OTHER_HOST = "other.example.com"
HEALTHZ_PATH = "/__overlay/healthz"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"

# Contract 1: what a pass-through answer's mode_override must be (request_header_mode DEFAULT).
PASS_THROUGH_MODE = PM(
    request_header_mode=PM.DEFAULT,
    response_header_mode=PM.SKIP,
    request_body_mode=PM.NONE,
    response_body_mode=PM.NONE,
    request_trailer_mode=PM.SKIP,
    response_trailer_mode=PM.SKIP,
)


def raw_process(server, frames: list[bytes], *, half_close: bool = False, **kwargs) -> RawOutcome:
    """Process call through the raw HTTP/2 client (sees grpc-message even with grpc-status 0)."""
    return raw_call(server.grpc_target, PROCESS_METHOD, frames, half_close=half_close, timeout=END_TIMEOUT, **kwargs)


def decode_answers(raw: RawOutcome) -> list[ep.ProcessingResponse]:
    return [ep.ProcessingResponse.FromString(m) for m in raw.messages]


def assert_good_exchange(channel_or_stub, authority: str = OVERLAID_HOST) -> None:
    """A normal overlaid request/response (used after failures: the server still works)."""
    outcome = exchange(channel_or_stub, [request_headers(authority, eos=True), response_headers(eos=True)])
    assert_overlaid_answers(outcome)


# =============================================================================== scenarios
# Each scenario is a list of messages in the order Envoy sends them (§1) for one HTTP
# request/response. They are run by test_overlaid_host_scenario against overlayd and by the
# meta-test (contract 15) against deliberately wrong servers.

STREAMED_BOTH = protocol_config(PM.STREAMED, PM.STREAMED)
DUPLEX_REQUEST = protocol_config(PM.FULL_DUPLEX_STREAMED, PM.NONE)
DUPLEX_BOTH = protocol_config(PM.FULL_DUPLEX_STREAMED, PM.FULL_DUPLEX_STREAMED)


def _bodies(builder, parts: list[bytes], last_eos: bool = True) -> list:
    return [builder(part, eos=(last_eos and i == len(parts) - 1)) for i, part in enumerate(parts)]


def scenario_headers_only(host: str = OVERLAID_HOST) -> list:
    return [request_headers(host, eos=True), response_headers(eos=True)]


def scenario_bodies_not_sent(host: str = OVERLAID_HOST) -> list:
    """Body mode NONE (§1.3): bodies exist (eos=false) but are never sent."""
    return [request_headers(host, "/upload", "POST", eos=False, config=protocol_config(PM.NONE, PM.NONE)),
            response_headers(eos=False)]


def scenario_streamed_request_body(host: str = OVERLAID_HOST) -> list:
    return [request_headers(host, "/upload", "POST", eos=False, config=protocol_config(PM.STREAMED, PM.NONE)),
            *_bodies(request_body, chunks(b"req", 4)),
            response_headers(eos=True)]


def scenario_streamed_both(host: str = OVERLAID_HOST) -> list:
    """STREAMED in both directions, 8 pipelined chunks each (§1.3)."""
    return [request_headers(host, "/upload", "PUT", eos=False, config=STREAMED_BOTH),
            *_bodies(request_body, chunks(b"req", 8, 1000)),
            response_headers(eos=False),
            *_bodies(response_body, chunks(b"resp", 8, 1000))]


def scenario_streamed_without_waiting(host: str = OVERLAID_HOST) -> list:
    """send_body_without_waiting_for_header_response (§1.6): headers answer still comes first."""
    return [request_headers(host, "/upload", "POST", eos=False,
                            config=protocol_config(PM.STREAMED, PM.STREAMED, True)),
            *_bodies(request_body, chunks(b"req", 3)),
            response_headers(eos=False),
            *_bodies(response_body, chunks(b"resp", 3))]


def scenario_buffered(host: str = OVERLAID_HOST) -> list:
    """BUFFERED: one body message per direction with the whole body (§1.3)."""
    return [request_headers(host, "/form", "POST", eos=False, config=protocol_config(PM.BUFFERED, PM.BUFFERED)),
            request_body(b"a=1&b=2", eos=True),
            response_headers(eos=False),
            response_body(b'{"ok": true}', eos=True)]


def scenario_buffered_large(host: str = OVERLAID_HOST) -> list:
    """A BUFFERED body at Envoy's default 1 MiB buffer limit, plus a bit (§14)."""
    big = chunks(b"big", 1, 1024 * 1024 + 4096)[0]
    return [request_headers(host, "/upload", "POST", eos=False, config=protocol_config(PM.BUFFERED, PM.NONE)),
            request_body(big, eos=True),
            response_headers(eos=True)]


def scenario_buffered_partial(host: str = OVERLAID_HOST) -> list:
    """BUFFERED_PARTIAL over the limit: one partial message (eos=false), rest unprocessed (§1.3)."""
    return [request_headers(host, "/upload", "POST", eos=False,
                            config=protocol_config(PM.BUFFERED_PARTIAL, PM.BUFFERED_PARTIAL)),
            request_body(chunks(b"part", 1, 5000)[0], eos=False),
            response_headers(eos=False),
            response_body(chunks(b"rpart", 1, 5000)[0], eos=False)]


def scenario_trailers(host: str = OVERLAID_HOST) -> list:
    """Trailers follow the last chunk, whose end_of_stream is then false (§1.3, §1.4)."""
    return [request_headers(host, "/grpc.Svc/Call", "POST", eos=False, config=STREAMED_BOTH),
            *_bodies(request_body, chunks(b"req", 2), last_eos=False),
            request_trailers(),
            response_headers(eos=False, content_type="application/grpc"),
            *_bodies(response_body, chunks(b"resp", 2), last_eos=False),
            response_trailers()]


def scenario_trailers_without_body_messages(host: str = OVERLAID_HOST) -> list:
    """Body mode NONE, trailer mode SEND: headers then trailers only (§1.4)."""
    return [request_headers(host, "/grpc.Svc/Call", "POST", eos=False, config=protocol_config(PM.NONE, PM.NONE)),
            request_trailers(),
            response_headers(eos=False, content_type="application/grpc"),
            response_trailers()]


def scenario_binary_header_value(host: str = OVERLAID_HOST) -> list:
    """Non-UTF-8 bytes in raw_value must be tolerated (§15)."""
    return [request_headers(host, eos=True, extra=[("x-binary", b"valid_prefix\xc3(valid_suffix"),
                                                   ("x-empty", b"")]),
            response_headers(eos=True, extra=[("set-cookie", b"a=\xff\xfe")])]


def scenario_duplex_request(host: str = OVERLAID_HOST) -> list:
    """FULL_DUPLEX_STREAMED request body: each chunk comes back as streamed_response (§1.3)."""
    return [request_headers(host, "/upload", "POST", eos=False, config=DUPLEX_REQUEST),
            *_bodies(request_body, chunks(b"dup", 3, 777)),
            response_headers(eos=True)]


def scenario_duplex_large_chunk(host: str = OVERLAID_HOST) -> list:
    """A 200 KiB chunk: may come back as several <=64 KiB streamed_responses (§14)."""
    return [request_headers(host, "/upload", "POST", eos=False, config=DUPLEX_REQUEST),
            request_body(chunks(b"huge", 1, 200 * 1024 + 17)[0], eos=False),
            request_body(b"tail", eos=True),
            response_headers(eos=True)]


def scenario_duplex_both_with_trailers(host: str = OVERLAID_HOST) -> list:
    """FULL_DUPLEX_STREAMED both ways, ended by trailers (trailer mode SEND, §1.3)."""
    return [request_headers(host, "/upload", "POST", eos=False, config=DUPLEX_BOTH),
            *_bodies(request_body, chunks(b"dreq", 2, 300), last_eos=False),
            request_trailers(),
            response_headers(eos=False),
            *_bodies(response_body, chunks(b"dresp", 2, 300), last_eos=False),
            response_trailers()]


def scenario_duplex_empty_last_chunk(host: str = OVERLAID_HOST) -> list:
    """An empty end_of_stream chunk is answered by an empty streamed_response with eos (§1.3)."""
    return [request_headers(host, "/upload", "POST", eos=False, config=DUPLEX_REQUEST),
            request_body(b"data", eos=False),
            request_body(b"", eos=True),
            response_headers(eos=True)]


SCENARIOS: dict[str, Callable[..., list]] = {
    "headers-only": scenario_headers_only,
    "bodies-not-sent": scenario_bodies_not_sent,
    "streamed-request-body": scenario_streamed_request_body,
    "streamed-both": scenario_streamed_both,
    "streamed-without-waiting": scenario_streamed_without_waiting,
    "buffered": scenario_buffered,
    "buffered-1MiB": scenario_buffered_large,
    "buffered-partial": scenario_buffered_partial,
    "trailers": scenario_trailers,
    "trailers-without-body-messages": scenario_trailers_without_body_messages,
    "binary-header-value": scenario_binary_header_value,
    "duplex-request": scenario_duplex_request,
    "duplex-200KiB-chunk": scenario_duplex_large_chunk,
    "duplex-both-with-trailers": scenario_duplex_both_with_trailers,
    "duplex-empty-last-chunk": scenario_duplex_empty_last_chunk,
}


def run_scenario(channel_or_stub, name: str, host: str = OVERLAID_HOST, *,
                 recv_timeout: float | None = None) -> Outcome:
    """Exchange the scenario's messages and assert the overlaid-host contract on the answers."""
    kwargs = {} if recv_timeout is None else {"recv_timeout": recv_timeout}
    outcome = exchange(channel_or_stub, SCENARIOS[name](host), **kwargs)
    assert_overlaid_answers(outcome)
    return outcome


# =============================================================================== contract 1


@pytest.mark.parametrize("message", [
    request_headers(OTHER_HOST, eos=True),
    request_headers(OTHER_HOST + ":8443", "/account", eos=True),
    request_headers("OTHER.example.com", "/", "POST", eos=False, config=STREAMED_BOTH),
    request_headers(OTHER_HOST, HEALTHZ_PATH, eos=True),  # contract 3: own endpoint only on overlaid hosts
    request_headers("crm.example.com.attacker.test", eos=True),
    request_headers("xcrm.example.com", eos=True),
    request_headers("crm.example.org", eos=False, config=DUPLEX_REQUEST),
], ids=["plain", "with-port", "post-streamed", "healthz-path", "suffix-lookalike", "prefix-lookalike",
        "other-tld"])
def test_pass_through_is_one_message(stub, message):
    """Contract 1: a host that is not overlaid gets exactly one answer, CONTINUE, whose
    mode_override switches every later phase off (§3: honoured on a headers response with
    allow_mode_override; body modes are taken literally, so NONE must be explicit)."""
    outcome = exchange(stub, [message])
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert len(outcome.responses) == 1, f"expected exactly one response; {outcome}"
    (resp,) = outcome.responses
    assert resp.WhichOneof("response") == "request_headers", outcome
    assert resp.request_headers.response.status == CONTINUE, outcome
    assert resp.HasField("mode_override"), f"pass-through answer lacks mode_override; {outcome}"
    assert resp.mode_override == PASS_THROUGH_MODE, f"mode_override is\n{resp.mode_override}"


# =============================================================================== contract 2


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_overlaid_host_scenario(stub, name):
    """Contract 2: on an overlaid host every message gets one answer of its own phase, CONTINUE,
    no mode_override; non-duplex body answers carry no body_mutation; FULL_DUPLEX_STREAMED
    chunks come back as streamed_response (§1.3, §2). Messages are pipelined and the answers are
    read before the client half-closes (§15); then the call ends OK (contract 5)."""
    run_scenario(stub, name)


@pytest.mark.parametrize("authority", ["crm.example.com", "crm.example.com:8443", "CRM.Example.COM",
                                       "Crm.Example.Com:8443"])
@pytest.mark.parametrize("name", ["headers-only", "streamed-both"])
def test_overlaid_host_matching(stub, authority, name):
    """Contract 2: the host matches with a port and case-insensitively (no mode_override)."""
    run_scenario(stub, name, authority)


def test_streamed_chunks_are_answered_without_waiting_for_more(stub):
    """Contract 2, §1.3: STREAMED chunks are pipelined; after N chunks the N answers arrive in
    order while the stream stays open (Envoy sends nothing more until it has them)."""
    stream = Stream(stub)
    try:
        first = request_headers(OVERLAID_HOST, "/upload", "POST", eos=False, config=STREAMED_BOTH)
        stream.send(first)
        assert stream.recv(why="request_headers").WhichOneof("response") == "request_headers"
        parts = chunks(b"pipe", 16, 2000)
        stream.send(*_bodies(request_body, parts[:8], last_eos=False))
        batch1 = [stream.recv(why=f"request_body chunk {i}") for i in range(8)]
        stream.send(*_bodies(request_body, parts[8:]))
        batch2 = [stream.recv(why=f"request_body chunk {8 + i}") for i in range(8)]
        stream.send(response_headers(eos=True))
        last = stream.recv(why="response_headers")
        outcome = stream.close()
    except BaseException:
        stream.cancel()
        raise
    assert outcome.responses[1:] == [*batch1, *batch2, last], outcome  # nothing arrived after the half-close
    assert_overlaid_answers(outcome)


def test_streams_are_independent(stub):
    """Per-stream state: interleaved streams on one channel (one overlaid, one not) each get
    their own answers (§1: one gRPC stream per HTTP request)."""
    a, b = Stream(stub), Stream(stub)
    try:
        a.send(request_headers(OVERLAID_HOST, eos=False, config=STREAMED_BOTH))
        b.send(request_headers(OTHER_HOST, eos=False, config=STREAMED_BOTH))
        ra = a.recv(why="overlaid request_headers")
        rb = b.recv(why="pass-through request_headers")
        a.send(request_body(b"x" * 10, eos=True))
        ra2 = a.recv(why="request_body")
        a.send(response_headers(eos=True))
        ra3 = a.recv(why="response_headers")
        out_b, out_a = b.close(), a.close()
    except BaseException:
        a.cancel()
        b.cancel()
        raise
    assert not ra.HasField("mode_override"), describe(ra)
    assert rb.mode_override == PASS_THROUGH_MODE, describe(rb)
    assert [r.WhichOneof("response") for r in (ra2, ra3)] == ["request_body", "response_headers"]
    assert out_a.code == out_b.code == grpc.StatusCode.OK, (out_a, out_b)
    assert len(out_a.responses) == 3 and len(out_b.responses) == 1, (out_a, out_b)


# =============================================================================== contract 3


@pytest.mark.parametrize("authority", ["crm.example.com", "CRM.example.com:8443"])
def test_own_healthz_endpoint(stub, authority):
    """Contract 3 (§4): /__overlay/healthz on an overlaid host is answered by overlayd itself
    with immediate_response 200 "ok\\n"; nothing else is answered on that stream."""
    outcome = exchange(stub, [request_headers(authority, HEALTHZ_PATH, eos=True)])
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert len(outcome.responses) == 1, outcome
    (resp,) = outcome.responses
    assert resp.WhichOneof("response") == "immediate_response", outcome
    assert resp.immediate_response.status.code == 200  # envoy.type.v3.StatusCode.OK
    assert resp.immediate_response.body == b"ok\n"


# =============================================================================== contract 4


@pytest.mark.parametrize("host,path", [(OVERLAID_HOST, "/"), (OTHER_HOST, "/"), (OVERLAID_HOST, HEALTHZ_PATH)],
                         ids=["overlaid", "other-host", "healthz-path"])
def test_observability_mode_gets_no_answers(stub, host, path):
    """Contract 4 (§1.5): with observability_mode every message goes unanswered; after the
    client half-closes the call ends OK with zero responses. No protocol_config (§1)."""
    messages = [request_headers(host, path, "POST", eos=False, observability=True),
                *[request_body(c, eos=i == 2, observability=True) for i, c in enumerate(chunks(b"o", 3))],
                response_headers(eos=False, observability=True),
                *[response_body(c, eos=i == 2, observability=True) for i, c in enumerate(chunks(b"p", 3))]]
    outcome = exchange(stub, messages)
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert outcome.responses == [], outcome


# =============================================================================== contract 5


def test_half_close_right_after_sending_still_gets_answers(stub):
    """Contract 5: messages followed at once by the client's half-close are still answered,
    then the call ends OK."""
    stream = Stream(stub)
    messages = scenario_streamed_request_body()
    stream.send(*messages).half_close()
    outcome = stream.finish()
    assert_overlaid_answers(outcome)


def test_half_close_in_the_middle_of_a_body_ends_ok(stub):
    """Contract 5: a half-close before the HTTP exchange is complete (no eos yet) ends the call
    OK once everything sent has been answered (§15: the client may go away at any point)."""
    stream = Stream(stub)
    messages = [request_headers(OVERLAID_HOST, "/upload", "POST", eos=False, config=STREAMED_BOTH),
                request_body(b"first", eos=False)]
    stream.send(*messages)
    read_answers(stream, messages)
    outcome = stream.close()
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert_answers_match(outcome.requests, outcome.responses)


# =============================================================================== contract 6

# name: (good messages before, the bad message, words its details must contain (regex))
PROTOCOL_ERRORS = {
    "no-oneof-first-message": (
        [], ep.ProcessingRequest(), r"empty|no .*(set|request|phase)|missing|oneof|unset|none|not set"),
    "no-oneof-after-headers": (
        [request_headers(OVERLAID_HOST, eos=False, config=STREAMED_BOTH)], ep.ProcessingRequest(),
        r"empty|no .*(set|request|phase)|missing|oneof|unset|none|not set"),
    "duplicate-request_headers": (
        [request_headers(OVERLAID_HOST, eos=True)], request_headers(OVERLAID_HOST, eos=True),
        r"request[_ ]?headers"),
    "duplicate-request_headers-pass-through-host": (
        [request_headers(OTHER_HOST, eos=True)], request_headers(OTHER_HOST, eos=True),
        r"request[_ ]?headers"),
    "request_body-after-headers-end_of_stream": (
        [request_headers(OVERLAID_HOST, eos=True, config=STREAMED_BOTH)], request_body(b"late", eos=True),
        r"request[_ ]?body|end[_ ]?of[_ ]?stream|eos"),
    "request_body-after-last-chunk": (
        [request_headers(OVERLAID_HOST, eos=False, config=STREAMED_BOTH), request_body(b"last", eos=True)],
        request_body(b"more", eos=True), r"request[_ ]?body|end[_ ]?of[_ ]?stream|eos"),
    "request_headers-after-request_body": (
        [request_headers(OVERLAID_HOST, eos=False, config=STREAMED_BOTH), request_body(b"chunk", eos=False)],
        request_headers(OVERLAID_HOST, eos=False), r"request[_ ]?headers"),
    "protocol_config-on-second-message": (
        [request_headers(OVERLAID_HOST, eos=True, config=STREAMED_BOTH)],
        response_headers(eos=True, config=STREAMED_BOTH), r"protocol[_ ]?config"),
    "duplicate-response_headers": (
        [request_headers(OVERLAID_HOST, eos=True), response_headers(eos=False)], response_headers(eos=False),
        r"response[_ ]?headers"),
    "response_body-after-headers-end_of_stream": (
        [request_headers(OVERLAID_HOST, eos=True, config=STREAMED_BOTH), response_headers(eos=True)],
        response_body(b"late", eos=True), r"response[_ ]?body|end[_ ]?of[_ ]?stream|eos"),
    "response_headers-after-response_body": (
        [request_headers(OVERLAID_HOST, eos=True, config=STREAMED_BOTH), response_headers(eos=False),
         response_body(b"chunk", eos=False)],
        response_headers(eos=False), r"response[_ ]?headers"),
}


def _expect_ok_end_with_details(grpcio: Outcome, raw: RawOutcome, answered: list, words: str | None) -> None:
    """Contract 6/7 end of a bad stream, seen by grpcio (status, answers) and by the raw HTTP/2
    client (grpc-status 0 in trailers + grpc-message, which grpcio hides when the status is OK)."""
    seen = f"\n  grpcio: {grpcio}\n  raw HTTP/2: {raw}, headers {raw.headers}, trailers {raw.trailers}"
    assert grpcio.code == grpc.StatusCode.OK, f"call did not end with status OK{seen}"
    assert raw.grpc_status == 0, f"no grpc-status 0 in the server's trailers{seen}"
    raw_answers = decode_answers(raw)
    assert_answers_match(answered, grpcio.responses)  # good messages answered, the bad one not
    assert_answers_match(answered, raw_answers)
    assert raw.grpc_message, f"grpc-status 0 but no grpc-message naming the problem{seen}"
    if words is not None:
        assert re.search(words, raw.grpc_message, re.I), \
            f"grpc-message {raw.grpc_message!r} does not name the problem (expected /{words}/i)"


@pytest.mark.parametrize("case", sorted(PROTOCOL_ERRORS))
def test_protocol_error_ends_only_that_stream(channel, overlayd, case):
    """Contract 6 (§13: an OK close means Envoy continues unprocessed = fail open): the good
    messages before the bad one are answered (all pipelined), the bad one is not, the server
    ends the call by itself (no half-close, as Envoy) with status OK and a details text naming
    the problem; a new stream on the same channel then works.

    Checked through grpcio (status, answers, the channel stays usable) and through the raw
    HTTP/2 client, because grpcio drops grpc-message when grpc-status is 0."""
    good, bad, words = PROTOCOL_ERRORS[case]
    stream = Stream(channel)
    stream.send(*good, bad)
    grpcio = stream.finish()
    assert_good_exchange(channel)
    raw = raw_process(overlayd, [grpc_frame(m.SerializeToString()) for m in (*good, bad)])
    assert_good_exchange(channel)
    _expect_ok_end_with_details(grpcio, raw, good, words)


# =============================================================================== contract 7

GOOD_HEADERS_BYTES = request_headers(OVERLAID_HOST, eos=True).SerializeToString()
UNDECODABLE = {
    "ff-ff-ff": b"\xff\xff\xff",  # truncated varint tag
    "truncated-length-delimited": b"\x12\x05ab",  # field 2 (request_headers), 5 bytes announced, 2 sent
    "invalid-wire-type": b"\x17\x00",  # field 2, wire type 7
    "truncated-nested-header-map": b"\x12\x04\x0a\x02\x0a\x05",  # HttpHeaders -> HeaderMap -> cut
    "good-prefix-then-garbage": GOOD_HEADERS_BYTES + b"\xff",
}


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_undecodable_message_ends_stream_ok(channel, overlayd, name):
    """Contract 7: a well-framed gRPC message whose payload is not a ProcessingRequest ends that
    stream with status OK and a details text (as contract 6); no answer; the server lives on
    and the next exchange on the same channel works."""
    payload = UNDECODABLE[name]
    with pytest.raises(DecodeError):  # self-check: really undecodable
        ep.ProcessingRequest.FromString(payload)
    stream = Stream(channel, raw=True)  # grpcio with request_serializer = identity
    stream.send(payload)
    grpcio = stream.finish()
    assert overlayd.alive(), overlayd.describe()
    assert_good_exchange(channel)
    raw = raw_process(overlayd, [grpc_frame(payload)])
    assert_good_exchange(channel)
    _expect_ok_end_with_details(grpcio, raw, [], None)


def test_garbage_after_a_good_message_keeps_the_good_answer(channel, overlayd):
    """Contract 7 + 6: a good request_headers then an undecodable message, pipelined: the first
    is answered, then the stream ends OK with a details text."""
    stream = Stream(channel, raw=True)
    stream.send(GOOD_HEADERS_BYTES, b"\xff\xff\xff")
    grpcio = stream.finish()
    assert_good_exchange(channel)
    raw = raw_process(overlayd, [grpc_frame(GOOD_HEADERS_BYTES), grpc_frame(b"\xff\xff\xff")])
    assert_good_exchange(channel)
    _expect_ok_end_with_details(grpcio, raw, [ep.ProcessingRequest.FromString(GOOD_HEADERS_BYTES)], None)


BROKEN_FRAMING = {
    # name: (DATA bytes, half-close after them, extra kwargs)
    "compressed-flag-without-grpc-encoding": ([grpc_frame(GOOD_HEADERS_BYTES, compressed=True)], False, {}),
    "message-cut-short-by-end-of-stream": ([grpc_frame(GOOD_HEADERS_BYTES)[:-3]], True, {}),
    "partial-length-prefix-at-end-of-stream": ([b"\x00\x00"], True, {}),
    "length-prefix-claims-2GiB": ([b"\x00\x7f\xff\xff\xff" + b"x" * 100], False, {}),
    "8MiB-message": ([grpc_frame(b"\x12" + b"\xff" * (8 * 1024 * 1024))], False, {}),
    "wrong-content-type": ([grpc_frame(GOOD_HEADERS_BYTES)], True, {"content_type": "application/json"}),
}


@pytest.mark.parametrize("name", sorted(BROKEN_FRAMING))
def test_broken_grpc_framing_is_survived(channel, overlayd, name):
    """Beyond contract 7, raw HTTP/2: broken gRPC framing (compressed flag without encoding,
    truncated frames, absurd or oversized lengths, wrong content-type) ends that stream - with
    any status - within the timeout; the server lives on, the next exchange works and no
    stream is leaked (streams-open gauge back to 0)."""
    frames, half_close, kwargs = BROKEN_FRAMING[name]
    raw = raw_process(overlayd, frames, half_close=half_close, **kwargs)
    assert raw.ended, raw
    assert overlayd.alive(), overlayd.describe()
    assert_good_exchange(channel)
    poll_metric(overlayd.admin_addr, "overlayd_extproc_streams_open", lambda v: v == 0, timeout=10)


# =============================================================================== contract 8


def test_empty_stream(channel):
    """Contract 8: a stream opened and half-closed without any message ends OK, no answers."""
    outcome = Stream(channel).close()
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert outcome.responses == [], outcome


# =============================================================================== contract 9


def test_client_cancel_mid_stream(channel, overlayd):
    """Contract 9 (§1: Envoy normally ends streams with a reset; §15): cancel after the first
    answer; the server survives, the next exchange works, and the streams-open gauge returns
    to 0."""
    stream = Stream(channel)
    stream.send(request_headers(OVERLAID_HOST, "/upload", "POST", eos=False, config=STREAMED_BOTH))
    assert stream.recv(why="request_headers").WhichOneof("response") == "request_headers"
    assert scrape(overlayd.admin_addr).value("overlayd_extproc_streams_open") >= 1, \
        "the gauge does not count the stream that is open right now"
    stream.cancel()
    assert stream.ended and stream.code == grpc.StatusCode.CANCELLED, (stream.code, stream.details)
    assert overlayd.alive(), overlayd.describe()
    assert_good_exchange(channel)
    poll_metric(overlayd.admin_addr, "overlayd_extproc_streams_open", lambda v: v == 0, timeout=10)


def test_cancel_while_server_has_unread_answers(channel, overlayd):
    """Contract 9: a reset while many answers are still in flight (pipelined chunks not read)."""
    stream = Stream(channel)
    stream.send(request_headers(OVERLAID_HOST, "/upload", "POST", eos=False, config=STREAMED_BOTH),
                *_bodies(request_body, chunks(b"c", 50, 10_000), last_eos=False))
    stream.recv(why="request_headers")
    stream.cancel()
    assert overlayd.alive(), overlayd.describe()
    assert_good_exchange(channel)
    poll_metric(overlayd.admin_addr, "overlayd_extproc_streams_open", lambda v: v == 0, timeout=10)


# =============================================================================== contract 10

CONCURRENT_STREAMS = 1000
CONCURRENT_CHANNELS = 20  # 50 streams per HTTP/2 connection: under a server's default stream limit


def test_thousand_concurrent_streams(overlayd):
    """Contract 10: 1,000 Process calls open at the same time, each request_headers -> answer ->
    response_headers -> answer -> half-close -> OK. Every stream sends its response_headers only
    after all 1,000 have had their first answer, so all are open at once; the streams-open
    gauge sees them."""

    async def main():
        options = CHANNEL_OPTIONS + [("grpc.use_local_subchannel_pool", 1)]  # separate connections
        channels = [grpc.aio.insecure_channel(overlayd.grpc_target, options=options)
                    for _ in range(CONCURRENT_CHANNELS)]
        opened = 0
        all_open, release = asyncio.Event(), asyncio.Event()

        async def one(index: int):
            call = ep_grpc.ExternalProcessorStub(channels[index % len(channels)]).Process(timeout=90)
            nonlocal opened
            try:
                await call.write(request_headers(OVERLAID_HOST, f"/item/{index}", eos=True))
                first = await call.read()
                assert first.WhichOneof("response") == "request_headers", describe(first)
                opened += 1
                if opened == CONCURRENT_STREAMS:
                    all_open.set()
                await release.wait()
                await call.write(response_headers(eos=True))
                second = await call.read()
                assert second.WhichOneof("response") == "response_headers", describe(second)
                await call.done_writing()
                assert await call.read() is grpc.aio.EOF
                code = await call.code()
                assert code == grpc.StatusCode.OK, (code, await call.details())
            except BaseException:
                call.cancel()
                raise

        tasks = [asyncio.ensure_future(one(i)) for i in range(CONCURRENT_STREAMS)]
        try:
            # No stream can finish before release, so any task done before all_open is a failure.
            waiter = asyncio.ensure_future(all_open.wait())
            await asyncio.wait([waiter, *tasks], timeout=60, return_when=asyncio.FIRST_COMPLETED)
            if not all_open.is_set():
                waiter.cancel()
                failed = [t.exception() for t in tasks if t.done() and t.exception()]
                raise AssertionError(f"only {opened} of {CONCURRENT_STREAMS} streams got their first answer "
                                     f"(waited up to 60s); first failures: {failed[:3]}")
            gauge = (await asyncio.to_thread(scrape, overlayd.admin_addr)).value("overlayd_extproc_streams_open")
            release.set()
            done, pending = await asyncio.wait(tasks, timeout=60)
            assert not pending, f"{len(pending)} streams did not finish within 60s"
            failures = [t.exception() for t in done if t.exception() is not None]
            assert not failures, f"{len(failures)} of {CONCURRENT_STREAMS} streams failed, e.g. {failures[:3]}"
            return gauge
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for ch in channels:
                await ch.close()

    gauge = asyncio.run(main())
    assert gauge is not None and gauge >= CONCURRENT_STREAMS, \
        f"overlayd_extproc_streams_open was {gauge} while {CONCURRENT_STREAMS} streams were open"
    poll_metric(overlayd.admin_addr, "overlayd_extproc_streams_open", lambda v: v == 0, timeout=15)


# =============================================================================== contract 11


@pytest.mark.parametrize("service", ["", EXT_PROC_SERVICE])
def test_grpc_health_serving(channel, service):
    """Contract 11: grpc.health.v1 Check says SERVING for "" and the ext_proc service."""
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_health_unknown_service(channel):
    """Contract 11: an unknown service name is NOT_FOUND (grpc.health.v1 convention)."""
    with pytest.raises(grpc.RpcError) as info:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="no.such.Service"),
                                                  timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value


# =============================================================================== contract 12


def test_admin_healthz(overlayd):
    """Contract 12: GET /healthz on the admin listener is 200."""
    reply = http_get(overlayd.admin_addr, "/healthz")
    assert reply.status == 200, reply


def test_admin_metrics(overlayd, channel):
    """Contract 12: /metrics is Prometheus text with messages_total{phase} for all six phases
    (counting what was received), streams_open gauge, processing_seconds histogram and
    errors_total{kind}."""
    before = scrape(overlayd.admin_addr)
    outcome = exchange(channel, scenario_trailers())  # all six phases: 1 + 2 + 1 + 1 + 2 + 1 messages
    assert_overlaid_answers(outcome)
    bad = Stream(channel).send(ep.ProcessingRequest()).finish()  # one protocol error (its status: contract 6)
    reply = http_get(overlayd.admin_addr, "/metrics")
    assert reply.status == 200, reply
    assert reply.headers.get("content-type", "").startswith("text/plain"), reply.headers
    after = scrape(overlayd.admin_addr)

    name = "overlayd_extproc_messages_total"
    assert after.type_of(name) == "counter", f"# TYPE of {name}: {after.type_of(name)}"
    sent = {"request_headers": 1, "request_body": 2, "request_trailers": 1,
            "response_headers": 1, "response_body": 2, "response_trailers": 1}
    for phase, count in sent.items():
        now = after.value(name, phase=phase)
        assert now is not None, f"no {name}{{phase=\"{phase}\"}} series in:\n{after.text}"
        assert now - (before.value(name, phase=phase) or 0) >= count, \
            f"{name}{{phase=\"{phase}\"}} grew by less than {count}"

    assert after.type_of("overlayd_extproc_streams_open") == "gauge", after.text
    assert after.value("overlayd_extproc_streams_open") is not None, after.text

    hist = "overlayd_extproc_processing_seconds"
    assert after.type_of(hist) == "histogram", after.text
    buckets = after.series(hist + "_bucket")
    assert buckets and all("le" in labels for labels, _ in buckets), after.text
    assert any(labels["le"] == "+Inf" for labels, _ in buckets), after.text
    assert after.value(hist + "_count") is not None and after.value(hist + "_sum") is not None, after.text
    assert after.value(hist + "_count") > (before.value(hist + "_count") or 0), "histogram count did not grow"

    errors = "overlayd_extproc_errors_total"
    assert after.type_of(errors) == "counter", after.text
    series = after.series(errors)
    assert series and all("kind" in labels for labels, _ in series), f"{errors} lacks a kind label:\n{after.text}"
    assert sum(v for _, v in series) > sum(v for _, v in before.series(errors)), \
        f"{errors} did not count the protocol error ({bad.details!r})"


# =============================================================================== contract 13


@pytest.mark.parametrize("method", [
    "/envoy.service.ext_proc.v3.ExternalProcessor/NoSuchMethod",
    "/no.such.Service/Process",
])
def test_unknown_method_is_unimplemented(channel, method):
    """Contract 13: an unknown gRPC method (or service) on the same server is UNIMPLEMENTED."""
    unary = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        unary(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, info.value
    bidi = channel.stream_stream(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        list(bidi(iter([GOOD_HEADERS_BYTES]), timeout=5))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, info.value
    assert_good_exchange(channel)


# =============================================================================== contract 14


def full_envoy_request() -> ep.ProcessingRequest:
    """A request_headers message with every field of Envoy's ProcessingRequest populated, as
    Envoy fills them (§1, §1.2, §11): raw_value headers, attributes (CEL values as a Struct
    under the filter name), metadata_context (untyped and typed), protocol_config."""
    req = ep.ProcessingRequest()
    hh = req.request_headers
    for key, value in [(":authority", b"crm.example.com"), (":path", b"/dashboard?tab=1"), (":method", b"GET"),
                       (":scheme", b"https"), ("user-agent", b"Mozilla/5.0"), ("accept", b"text/html"),
                       ("cookie", b"session=abc; theme=dark"), ("x-request-id", b"6c1f7a52"),
                       ("x-binary", b"valid_prefix\xc3(valid_suffix")]:
        hh.headers.headers.add(key=key, raw_value=value)
    hh.attributes["envoy.filters.http.ext_proc"].update({"deprecated": "never filled by Envoy"})  # field 2
    hh.end_of_stream = True
    req.metadata_context.filter_metadata["envoy.filters.http.ext_proc"].update(
        {"route": "app", "weight": 100, "canary": True, "tags": ["a", "b"], "nested": {"k": None}})
    req.metadata_context.typed_filter_metadata["overlayd.typed"].Pack(wrappers_pb2.StringValue(value="typed"))
    req.attributes["envoy.filters.http.ext_proc"].update({
        "request.path": "/dashboard?tab=1", "request.method": "GET", "request.host": "crm.example.com",
        "request.size": 0, "source.address": "127.0.0.1:40000", "xds.cluster_name": "app"})
    req.observability_mode = False
    req.protocol_config.CopyFrom(protocol_config(PM.STREAMED, PM.STREAMED, True))
    return req


def _assert_every_field_set(msg, skip: set[str] = frozenset(), path: str = "") -> None:
    for field in msg.DESCRIPTOR.fields:
        name = f"{path}{field.name}"
        if field.name in skip:
            continue
        if field.containing_oneof is not None and msg.WhichOneof(field.containing_oneof.name) != field.name:
            continue  # only one member of a oneof can be set
        if field.is_repeated:
            assert len(getattr(msg, field.name)) > 0, f"{name} is empty"
        elif field.type == field.TYPE_MESSAGE:
            assert msg.HasField(field.name), f"{name} is not set"
        elif field.type == field.TYPE_BOOL:
            pass  # false is a legitimate value (observability_mode must be false here)
        else:
            assert getattr(msg, field.name) != field.default_value, f"{name} is not set"


def test_every_envoy_field_is_understood(start_overlayd):
    """Contract 14: a message with every field of the real Envoy ProcessingRequest (xds-protos)
    is answered normally, and overlayd found no unknown fields in it
    (overlayd_extproc_unknown_fields_total absent or 0 on a fresh process)."""
    req = full_envoy_request()
    _assert_every_field_set(req)
    _assert_every_field_set(req.request_headers, path="request_headers.")
    _assert_every_field_set(req.request_headers.headers.headers[0], skip={"value"}, path="header.")  # raw_value only, as Envoy
    _assert_every_field_set(req.protocol_config, path="protocol_config.")
    _assert_every_field_set(req.metadata_context, path="metadata_context.")

    proc = start_overlayd()
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    try:
        outcome = exchange(channel, [req, response_headers(eos=True)])
        assert_overlaid_answers(outcome)
        unknown = scrape(proc.admin_addr).value("overlayd_extproc_unknown_fields_total")
        assert unknown in (None, 0), f"overlayd counted {unknown} unknown field(s) in Envoy's message"
    finally:
        channel.close()


def test_unknown_fields_are_counted(channel, overlayd):
    """Contract 14 (positive control): the counter really counts - a request_headers message
    with an extra field number 999 is still answered, and the counter grows."""
    before = scrape(overlayd.admin_addr).value("overlayd_extproc_unknown_fields_total") or 0
    payload = request_headers(OVERLAID_HOST, eos=True).SerializeToString() + b"\xb8\x3e\x01"  # field 999, varint 1
    parsed = ep.ProcessingRequest.FromString(payload)
    assert parsed.WhichOneof("request") == "request_headers"  # self-check: decodable, one unknown field
    stream = Stream(channel, raw=True)
    stream.send(payload)
    first = stream.recv(why="request_headers with an unknown field")
    outcome = stream.close()
    assert first.WhichOneof("response") == "request_headers" and outcome.code == grpc.StatusCode.OK, outcome
    poll_metric(overlayd.admin_addr, "overlayd_extproc_unknown_fields_total",
                lambda v: v is not None and v >= before + 1, timeout=5)


# =============================================================================== unix socket


def test_unix_socket_listener(overlayd_unix):
    """`--listen unix:<path>`: the same service, health included, over a Unix domain socket."""
    channel = grpc.insecure_channel(overlayd_unix.grpc_target, options=CHANNEL_OPTIONS)
    try:
        run_scenario(channel, "streamed-both")
        outcome = exchange(channel, [request_headers(OTHER_HOST, eos=True)])
        assert [r.mode_override for r in outcome.responses] == [PASS_THROUGH_MODE], outcome
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert http_get(overlayd_unix.admin_addr, "/healthz").status == 200
    finally:
        channel.close()


# =============================================================================== contract 15


class WrongProcessor(ep_grpc.ExternalProcessorServicer):
    """A tiny ext_proc server that answers correctly except for one deliberate mistake."""

    def __init__(self, mistake: str):
        self.mistake = mistake

    @staticmethod
    def _body_answers(phase: str, body: ep.HttpBody, duplex: bool) -> list[ep.ProcessingResponse]:
        if not duplex:
            return [ep.ProcessingResponse(**{phase: ep.BodyResponse()})]
        pieces = [body.body[i:i + 65536] for i in range(0, len(body.body), 65536)] or [b""]
        return [ep.ProcessingResponse(**{phase: ep.BodyResponse(response=ep.CommonResponse(
            body_mutation=ep.BodyMutation(streamed_response=ep.StreamedBodyResponse(
                body=piece, end_of_stream=body.end_of_stream and i == len(pieces) - 1))))})
            for i, piece in enumerate(pieces)]

    def Process(self, request_iterator, context):
        duplex: set[str] = set()
        for req in request_iterator:
            if req.HasField("protocol_config"):
                if req.protocol_config.request_body_mode == PM.FULL_DUPLEX_STREAMED:
                    duplex.add("request_body")
                if req.protocol_config.response_body_mode == PM.FULL_DUPLEX_STREAMED:
                    duplex.add("response_body")
            phase = req.WhichOneof("request")
            if phase in BODY_PHASES:
                body = getattr(req, phase)
                answers = self._body_answers(phase, body, phase in duplex)
                if self.mistake == "request_body-answered-as-response_headers" and phase == "request_body":
                    answers = [ep.ProcessingResponse(response_headers=ep.HeadersResponse())]
                elif self.mistake == "body-answered-in-wrong-direction":
                    other = "response_body" if phase == "request_body" else "request_body"
                    answers = [ep.ProcessingResponse(**{other: ep.BodyResponse()})]
                elif self.mistake == "one-chunk-too-few" and body.end_of_stream:
                    answers = []
                elif self.mistake == "two-answers-for-one-chunk":
                    answers = answers * 2
                elif self.mistake == "body_mutation-in-streamed-mode" and phase not in duplex:
                    answers = [ep.ProcessingResponse(**{phase: ep.BodyResponse(response=ep.CommonResponse(
                        body_mutation=ep.BodyMutation(body=body.body + b"!")))})]
                elif self.mistake == "duplex-drops-a-byte" and phase in duplex and body.body:
                    answers[-1] = ep.ProcessingResponse(**{phase: ep.BodyResponse(response=ep.CommonResponse(
                        body_mutation=ep.BodyMutation(streamed_response=ep.StreamedBodyResponse(
                            body=body.body[:-1], end_of_stream=body.end_of_stream))))})
                elif self.mistake == "duplex-loses-end_of_stream" and phase in duplex and body.end_of_stream:
                    for answer in answers:
                        getattr(answer, phase).response.body_mutation.streamed_response.end_of_stream = False
                yield from answers
            elif phase in ("request_headers", "response_headers"):
                answer = ep.ProcessingResponse(**{phase: ep.HeadersResponse()})
                if self.mistake == "headers-answer-with-mode_override":
                    answer.mode_override.CopyFrom(PASS_THROUGH_MODE)
                yield answer
            else:
                yield ep.ProcessingResponse(**{phase: ep.TrailersResponse()})


META_CASES = {
    # mistake: scenario that exposes it
    "request_body-answered-as-response_headers": "streamed-request-body",
    "one-chunk-too-few": "streamed-request-body",
    "body-answered-in-wrong-direction": "streamed-both",
    "two-answers-for-one-chunk": "streamed-both",
    "body_mutation-in-streamed-mode": "streamed-both",
    "headers-answer-with-mode_override": "headers-only",
    "duplex-drops-a-byte": "duplex-request",
    "duplex-loses-end_of_stream": "duplex-request",
}


@pytest.fixture
def python_extproc_server():
    """Start WrongProcessor(mistake) on 127.0.0.1:0; returns a channel to it."""
    servers, channels = [], []

    def start(mistake: str) -> grpc.Channel:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ep_grpc.add_ExternalProcessorServicer_to_server(WrongProcessor(mistake), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        channels.append(ch)
        return ch

    yield start
    for ch in channels:
        ch.close()
    for server in servers:
        server.stop(grace=None).wait(timeout=10)


@pytest.mark.parametrize("mistake", sorted(META_CASES))
def test_helpers_fail_when_a_phase_is_answered_wrongly(python_extproc_server, mistake):
    """Contract 15: the helper-based scenario used above raises AssertionError against a server
    that answers one phase wrongly - so a passing run against overlayd means something."""
    channel = python_extproc_server(mistake)
    with pytest.raises(AssertionError):
        run_scenario(channel, META_CASES[mistake], recv_timeout=2.0)


@pytest.mark.parametrize("name", sorted(set(META_CASES.values()) | {"duplex-200KiB-chunk", "trailers"}))
def test_helpers_pass_against_a_correct_server(python_extproc_server, name):
    """Contract 15 control: the same scenarios pass against the same server without a mistake."""
    run_scenario(python_extproc_server("none"), name)
