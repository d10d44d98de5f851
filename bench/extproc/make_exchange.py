#!/usr/bin/env python3
"""Writes exchange30k.grpc: one whole overlaid exchange as three gRPC-framed ProcessingRequests in
one Process stream, as Envoy sends them for a page: request_headers (the shared bench's 12 headers,
:authority app.example.com, end_of_stream), response_headers (200, text/html, content-length) and
response_body (the shared bench's 30 KB page, end_of_stream; BUFFERED-style in one message).

Every server answers three messages: a CONTINUE server two CONTINUEs and (when it injects) a
body_mutation; overlayd decides the overlay, calls the (mock) model, waits for its result and
injects it. h2load sends the file as the request body of each stream.

    python3 bench/extproc/make_exchange.py OUT_DIR
"""
import os
import struct
import sys

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

sys.path.insert(0, os.environ.get("SHARED_BENCH", os.path.join(os.path.dirname(__file__), "../../../shared/bench")))
from make_bodies import REQUEST_HEADERS, grpc_frame, make_html  # noqa: E402


def headers(pairs):
    out = base_pb2.HeaderMap()
    for key, value in pairs:
        out.headers.add(key=key, raw_value=value.encode())
    return out


def main():
    out_dir = sys.argv[1]
    page = make_html()
    messages = [
        ep.ProcessingRequest(request_headers=ep.HttpHeaders(headers=headers(REQUEST_HEADERS), end_of_stream=True)),
        ep.ProcessingRequest(response_headers=ep.HttpHeaders(headers=headers([
            (":status", "200"), ("content-type", "text/html; charset=utf-8"), ("content-length", str(len(page)))]))),
        ep.ProcessingRequest(response_body=ep.HttpBody(body=page, end_of_stream=True)),
    ]
    path = os.path.join(out_dir, "exchange30k.grpc")
    with open(path, "wb") as f:
        for message in messages:
            f.write(grpc_frame(message.SerializeToString()))
    print(path)


if __name__ == "__main__":
    main()
