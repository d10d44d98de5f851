"""An `openai` AIModel end to end: overlayd calls an OpenAI-compatible server (a fake that follows
the chat-completions API, on 127.0.0.1) with the overlay's rendered prompt and the API key from
the environment, puts its answer into the page, falls back to the fallback model when the
primary fails, and never writes the key to its logs."""
from __future__ import annotations

import http.server
import json
import os
import re
import threading

import grpc
import pytest

from extproc_helpers import CHANNEL_OPTIONS, PM, Stream, protocol_config, request_headers, response_body, response_headers
from overlayd_proc import OverlaydProcess, scrape

SECRET = "sk-test-6f1c0e4b-never-log-me"
PAGE = b"<html><head><title>t</title></head><body>x</body></html>"
ISLAND = re.compile(rb'id="overlayd-result">(.*?)</script>')


class FakeOpenAI:
    """POST /v1/chat/completions: 200 with a fixed answer, or the scripted failure status. Each
    request is kept (path, authorization, body, traceparent)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                outer.requests.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body,
                                       "traceparent": self.headers.get("traceparent")})
                if outer.status != 200:
                    payload = json.dumps({"error": {"message": "upstream broke", "type": "server_error"}}).encode()
                    code = outer.status
                else:
                    payload = json.dumps({
                        "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "From the fake: <b>hello</b>"}}],
                    }).encode()
                    code = 200
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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
spec:
  provider: openai
  baseURL: {base}
  model: gpt-4o-mini
  apiKey: {{env: OVERLAYD_TEST_OPENAI_KEY}}
  fallback: backup
---
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {{name: backup}}
spec: {{provider: mock}}
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {{name: crm}}
spec:
  hostApp: crm.example.com
  models: [{{name: gpt}}]
  prompt: {{template: "Explain {{{{path}}}} to {{{{user}}}}"}}
  userKey: {{header: x-user}}
  injection: {{latencyBudget: 3s}}
"""


def served_result(proc) -> dict:
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    try:
        stream = Stream(channel)
        stream.send(request_headers("crm.example.com", path="/accounts?id=7", extra=[("x-user", "carol")],
                                    config=protocol_config(response_body_mode=PM.STREAMED)))
        stream.recv(why="request_headers")
        stream.send(response_headers(200, eos=False, content_type="text/html"))
        stream.recv(why="response_headers")
        stream.send(response_body(PAGE, eos=True))
        body = stream.recv(why="response_body").response_body.response.body_mutation.body
        stream.cancel()
        return json.loads(ISLAND.search(body).group(1))
    finally:
        channel.close()


def start(tmp_path, fake) -> OverlaydProcess:
    path = tmp_path / "overlays.yaml"
    path.write_text(config(fake.base))
    os.environ["OVERLAYD_TEST_OPENAI_KEY"] = SECRET  # inherited by the child process
    try:
        return OverlaydProcess(path, extra_args=("--log-level", "trace")).start()
    finally:
        del os.environ["OVERLAYD_TEST_OPENAI_KEY"]


def test_the_page_gets_the_models_answer_and_the_key_stays_out_of_the_logs(tmp_path, fake):
    proc = start(tmp_path, fake)
    try:
        result = served_result(proc)
        assert result["status"] == "ready" and result["model"] == "gpt"
        assert result["text"] == "From the fake: <b>hello</b>"
        (call,) = fake.requests
        assert call["path"] == "/v1/chat/completions" and call["auth"] == f"Bearer {SECRET}"
        assert call["body"]["model"] == "gpt-4o-mini"
        assert call["body"]["messages"][-1] == {"role": "user", "content": "Explain /accounts to carol"}
        assert scrape(proc.admin_addr).value("overlayd_model_calls_total", model="gpt", result="ok") == 1
    finally:
        assert proc.stop() == 0
    assert SECRET not in proc.output()


def test_a_failing_primary_falls_back(tmp_path, fake):
    fake.status = 500
    proc = start(tmp_path, fake)
    try:
        result = served_result(proc)
        assert result["status"] == "ready" and result["model"] == "backup"
        assert "/accounts" in result["text"]  # the mock's sentences about the page
        assert len(fake.requests) == 1  # a 500 is not retried
    finally:
        assert proc.stop() == 0
    assert SECRET not in proc.output()
