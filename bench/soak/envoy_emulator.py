"""One HTTP exchange as Envoy's ext_proc filter drives it, against the real overlayd, with the
bytes Envoy would forward reassembled and checked.

The emulated filter (docs: ``../shared/docs/envoy-ext-proc.md``, "§" below) has request and
response headers SEND, the exchange's body modes in ``protocol_config`` (each of NONE, STREAMED,
BUFFERED, BUFFERED_PARTIAL with a 32 KiB buffer limit, FULL_DUPLEX_STREAMED), response trailers
SEND or SKIP, ``allow_mode_override`` on or off, and ``failure_mode_allow: true`` except in
FULL_DUPLEX_STREAMED, where Envoy requires it off (§1.3). Per exchange:

1. ``request_headers`` (+ the request body in FULL_DUPLEX, sent without waiting); the answer
   must be the pass-through (``mode_override``) for a host without overlay and the split
   decision (``x-overlay-model``, dynamic metadata) for an overlaid one; ``mode_override`` is
   applied as Envoy applies it (§3: only with ``allow_mode_override``, never with a duplex mode,
   body modes taken literally);
2. the request body per the effective mode (it must come back unchanged), then the request goes
   to the legacy app with the header mutation applied;
3. ``response_headers`` (``:status`` and the app's headers), its mutation and ``mode_override``;
4. the response body per the effective mode: STREAMED chunks pipelined and answered FIFO, one
   BUFFERED message, BUFFERED_PARTIAL cut at the buffer limit with the rest passed unprocessed,
   FULL_DUPLEX chunks streamed and the ``streamed_response`` bytes forwarded; trailers when the
   app's response has them (last chunk then without ``end_of_stream``, §15);
5. the stream is reset (Envoy's normal end, §1) and what the client would get is compared with
   the page byte for byte (:func:`pages.verify`).

Some exchanges are cancelled (the client went away) after the request headers or mid-body.
An exchange whose stream cannot be opened or fails before any answer while the sidecar is down or
draining is Envoy's fail-open (the request goes to the app unmodified); an answer missing once
overlayd has answered anything is a failure, like every byte out of place.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf.json_format import MessageToDict

import configs
import pages
from extproc_helpers import PM, Stream, header_map, protocol_config, request_body, request_headers

MODES = {"NONE": PM.NONE, "STREAMED": PM.STREAMED, "BUFFERED": PM.BUFFERED,
         "BUFFERED_PARTIAL": PM.BUFFERED_PARTIAL, "FULL_DUPLEX_STREAMED": PM.FULL_DUPLEX_STREAMED}
MODE_NAMES = {value: name for name, value in MODES.items()}
PARTIAL_LIMIT = 32 * 1024  # the emulated buffer limit (Envoy's default is 1 MiB; smaller cuts our pages)
RECV_TIMEOUT = 10.0  # far beyond Envoy's message_timeout: only a lost answer waits this long
MESSAGE_TIMEOUT = 0.5  # envoy-config/envoy.yaml: an answer slower than this would have failed open
CALL_TIMEOUT = 30.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Plan:
    rid: str
    host: str
    variant: str
    method: str
    request_body: bytes
    req_mode: int
    resp_mode: int
    allow_override: bool
    trailers: bool  # the app's response has trailers
    trailer_send: bool  # the filter's response trailer mode (FULL_DUPLEX forces SEND)
    cancel: str | None  # None | "after_request_headers" | "mid_body"
    user: str
    upstream_delay: float = 0.0  # the legacy app answers this much later (a slow page)

    @property
    def path(self) -> str:
        return pages.path_for(self.variant, self.rid)

    def describe(self) -> str:
        return (f"{self.method} {self.host}{self.path} req={MODE_NAMES[self.req_mode]} resp={MODE_NAMES[self.resp_mode]}"
                f" allow_mode_override={self.allow_override} trailers={self.trailers}"
                f"(mode {'SEND' if self.trailer_send else 'SKIP'}) cancel={self.cancel}"
                + (f" page delayed {self.upstream_delay:g} s" if self.upstream_delay else ""))


@dataclass
class Result:
    outcome: str
    ok: bool
    detail: str = ""
    forwarded: bool = False  # the legacy app must have seen it exactly once (else not at all)
    island: str | None = None  # status of the result island, when one was inserted
    overlayd_seconds: float = 0.0  # time spent waiting for overlayd's answers
    slow_answers: int = 0  # answers later than Envoy's message_timeout
    config_version: str | None = None
    notes: list[str] = field(default_factory=list)


class SidecarFault(Exception):
    """The Process stream failed (no answer, or the call ended) before the exchange was done."""


class Failure(Exception):
    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class Sidecar:
    """The ext_proc server as the emulated Envoy sees it: a channel while up, none while down."""

    def __init__(self):
        self._lock = threading.Lock()
        self.generation = 0
        self.state = "down"  # up | draining | down
        self.channel = None

    def current(self):
        with self._lock:
            return self.generation, self.state, self.channel

    def set(self, state: str, channel=None, new_generation: bool = False):
        with self._lock:
            if new_generation:
                self.generation += 1
            self.state = state
            if channel is not None or state == "down":
                self.channel = channel


class AppClient:
    """Keep-alive HTTP/1.1 to the legacy app, one per worker thread; a connection idle for
    longer than the app's idle timeout is replaced before use, never retried after."""

    def __init__(self, addr: str, idle_limit: float):
        self.addr = addr
        self.idle_limit = idle_limit
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def fetch(self, method: str, path: str, headers: dict[str, str], body: bytes | None):
        now = time.monotonic()
        if self.conn is None or now - self.last_used > self.idle_limit:
            if self.conn is not None:
                self.conn.close()
            self.conn = http.client.HTTPConnection(self.addr, timeout=30)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            reply = self.conn.getresponse()
            data = reply.read()
        except Exception:
            self.conn.close()
            self.conn = None
            raise
        self.last_used = time.monotonic()
        fields = [(k.lower(), v) for k, v in reply.getheaders() if k.lower() not in HOP_BY_HOP]
        return reply.status, fields, data


