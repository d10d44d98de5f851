"""Drive an ext_proc server the way Envoy does, and check its answers.

Building blocks (docs/envoy-ext-proc.md is "§"):

* message builders (``request_headers(...)``, ``response_body(...)``...) that produce what
  Envoy's filter sends: lower-case keys, pseudo-headers, values in ``raw_value`` (§1.2),
  ``protocol_config`` only on the first message (§1);
* :class:`Stream` - one ``Process`` call with a request queue and a reader thread, so a test can
  send, receive with a bounded wait, half-close or cancel at any point;
* :func:`exchange` - send every message pipelined (no waiting, no half-close: Envoy never
  half-closes before it has its answers, §1/§15), read the answers the messages call for,
  then half-close and collect the end status;
* :func:`assert_answers_match` - one answer per message, of the matching oneof type and so
  direction, in order (§2); in FULL_DUPLEX_STREAMED a chunk may be answered by several
  ``streamed_response`` messages whose bodies add up to the chunk (§1.3);
* :func:`assert_overlaid_answers` - the overlayd contract for an overlaid host on top of that.

All waits are bounded.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

PM = processing_mode_pb2.ProcessingMode
PROCESS_METHOD = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
CONTINUE = ep.CommonResponse.CONTINUE

CALL_TIMEOUT = 30.0  # gRPC deadline of every call: nothing can hang longer
RECV_TIMEOUT = 10.0  # wait for one expected answer
END_TIMEOUT = 10.0  # wait for the server to end a call
STREAMED_CHUNK_LIMIT = 64 * 1024

CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),  # traffic goes to 127.0.0.1 only, never via a proxy
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]

BODY_PHASES = ("request_body", "response_body")
REQUEST_PHASES = ("request_headers", "request_body", "request_trailers")


def direction_of(phase: str | None) -> str:
    if phase is None:
        return "?"
    return "request" if phase.startswith("request") else "response" if phase.startswith("response") else "-"


# ---------------------------------------------------------------------------- builders


def header_map(pairs: Iterable[tuple[str, str | bytes]]) -> base_pb2.HeaderMap:
    """Envoy's encoding (§1.2): lower-case keys, value bytes in ``raw_value``."""
    out = base_pb2.HeaderMap()
    for key, value in pairs:
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        out.headers.add(key=key.lower(), raw_value=raw)
    return out


def protocol_config(request_body_mode: int = PM.NONE, response_body_mode: int = PM.NONE,
                    send_body_without_waiting_for_header_response: bool = False) -> ep.ProtocolConfiguration:
    return ep.ProtocolConfiguration(
        request_body_mode=request_body_mode, response_body_mode=response_body_mode,
        send_body_without_waiting_for_header_response=send_body_without_waiting_for_header_response)


def request_headers(authority: str, path: str = "/", method: str = "GET", *, eos: bool = True,
                    config: ep.ProtocolConfiguration | None = None, observability: bool = False,
                    extra: Sequence[tuple[str, str | bytes]] = ()) -> ep.ProcessingRequest:
    pairs = [(":authority", authority), (":path", path), (":method", method), (":scheme", "http"),
             ("user-agent", "overlayd-wire-tests"), *extra]
    msg = ep.ProcessingRequest(
        request_headers=ep.HttpHeaders(headers=header_map(pairs), end_of_stream=eos),
        observability_mode=observability)
    if config is not None:
        msg.protocol_config.CopyFrom(config)
    return msg


def response_headers(status: int = 200, *, eos: bool = True, content_type: str = "application/octet-stream",
                     observability: bool = False, config: ep.ProtocolConfiguration | None = None,
                     extra: Sequence[tuple[str, str | bytes]] = ()) -> ep.ProcessingRequest:
    # Not text/html and bodies without "</head>": overlayd must have nothing to inject, so the
    # contract's "no body_mutation" holds for these bodies.
    pairs = [(":status", str(status)), ("content-type", content_type), *extra]
    msg = ep.ProcessingRequest(
        response_headers=ep.HttpHeaders(headers=header_map(pairs), end_of_stream=eos),
        observability_mode=observability)
    if config is not None:
        msg.protocol_config.CopyFrom(config)
    return msg


def request_body(data: bytes, eos: bool, *, observability: bool = False) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(request_body=ep.HttpBody(body=data, end_of_stream=eos),
                                observability_mode=observability)


def response_body(data: bytes, eos: bool, *, observability: bool = False) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(response_body=ep.HttpBody(body=data, end_of_stream=eos),
                                observability_mode=observability)


def request_trailers(pairs: Sequence[tuple[str, str]] = (("x-request-checksum", "abc"),), *,
                     observability: bool = False) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(request_trailers=ep.HttpTrailers(trailers=header_map(pairs)),
                                observability_mode=observability)


