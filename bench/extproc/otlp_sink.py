#!/usr/bin/env python3
"""An OTLP/HTTP sink for bench/extproc/tracing.sh: reads each POST to completion, answers 200 with
an empty body (an empty ExportTraceServiceResponse), keeps nothing but a count of requests, which
it writes to COUNT_FILE on every request. Listens on 127.0.0.1:PORT until killed.

    python3 bench/extproc/otlp_sink.py PORT COUNT_FILE
"""
import http.server
import sys
import threading

port, count_file = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
count = 0


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
        with lock:
            count += 1
            with open(count_file, "w") as out:
                out.write(f"{count}\n")


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)
server.daemon_threads = True
server.serve_forever()
