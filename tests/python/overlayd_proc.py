"""Run the real overlayd binary as a subprocess, and talk to its admin HTTP endpoint.

The binary is ``$OVERLAYD_BIN`` (default ``.build/debug/overlayd``, relative to the repo root).
It is started as::

    overlayd serve --config <file> --listen <addr> --admin 127.0.0.1:0 --drain-timeout 5

and is ready once its stderr has shown both ``ext_proc listening on <addr>`` and
``admin listening on <addr>``. stderr (and stdout) are drained by threads for the whole life
of the process, so the pipes never fill, and are kept for failure messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DRAIN_TIMEOUT_ARG = "5"

EXT_PROC_RE = re.compile(r"ext_proc listening on (\S+)")
ADMIN_RE = re.compile(r"admin listening on (\S+)")
_HOST_PORT_RE = re.compile(r"((?:\d{1,3}\.){3}\d{1,3}|\[[0-9a-fA-F:]+\]|localhost):(\d+)")

# The overlay configuration the suite runs against (the brief's example, multi-document YAML).
OVERLAID_HOST = "crm.example.com"
OVERLAY_CONFIG_YAML = """\
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: crm}
spec:
  hostApp: "crm.example.com"
  models: [{name: mock-a, weight: 100}]
  strategy: Canary
"""


def overlayd_bin() -> Path:
    raw = os.environ.get("OVERLAYD_BIN") or ".build/debug/overlayd"
    path = Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def _normalise_tcp(token: str) -> str:
    """``127.0.0.1:4321`` out of whatever the log printed (``[IPv4]127.0.0.1/127.0.0.1:4321,``...)."""
    match = None
    for match in _HOST_PORT_RE.finditer(token):
        pass
    if match is None:
        raise ValueError(f"no host:port in {token!r}")
    return f"{match.group(1)}:{match.group(2)}"


class OverlaydProcess:
    """One overlayd process. ``start()`` returns once it listens; ``stop()`` SIGTERMs it."""

    def __init__(self, config_path: Path | None, listen: str = "127.0.0.1:0", admin: str = "127.0.0.1:0",
                 extra_args: tuple[str, ...] = ()):
        """``config_path`` None: no ``--config`` (give ``--control-plane`` in ``extra_args``)."""
        self.binary = overlayd_bin()
        config_args = ["--config", str(config_path)] if config_path is not None else []
        self.args = [str(self.binary), "serve", *config_args, "--listen", listen,
                     "--admin", admin, "--drain-timeout", DRAIN_TIMEOUT_ARG, *extra_args]
        self.listen_arg = listen
        self.proc: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self.ext_proc_addr: str | None = None  # as logged
        self.admin_addr: str | None = None  # host:port
        self.returncode: int | None = None

    # ------------------------------------------------------------------ output

    def _drain(self, stream, label: str) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                self._lines.append(f"[{label}] {line}")
                self._changed.notify_all()
        stream.close()
        with self._changed:
            self._lines.append(f"[{label}] <closed>")
            self._changed.notify_all()

    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def describe(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else f"exited rc={self.proc and self.proc.poll()}"
        return f"overlayd ({' '.join(self.args)}) {state}; output so far:\n{self.output()}"

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = STARTUP_TIMEOUT) -> "OverlaydProcess":
        if not self.binary.exists():
            raise AssertionError(
                f"overlayd binary not found at {self.binary} (set OVERLAYD_BIN, or run `swift build` "
                "in the repo root first)")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=REPO_ROOT)
        for stream, label in ((self.proc.stderr, "stderr"), (self.proc.stdout, "stdout")):
            thread = threading.Thread(target=self._drain, args=(stream, label), daemon=True,
                                      name=f"overlayd-{label}")
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                stderr_text = "\n".join(l[len("[stderr] "):] for l in self._lines if l.startswith("[stderr] "))
                ext = EXT_PROC_RE.search(stderr_text)
                adm = ADMIN_RE.search(stderr_text)
                if ext and adm:
                    self.ext_proc_addr = ext.group(1)
                    self.admin_addr = _normalise_tcp(adm.group(1))
                    break
                remaining = deadline - time.monotonic()
                # Exited, and both pipes drained to the end: nothing more can arrive.
                exited = self.proc.poll() is not None and sum(l.endswith("] <closed>") for l in self._lines) >= 2
                if remaining <= 0 or exited:
                    break
                self._changed.wait(timeout=min(remaining, 0.5))
        if not (self.ext_proc_addr and self.admin_addr):
            reason = "exited early" if self.proc.poll() is not None else f"not ready after {timeout:.0f}s"
            self.kill()
            raise AssertionError(
                f"overlayd {reason}: expected stderr lines matching {EXT_PROC_RE.pattern!r} and "
                f"{ADMIN_RE.pattern!r}.\n{self.describe()}")
        return self

    @property
    def grpc_target(self) -> str:
        """The target to hand to grpc.insecure_channel."""
        assert self.ext_proc_addr is not None
        if self.listen_arg.startswith("unix:"):
            return self.listen_arg
        return _normalise_tcp(self.ext_proc_addr)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait at most ``timeout`` s; returns the exit code (kills on timeout)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"overlayd did not exit within {timeout}s of SIGTERM.\n{self.describe()}")
        self.returncode = self.proc.returncode
        for thread in self._threads:
            thread.join(timeout=5)
        return self.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# ---------------------------------------------------------------------- admin HTTP

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class HttpReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http_get(addr: str, path: str, timeout: float = 5.0) -> HttpReply:
    url = f"http://{addr}{path}"
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout) as resp:
            return HttpReply(resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()})
    except urllib.error.HTTPError as err:
        return HttpReply(err.code, err.read(), {k.lower(): v for k, v in err.headers.items()})


# ---------------------------------------------------------------------- Prometheus text

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass
class Metrics:
    samples: list[tuple[str, dict[str, str], float]]
    types: dict[str, str]
    text: str

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(labels, value) for n, labels, value in self.samples if n == name]

    def value(self, name: str, **labels: str) -> float | None:
        """Sum of the samples of ``name`` whose labels include ``labels``; None if there is none."""
        found = [v for lab, v in self.series(name) if all(lab.get(k) == want for k, want in labels.items())]
        return sum(found) if found else None

    def type_of(self, name: str) -> str | None:
        base = name[: -len("_total")] if name.endswith("_total") else name
        return self.types.get(name) or self.types.get(base)


def parse_prometheus(text: str) -> Metrics:
    samples: list[tuple[str, dict[str, str], float]] = []
    types: dict[str, str] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        match = _SAMPLE_RE.match(line)
        if not match:
            raise AssertionError(f"/metrics line {line_no} is not Prometheus text format: {line!r}")
        name, raw_labels, raw_value = match.groups()
        labels: dict[str, str] = {}
        if raw_labels:
            consumed = 0
            for lm in _LABEL_RE.finditer(raw_labels):
                if lm.start() != consumed:
                    break
                labels[lm.group(1)] = bytes(lm.group(2), "utf-8").decode("unicode_escape")
                consumed = lm.end()
            if consumed != len(raw_labels.rstrip()):
                raise AssertionError(f"/metrics line {line_no}: cannot parse labels {raw_labels!r}")
        value = float(raw_value.replace("Inf", "inf"))
        samples.append((name, labels, value))
    return Metrics(samples, types, text)


def scrape(addr: str, timeout: float = 5.0) -> Metrics:
    reply = http_get(addr, "/metrics", timeout=timeout)
    assert reply.status == 200, f"GET /metrics -> {reply.status}: {reply.text[:500]}"
    return parse_prometheus(reply.text)


def poll_metric(addr: str, name: str, predicate, *, timeout: float = 10.0, interval: float = 0.05,
                **labels: str) -> float | None:
    """Scrape until ``predicate(value)`` holds (value may be None); AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = scrape(addr).value(name, **labels)
        if predicate(last):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{name}{labels or ''} still {last!r} after {timeout}s of polling /metrics")
        time.sleep(interval)  # poll interval, bounded by the deadline above


