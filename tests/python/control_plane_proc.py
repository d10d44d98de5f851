"""Run the real `overlayd control-plane` as a subprocess and talk to its JSON API.

Started as ``overlayd control-plane --listen 127.0.0.1:0 --data DIR --seed FILE --token-file F
--report-token-file G``; ready once stderr shows ``control plane listening on HOST:PORT``.
"""
from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from overlayd_proc import REPO_ROOT, overlayd_bin

LISTEN_RE = re.compile(r"control plane listening on (\S+)")
OPERATOR_TOKEN = "operator-token-0123456789abcdef"
REPORT_TOKEN = "report-token-0123456789abcdef00"

# The seed: one Canary overlay (80/20) and one Shadow overlay over two mock models.
SEED_YAML = """\
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: crm}
spec:
  hostApp: crm.example.com
  models: [{name: mock-fast, weight: 80}, {name: mock-smart, weight: 20}]
  strategy: Canary
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: erp}
spec:
  hostApp: erp.example.com
  models: [{name: mock-fast}, {name: mock-smart}]
  strategy: Shadow
---
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {name: mock-fast}
spec: {provider: mock}
---
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {name: mock-smart}
spec: {provider: mock}
"""


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class ControlPlane:
    """One `overlayd control-plane` process over a data directory (kept across restarts)."""

    def __init__(self, directory: Path, listen: str = "127.0.0.1:0", seed: bool = True, extra: tuple[str, ...] = ()):
        self.directory = directory
        self.data = directory / "data"
        self.token_file = directory / "operator.token"
        self.report_token_file = directory / "report.token"
        if not self.token_file.exists():
            self.token_file.write_text(OPERATOR_TOKEN + "\n")
            self.report_token_file.write_text(REPORT_TOKEN + "\n")
        seed_file = directory / "seed.yaml"
        seed_file.write_text(SEED_YAML)
        self.args = [str(overlayd_bin()), "control-plane", "--listen", listen, "--data", str(self.data),
                     "--token-file", str(self.token_file), "--report-token-file", str(self.report_token_file),
                     *(["--seed", str(seed_file)] if seed else []), *extra]
        self.proc: subprocess.Popen | None = None
        self.addr: str | None = None
        self._lines: list[str] = []
        self._changed = threading.Condition()

    def _drain(self, stream, lines: list[str]) -> None:
        """Appends to this run's own list: a restart's new lines never mix with the old ones."""
        for raw in iter(stream.readline, b""):
            with self._changed:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            lines.append("<closed>")
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "\n".join(self._lines)

    def start(self, timeout: float = 30) -> "ControlPlane":
        self._lines = lines = []
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        threading.Thread(target=self._drain, args=(self.proc.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = LISTEN_RE.search("\n".join(self._lines))
                if match:
                    self.addr = match.group(1)
                    return self
                if "<closed>" in self._lines or time.monotonic() > deadline:
                    raise AssertionError(f"control plane did not start: {' '.join(self.args)}\n{self.output()}")
                self._changed.wait(0.5)

    def stop(self, timeout: float = 10) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ HTTP

    def request(self, method: str, path: str, body=None, *, token: str | None = OPERATOR_TOKEN,
                headers: dict[str, str] | None = None, timeout: float = 10, connection=None) -> Reply:
        raw: bytes | None
        sent = dict(headers or {})
        if body is None:
            raw = None
        elif isinstance(body, (bytes, bytearray)):
            raw = bytes(body)
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
            sent.setdefault("content-type", "application/json")
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        host, port = self.addr.rsplit(":", 1)
        conn = connection or http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            conn.request(method, path, body=raw, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})
        finally:
            if connection is None:
                conn.close()

    def get(self, path: str, **kwargs) -> Reply:
        return self.request("GET", path, token=None, **kwargs)

    def version(self) -> int:
        return self.get("/v1/state").json["version"]

    def history(self) -> list[dict]:
        reply = self.get("/v1/history?limit=10000")
        assert reply.status == 200, reply.text
        return reply.json["versions"]