def split(data: bytes, rng: random.Random) -> list[bytes]:
    """Chunks as data frames arrive: mostly a few KiB, sometimes tiny ones that cut tags."""
    out, at = [], 0
    while at < len(data):
        size = rng.choice((1, 3, 7, 64, 500, 1400, 4096, 8192, 16384))
        out.append(data[at:at + size])
        at += size
    return out or [b""]


def _mutated(answer_common: ep.CommonResponse, original: bytes) -> bytes:
    mutation = answer_common.body_mutation
    if mutation.HasField("streamed_response"):
        raise Failure("protocol", "streamed_response outside FULL_DUPLEX_STREAMED")
    if mutation.HasField("body"):
        return mutation.body
    if mutation.HasField("clear_body"):
        return b""
    return original


class Exchange:
    """Drives one planned exchange; :meth:`run` returns its :class:`Result`."""

    def __init__(self, plan: Plan, sidecar: Sidecar, app: AppClient, rng: random.Random, on_answered=None):
        self.plan = plan
        self.on_answered = on_answered  # called once overlayd has answered the request headers
        self.sidecar = sidecar
        self.app = app
        self.rng = rng
        self.page = pages.page(plan.variant, plan.rid)
        self.overlay = configs.SERVE_OVERLAID.get(plan.host)
        self.result = Result("", True)
        self.answered = False
        self.stream: Stream | None = None

    # ------------------------------------------------------------------ entry
    def run(self) -> Result:
        generation, state, channel = self.sidecar.current()
        self.start_state = (generation, state)
        try:
            if channel is None or state == "down":
                raise SidecarFault("sidecar down: no stream can be opened")
            try:
                self.stream = Stream(channel, timeout=CALL_TIMEOUT)
            except ValueError as err:  # the channel was closed under us (restart)
                raise SidecarFault(f"stream not opened: {err}") from None
            self._drive()
        except SidecarFault as fault:
            self._on_fault(str(fault))
        except Failure as failure:
            self.result.ok, self.result.outcome, self.result.detail = False, failure.outcome, failure.detail
        finally:
            if self.stream is not None:
                self.stream.cancel()  # Envoy resets the stream at the end of every exchange (§1)
        return self.result

    # ------------------------------------------------------------------ stream I/O
    def _recv(self, phase: str) -> ep.ProcessingResponse:
        started = time.monotonic()
        try:
            answer = self.stream.recv(RECV_TIMEOUT, why=phase)
        except AssertionError as err:
            raise SidecarFault(str(err).split("; sent")[0]) from None
        waited = time.monotonic() - started
        self.result.overlayd_seconds += waited
        if waited > MESSAGE_TIMEOUT:
            self.result.slow_answers += 1
        self.answered = True
        got = answer.WhichOneof("response")
        if got != phase:
            raise Failure("protocol", f"a {phase} answer was due, got {got}: {str(answer)[:300]}")
        return answer

    def _collect_streamed(self, phase: str, until_trailers: bool) -> bytes:
        """FULL_DUPLEX_STREAMED: the ``streamed_response`` bytes up to ``end_of_stream`` (or, when
        trailers follow, up to the trailers answer)."""
        out = b""
        while True:
            started = time.monotonic()
            try:
                answer = self.stream.recv(RECV_TIMEOUT, why=f"{phase} (streamed)")
            except AssertionError as err:
                raise SidecarFault(str(err).split("; sent")[0]) from None
            self.result.overlayd_seconds += time.monotonic() - started
            got = answer.WhichOneof("response")
            if until_trailers and got == "response_trailers":
                return out
            if got != phase:
                raise Failure("protocol", f"FULL_DUPLEX {phase}: got a {got} answer after {len(out)} bytes")
            common = getattr(answer, phase).response
            if not common.body_mutation.HasField("streamed_response"):
                raise Failure("protocol", f"FULL_DUPLEX {phase} answered without streamed_response")
            streamed = common.body_mutation.streamed_response
            out += streamed.body
            if streamed.end_of_stream:
                if until_trailers:
                    raise Failure("protocol", "end_of_stream in a streamed answer although trailers follow")
                return out

    # ------------------------------------------------------------------ the exchange
    def _drive(self) -> None:
        plan, stream = self.plan, self.stream
        duplex = plan.req_mode == PM.FULL_DUPLEX_STREAMED or plan.resp_mode == PM.FULL_DUPLEX_STREAMED
        has_body = plan.method == "POST"
        extra = [("x-soak-rid", plan.rid), ("x-user", plan.user)]
        if has_body:
            extra += [("content-type", "application/x-www-form-urlencoded"),
                      ("content-length", str(len(plan.request_body)))]
        stream.send(request_headers(plan.host, path=plan.path, method=plan.method, eos=not has_body,
                                    config=protocol_config(plan.req_mode, plan.resp_mode), extra=extra))
        req_chunks = split(plan.request_body, self.rng) if has_body else []
        if has_body and plan.req_mode == PM.FULL_DUPLEX_STREAMED:  # sent without waiting (§1.3)
            for i, chunk in enumerate(req_chunks):
                stream.send(request_body(chunk, eos=i == len(req_chunks) - 1))
        first = self._recv("request_headers")
        if self.on_answered is not None:
            self.on_answered()
        forwarded_headers = {"host": plan.host, "x-soak-rid": plan.rid, "x-user": plan.user}
        if plan.upstream_delay:
            forwarded_headers["x-soak-delay"] = str(plan.upstream_delay)
        self._check_decision(first, forwarded_headers)

        override_ok = plan.allow_override and not duplex
        eff_req, eff_resp = plan.req_mode, plan.resp_mode
        send_resp_headers = True
        trailer_send = plan.trailer_send or plan.resp_mode == PM.FULL_DUPLEX_STREAMED
        if override_ok and first.HasField("mode_override"):
            mode = first.mode_override
            eff_req, eff_resp = mode.request_body_mode, mode.response_body_mode  # literal (§3)
            if mode.response_header_mode != PM.DEFAULT:
                send_resp_headers = mode.response_header_mode == PM.SEND
            if mode.response_trailer_mode != PM.DEFAULT:
                trailer_send = mode.response_trailer_mode == PM.SEND

        if plan.cancel == "after_request_headers":
            self.result.outcome = "cancelled after request headers"
            return  # the client went away: nothing reaches the app

        body = self._request_body(req_chunks, eff_req) if has_body else None
        status, fields, data = self.app.fetch(plan.method, plan.path, forwarded_headers, body)
        self.result.forwarded = True
        if status != self.page.status or data != self.page.body:
            raise Failure("soak", f"the legacy app answered {status} with {len(data)} bytes, not the page")

        if not send_resp_headers:  # Envoy sends nothing more; the body flows untouched
            self._finish(data, must_insert=False)
            return
        self._response(fields, data, eff_resp, override_ok, trailer_send)

    def _check_decision(self, first: ep.ProcessingResponse, forwarded: dict[str, str]) -> None:
        plan = self.plan
        model = None
        for option in first.request_headers.response.header_mutation.set_headers:
            forwarded[option.header.key.lower()] = (option.header.raw_value or option.header.value.encode()).decode()
            if option.header.key == "x-overlay-model":
                model = forwarded["x-overlay-model"]
        if self.overlay is None:
            mode = first.mode_override
            if model is not None or not first.HasField("mode_override") or mode.response_header_mode != PM.SKIP:
                raise Failure("wrong decision", f"host without overlay not passed through: {str(first)[:300]}")
            return
        name, models = self.overlay
        meta = MessageToDict(first.dynamic_metadata).get("overlayd", {})
        if model is None or model not in models or meta.get("overlay") != name or meta.get("model") != model:
            raise Failure("wrong decision", f"overlaid host {plan.host}: model header {model!r}, "
                          f"metadata {meta!r}, expected overlay {name} with one of {sorted(models)}")
        self.result.config_version = meta.get("config_version")

    def _request_body(self, chunks: list[bytes], eff_req: int) -> bytes:
        plan, stream = self.plan, self.stream
        original = plan.request_body
        if plan.req_mode == PM.FULL_DUPLEX_STREAMED:
            got = self._collect_streamed("request_body", until_trailers=False)
        elif eff_req == PM.STREAMED:
            for i, chunk in enumerate(chunks):
                stream.send(request_body(chunk, eos=i == len(chunks) - 1))
            got = b"".join(_mutated(self._recv("request_body").request_body.response, chunk) for chunk in chunks)
        elif eff_req in (PM.BUFFERED, PM.BUFFERED_PARTIAL):  # our request bodies fit the buffer
            stream.send(request_body(original, eos=True))
            got = _mutated(self._recv("request_body").request_body.response, original)
        else:
            got = original
        if got != original:
            raise Failure("altered", f"request body changed: {pages.first_difference(got, original)}")
        return got

    def _response(self, fields, data: bytes, eff_resp: int, override_ok: bool, trailer_send: bool) -> None:
        plan, stream = self.plan, self.stream
        chunks = split(data, self.rng)
        has_trailers = plan.trailers
        held = dict(fields)
        stream.send(ep.ProcessingRequest(response_headers=ep.HttpHeaders(
            headers=header_map([(":status", str(self.page.status)), *fields]), end_of_stream=False)))
        duplex = plan.resp_mode == PM.FULL_DUPLEX_STREAMED
        if duplex:  # body (and trailers) go out without waiting for any answer
            for i, chunk in enumerate(chunks):
                stream.send(_response_body(chunk, eos=i == len(chunks) - 1 and not has_trailers))
            if has_trailers:
                stream.send(_trailers())
        second = self._recv("response_headers")
        for name in second.response_headers.response.header_mutation.remove_headers:
            held.pop(name.lower(), None)
        if override_ok and second.HasField("mode_override"):
            eff_resp = second.mode_override.response_body_mode
            if second.mode_override.response_trailer_mode != PM.DEFAULT:
                trailer_send = second.mode_override.response_trailer_mode == PM.SEND

        if plan.cancel == "mid_body":
            if eff_resp == PM.STREAMED and len(chunks) > 1:
                half = chunks[:len(chunks) // 2]
                for chunk in half:
                    stream.send(_response_body(chunk, eos=False))
                for _ in half:
                    self._recv("response_body")
            self.result.outcome = "cancelled mid-body"
            return

        whole = True  # overlayd saw the body to its end
        if duplex:
            out = self._collect_streamed("response_body", until_trailers=has_trailers)
            if has_trailers:
                whole = False
        elif eff_resp == PM.NONE:
            out, whole = data, False
        elif eff_resp == PM.STREAMED:
            for i, chunk in enumerate(chunks):
                stream.send(_response_body(chunk, eos=i == len(chunks) - 1 and not has_trailers))
            out = b"".join(_mutated(self._recv("response_body").response_body.response, c) for c in chunks)
            # A body overlayd collects whole (JSON to enrich, gzip) that comes STREAMED is rewritten
            # only from its first message (README, "Bodies collected whole under ext_proc"): in more
            # than one message it must pass unchanged, not enriched.
            collected_whole = self.page.enrich or self.page.encoding is not None
            whole = not has_trailers and (len(chunks) == 1 or not collected_whole)
            self._trailers(has_trailers and trailer_send)
        elif eff_resp == PM.BUFFERED or (eff_resp == PM.BUFFERED_PARTIAL and len(data) <= PARTIAL_LIMIT):
            stream.send(_response_body(data, eos=not has_trailers))
            out = _mutated(self._recv("response_body").response_body.response, data)
            whole = not has_trailers
            if eff_resp == PM.BUFFERED and "content-length" in held and int(held["content-length"]) != len(out):
                raise Failure("content-length mismatch",
                              f"BUFFERED body mutated to {len(out)} bytes with content-length {held['content-length']} "
                              "still set (Envoy answers 500, §6)")
            self._trailers(has_trailers and trailer_send)
        elif eff_resp == PM.BUFFERED_PARTIAL:  # over the limit: what is queued goes, the rest passes
            queued, at = b"", 0
            while len(queued) <= PARTIAL_LIMIT:
                queued += chunks[at]
                at += 1
            stream.send(_response_body(queued, eos=False))
            out = _mutated(self._recv("response_body").response_body.response, queued) + data[len(queued):]
            whole = False
        else:
            raise Failure("protocol", f"unexpected effective response body mode {eff_resp}")
        self._finish(out, must_insert=whole)

    def _trailers(self, send: bool) -> None:
        if send:
            self.stream.send(_trailers())
            self._recv("response_trailers")

    def _finish(self, out: bytes, must_insert: bool) -> None:
        verdict = pages.verify(self.page, out, self.overlay is not None, must_insert=must_insert)
        if not verdict.ok:
            raise Failure("altered", verdict.detail)
        self.result.outcome = verdict.outcome
        if verdict.island is not None:
            name, models = self.overlay
            problem = pages.check_island(verdict.island, overlay=name, models=models, path=self.plan.path)
            if problem:
                raise Failure("island", problem)
            self.result.island = verdict.island.get("status")

    # ------------------------------------------------------------------ faults
    def _on_fault(self, message: str) -> None:
        generation, state, _ = self.sidecar.current()
        start_generation, start_state = self.start_state
        not_up = start_state != "up" or state != "up" or generation != start_generation
        duplex = self.plan.req_mode == PM.FULL_DUPLEX_STREAMED or self.plan.resp_mode == PM.FULL_DUPLEX_STREAMED
        result = self.result
        if self.answered:
            result.ok = False
            result.outcome = "cut mid-exchange" + (" (during drain)" if not_up else "")
            result.detail = message
        elif not_up:
            # Envoy's failure_mode_allow: the exchange goes on unprocessed; FULL_DUPLEX requires
            # failure_mode_allow false, so Envoy answers 500 itself.
            result.outcome = "fail-closed while down (FULL_DUPLEX)" if duplex else "fail-open while down"
            result.detail = message
        else:
            result.ok = False
            result.outcome = "no answer while up"
            result.detail = message
        if not result.forwarded and not duplex and self.plan.cancel != "after_request_headers" and result.ok:
            body = self.plan.request_body if self.plan.method == "POST" else None
            status, _, data = self.app.fetch(self.plan.method, self.plan.path,
                                             {"host": self.plan.host, "x-soak-rid": self.plan.rid}, body)
            result.forwarded = True
            if status != self.page.status or data != self.page.body:
                result.ok, result.outcome = False, "soak"
                result.detail = "the legacy app's fail-open answer is not the page"


def _response_body(data: bytes, eos: bool) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(response_body=ep.HttpBody(body=data, end_of_stream=eos))


def _trailers() -> ep.ProcessingRequest:
    return ep.ProcessingRequest(response_trailers=ep.HttpTrailers(
        trailers=base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key="x-app-checksum", raw_value=b"soak")])))