def response_trailers(pairs: Sequence[tuple[str, str]] = (("grpc-status", "0"),), *,
                      observability: bool = False) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(response_trailers=ep.HttpTrailers(trailers=header_map(pairs)),
                                observability_mode=observability)


def chunks(prefix: bytes, count: int, size: int = 100) -> list[bytes]:
    """Distinct, non-HTML body chunks (so a mix-up between chunks is visible)."""
    out = []
    for index in range(count):
        head = prefix + b"-%03d:" % index
        out.append((head + bytes((index * 7 + j) % 251 for j in range(max(0, size - len(head)))))[:size])
    return out


def describe(msg) -> str:
    if msg is None:
        return "<none>"
    if isinstance(msg, (bytes, bytearray)):
        return f"raw{bytes(msg[:12])!r}{'...' if len(msg) > 12 else ''}({len(msg)}B)"
    if isinstance(msg, ep.ProcessingRequest):
        phase = msg.WhichOneof("request")
        if phase is None:
            return "ProcessingRequest(no oneof set)"
        if phase in BODY_PHASES:
            body = getattr(msg, phase)
            return f"{phase}({len(body.body)}B, eos={body.end_of_stream})"
        if phase in ("request_headers", "response_headers"):
            return f"{phase}(eos={getattr(msg, phase).end_of_stream})"
        return str(phase)
    phase = msg.WhichOneof("response")
    if phase in BODY_PHASES:
        common = getattr(msg, phase).response
        if common.body_mutation.HasField("streamed_response"):
            sr = common.body_mutation.streamed_response
            return f"{phase}(streamed {len(sr.body)}B, eos={sr.end_of_stream})"
        return f"{phase}({ep.CommonResponse.ResponseStatus.Name(common.status)}" \
               f"{', body_mutation' if common.HasField('body_mutation') else ''})"
    if phase == "immediate_response":
        return f"immediate_response({msg.immediate_response.status.code})"
    return f"{phase}{'+mode_override' if msg.HasField('mode_override') else ''}"


def describe_all(msgs) -> str:
    return "[" + ", ".join(describe(m) for m in msgs) + "]"


# ---------------------------------------------------------------------------- Stream

_HALF_CLOSE = object()
_END = object()


@dataclass
class Outcome:
    """Everything a finished call produced."""
    requests: list
    responses: list
    code: grpc.StatusCode
    details: str

    def __str__(self) -> str:
        return (f"sent {describe_all(self.requests)} -> received {describe_all(self.responses)}, "
                f"status {self.code.name} {self.details!r}")

    __repr__ = __str__  # pytest shows the repr of an assertion message object


class Stream:
    """One Process call that the test drives step by step.

    Requests go through a queue into grpcio's request iterator; a reader thread moves responses
    into another queue, then records the final status. ``recv`` waits at most ``timeout``.
    """

    def __init__(self, channel_or_stub, *, timeout: float = CALL_TIMEOUT,
                 raw: bool = False, metadata=None):
        if raw:
            # Bytes in, ProcessingResponse out: lets a test put anything in a gRPC frame.
            call = channel_or_stub.stream_stream(PROCESS_METHOD, request_serializer=lambda b: b,
                                                 response_deserializer=ep.ProcessingResponse.FromString)
        elif isinstance(channel_or_stub, ep_grpc.ExternalProcessorStub):
            call = channel_or_stub.Process
        else:
            call = ep_grpc.ExternalProcessorStub(channel_or_stub).Process
        self.sent: list = []
        self.received: list = []
        self._requests: queue.Queue = queue.Queue()
        self._responses: queue.Queue = queue.Queue()
        self._ended = threading.Event()
        self.code: grpc.StatusCode | None = None
        self.details: str = ""
        self._call = call(self._request_iter(), timeout=timeout, metadata=metadata)
        self._reader = threading.Thread(target=self._read, daemon=True, name="extproc-reader")
        self._reader.start()

    def _request_iter(self):
        while True:
            item = self._requests.get()
            if item is _HALF_CLOSE:
                return
            yield item

    def _read(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
            code, details = self._call.code(), self._call.details()
        except grpc.RpcError as err:
            code, details = err.code(), err.details()
        except Exception as err:  # e.g. a response that does not deserialize
            code, details = grpc.StatusCode.UNKNOWN, f"client-side error: {err!r}"
        self.code, self.details = code, details or ""
        self._ended.set()
        self._responses.put(_END)
        self._requests.put(_HALF_CLOSE)  # release grpcio's request-consuming thread

    # -- sending
    def send(self, *messages) -> "Stream":
        for message in messages:
            self.sent.append(message)
            self._requests.put(message)
        return self

    def half_close(self) -> "Stream":
        self._requests.put(_HALF_CLOSE)
        return self

    def cancel(self) -> None:
        self._call.cancel()
        self._ended.wait(END_TIMEOUT)

    # -- receiving
    def recv(self, timeout: float = RECV_TIMEOUT, *, why: str = "") -> ep.ProcessingResponse:
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no answer within {timeout}s{' for ' + why if why else ''}; sent {describe_all(self.sent)}, "
                f"received {describe_all(self.received)}") from None
        if item is _END:
            self._responses.put(_END)
            raise AssertionError(
                f"call ended ({self.code.name} {self.details!r}) while waiting for an answer"
                f"{' for ' + why if why else ''}; sent {describe_all(self.sent)}, "
                f"received {describe_all(self.received)}")
        self.received.append(item)
        return item

    def finish(self, timeout: float = END_TIMEOUT) -> Outcome:
        """Wait for the call to end (without half-closing) and return what it produced."""
        if not self._ended.wait(timeout):
            self._call.cancel()
            self._ended.wait(END_TIMEOUT)
            raise AssertionError(
                f"server did not end the call within {timeout}s; sent {describe_all(self.sent)}, "
                f"received {describe_all(self.received)}")
        while True:
            item = self._responses.get(timeout=END_TIMEOUT)
            if item is _END:
                self._responses.put(_END)
                break
            self.received.append(item)
        return Outcome(list(self.sent), list(self.received), self.code, self.details)

    def close(self) -> Outcome:
        """Half-close, then wait for the end of the call."""
        return self.half_close().finish()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()