def wait_until(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not within {timeout}s")


@dataclasses.dataclass
class ProxyProcess:
    """A running `overlayd proxy`: its process, its port, its admin address (`127.0.0.1:PORT`)
    and the log lines so far."""
    proc: subprocess.Popen
    port: int
    admin: str
    lines: list[str]

    def output(self) -> str:
        return "".join(self.lines)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@contextlib.contextmanager
def proxy_process(upstream: str, config: Path, *extra_args: str, timeout: float = STARTUP_TIMEOUT,
                  stop_timeout: float = STOP_TIMEOUT):
    """`overlayd proxy --upstream UPSTREAM --config CONFIG [EXTRA_ARGS]` on a free port of
    127.0.0.1 with its admin port on another (both read from the log lines `proxy listening on`
    and `admin listening on`); yields a ``ProxyProcess``. On exit it is sent SIGTERM and must exit
    0 within `stop_timeout` (graceful shutdown is part of what is tested)."""
    proc = subprocess.Popen(
        [str(overlayd_bin()), "proxy", "--upstream", upstream, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         "--config", str(config), *extra_args],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ports: dict[str, str] = {}
    ready = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if match := re.search(r"proxy listening on 127\.0\.0\.1:(\d+)", line):
                ports["proxy"] = match.group(1)
            if match := re.search(r"admin listening on \S*?(127\.0\.0\.1:\d+)", line):
                ports["admin"] = match.group(1)
            if len(ports) == 2:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(timeout) and len(ports) == 2 and proc.poll() is None, "".join(lines)
        yield ProxyProcess(proc, int(ports["proxy"]), ports["admin"], lines)
    finally:
        proc.terminate()
        try:
            code = proc.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("overlayd proxy did not stop on SIGTERM:\n" + "".join(lines))
    assert code == 0, "".join(lines)


@contextlib.contextmanager
def running_proxy(upstream: str, config: Path, timeout: float = STARTUP_TIMEOUT, stop_timeout: float = STOP_TIMEOUT,
                  extra_args: tuple[str, ...] = ()):
    """``proxy_process``, yielding only the proxy's port."""
    with proxy_process(upstream, config, *extra_args, timeout=timeout, stop_timeout=stop_timeout) as proxy:
        yield proxy.port