# ---------------------------------------------------------------------------- matching


def _duplex_phases(requests: Sequence[ep.ProcessingRequest]) -> set[str]:
    if not requests or not requests[0].HasField("protocol_config"):
        return set()
    pc = requests[0].protocol_config
    out = set()
    if pc.request_body_mode == PM.FULL_DUPLEX_STREAMED:
        out.add("request_body")
    if pc.response_body_mode == PM.FULL_DUPLEX_STREAMED:
        out.add("response_body")
    return out


def _streamed(resp: ep.ProcessingResponse, phase: str):
    common = getattr(resp, phase).response
    if common.body_mutation.HasField("streamed_response"):
        return common.body_mutation.streamed_response
    return None


def read_answers(stream: Stream, requests: Sequence[ep.ProcessingRequest], *,
                 recv_timeout: float = RECV_TIMEOUT) -> None:
    """Receive as many answers as ``requests`` call for (none for observability messages).

    One per message; for a FULL_DUPLEX_STREAMED chunk, answers of that phase carrying
    ``streamed_response`` are read until their bodies cover the chunk. Content is not judged
    here (that is :func:`assert_answers_match`); a missing answer is an AssertionError.
    """
    duplex = _duplex_phases(requests)
    for index, req in enumerate(requests):
        phase = req.WhichOneof("request")
        if req.observability_mode:
            continue
        why = f"message #{index} {describe(req)}"
        resp = stream.recv(recv_timeout, why=why)
        if phase in duplex and resp.WhichOneof("response") == phase:
            want = len(getattr(req, phase).body)
            got = len(_streamed(resp, phase).body) if _streamed(resp, phase) else want
            while got < want:
                resp = stream.recv(recv_timeout, why=why + f" (streamed {got}/{want} bytes so far)")
                if resp.WhichOneof("response") != phase or _streamed(resp, phase) is None:
                    break
                got += len(_streamed(resp, phase).body)


def exchange(channel_or_stub, requests: Sequence, *, recv_timeout: float = RECV_TIMEOUT,
             raw: bool = False) -> Outcome:
    """Envoy-style exchange: pipeline every message, read the answers, then half-close.

    The answers are read *before* the half-close, so a server that waits for the client's
    end-of-stream before answering fails here (§15 "never rely on the client's end-of-stream").
    """
    stream = Stream(channel_or_stub, raw=raw)
    try:
        stream.send(*requests)
        if not raw:
            read_answers(stream, requests, recv_timeout=recv_timeout)
        return stream.close()
    except BaseException:
        stream.cancel()
        raise


def assert_answers_match(requests: Sequence[ep.ProcessingRequest],
                         responses: Sequence[ep.ProcessingResponse]) -> list[tuple]:
    """One answer per message, of the same oneof type (so the same phase and direction), in
    order (§2); none for observability-mode messages (§1.5). For a FULL_DUPLEX_STREAMED body
    chunk (per the first message's protocol_config) the answers are ``streamed_response``
    messages whose bodies concatenate to the chunk, only the last one carrying the chunk's
    end_of_stream (§1.3). Returns ``[(request, [answers...]), ...]``.
    """
    duplex = _duplex_phases(requests)
    context = f"\n  sent     {describe_all(requests)}\n  received {describe_all(responses)}"
    pairs = []
    at = 0
    for index, req in enumerate(requests):
        phase = req.WhichOneof("request")
        assert phase is not None, f"message #{index} has no request oneof{context}"
        if req.observability_mode:
            pairs.append((req, []))
            continue
        if at >= len(responses):
            raise AssertionError(f"message #{index} {describe(req)} got no answer "
                                 f"({len(responses)} answers in all){context}")
        got = responses[at].WhichOneof("response")
        if got != phase:
            raise AssertionError(
                f"message #{index} {describe(req)} ({direction_of(phase)} direction) was answered with "
                f"{describe(responses[at])} ({direction_of(got)} direction); expected a {phase} answer{context}")
        if phase not in duplex:
            pairs.append((req, [responses[at]]))
            at += 1
            continue
        chunk = getattr(req, phase)
        answers, data = [], b""
        while True:
            if at >= len(responses):
                raise AssertionError(f"message #{index} {describe(req)}: streamed answers stop after "
                                     f"{len(data)} of {len(chunk.body)} bytes{context}")
            resp = responses[at]
            if resp.WhichOneof("response") != phase:
                raise AssertionError(f"message #{index} {describe(req)}: after {len(data)} of "
                                     f"{len(chunk.body)} bytes came {describe(resp)}{context}")
            streamed = _streamed(resp, phase)
            if streamed is None:
                raise AssertionError(f"message #{index} {describe(req)} in FULL_DUPLEX_STREAMED was answered "
                                     f"without body_mutation.streamed_response: {describe(resp)}{context}")
            answers.append(resp)
            data += streamed.body
            at += 1
            if len(data) >= len(chunk.body):
                break
            if streamed.end_of_stream:
                raise AssertionError(f"message #{index}: end_of_stream on a partial streamed answer "
                                     f"({len(data)} of {len(chunk.body)} bytes){context}")
        assert data == chunk.body, (f"message #{index} {describe(req)}: streamed_response bodies add up to "
                                    f"{len(data)} bytes that differ from the chunk{context}")
        eos_flags = [_streamed(a, phase).end_of_stream for a in answers]
        assert eos_flags[-1] == chunk.end_of_stream and not any(eos_flags[:-1]), (
            f"message #{index} {describe(req)}: end_of_stream flags of its streamed answers are "
            f"{eos_flags}, expected only the last to be {chunk.end_of_stream}{context}")
        pairs.append((req, answers))
    if at != len(responses):
        raise AssertionError(f"{len(responses) - at} answer(s) too many: {describe_all(responses[at:])}{context}")
    return pairs


def common_response(resp: ep.ProcessingResponse) -> ep.CommonResponse | None:
    phase = resp.WhichOneof("response")
    if phase in ("request_headers", "response_headers", "request_body", "response_body"):
        return getattr(resp, phase).response
    return None


def assert_overlaid_answers(outcome: Outcome) -> list[tuple]:
    """The overlayd contract for an overlaid host (brief point 2) on a finished exchange:
    answers match (above); headers answers are CONTINUE without mode_override; body answers
    are CONTINUE without body_mutation unless the direction is FULL_DUPLEX_STREAMED (then
    streamed_response, checked by assert_answers_match); trailers answered; call ends OK.
    """
    pairs = assert_answers_match(outcome.requests, outcome.responses)
    duplex = _duplex_phases(outcome.requests)
    for index, (req, answers) in enumerate(pairs):
        phase = req.WhichOneof("request")
        for resp in answers:
            if phase == "request_headers":
                assert not resp.HasField("mode_override"), \
                    f"overlaid host: {describe(req)} answered with a mode_override {resp.mode_override}; {outcome}"
            if phase == "response_headers" and resp.HasField("mode_override"):
                # A body overlayd leaves alone is switched off: response_body_mode NONE, nothing else.
                assert resp.mode_override == PM(response_body_mode=PM.NONE), \
                    f"overlaid host: {describe(req)} answered with mode_override {resp.mode_override}; {outcome}"
            common = common_response(resp)
            if common is not None:
                assert common.status == CONTINUE, f"message #{index} {describe(req)}: status " \
                    f"{ep.CommonResponse.ResponseStatus.Name(common.status)}, expected CONTINUE; {outcome}"
            if phase in BODY_PHASES and phase not in duplex:
                assert not common.HasField("body_mutation"), \
                    f"message #{index} {describe(req)}: unexpected body_mutation {common.body_mutation}; {outcome}"
    assert outcome.code == grpc.StatusCode.OK, f"call did not end OK; {outcome}"
    return pairs
