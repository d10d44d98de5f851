"""overlayd processes started by the soak, and what /proc says about them.

:class:`Overlayd` starts one ``overlayd serve`` or ``overlayd proxy`` on 127.0.0.1 port 0, reads
its addresses from the log lines (``ext_proc listening on``, ``proxy listening on``, ``admin
listening on``), writes its whole log to a file and keeps the last lines for failure messages.
It is stopped with SIGTERM (exit status and time kept) or killed, always by its own PID.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_ADDR = r"(?:\S*?)(127\.0\.0\.1:\d+)"
LISTEN_RES = {
    "ext_proc": re.compile(r"ext_proc listening on " + _ADDR),
    "proxy": re.compile(r"proxy listening on " + _ADDR),
    "admin": re.compile(r"admin listening on " + _ADDR),
}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Overlayd:
    def __init__(self, name: str, binary: Path, args: list[str], log_dir: Path, env: dict[str, str]):
        self.name = name
        self.args = [str(binary), *args]
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.addrs: dict[str, str] = {}
        self.tail: collections.deque[str] = collections.deque(maxlen=60)
        self.lines = 0
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self.started_at = 0.0
        self.stopped_at: float | None = None
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, needs: tuple[str, ...], timeout: float = 60.0) -> "Overlayd":
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=self.env)
        self.started_at = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"{self.name}-log")
        self._reader.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(k in self.addrs for k in needs):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self.kill()
                    raise RuntimeError(f"{self.name} did not start ({' '.join(self.args)}):\n" + self.last_lines())
                self._cond.wait(min(left, 0.5))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with open(self.log_path, "ab") as log:
            for raw in iter(self.proc.stderr.readline, b""):
                log.write(raw)
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._cond:
                    self.lines += 1
                    self.tail.append(line)
                    for key, pattern in LISTEN_RES.items():
                        if key not in self.addrs and (m := pattern.search(line)):
                            self.addrs[key] = m.group(1)
                    self._cond.notify_all()
                log.flush()

    def last_lines(self, n: int = 30) -> str:
        with self._cond:
            return "\n".join(list(self.tail)[-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM (graceful drain), without waiting."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.stopped_at = time.monotonic()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.returncode

    def stop(self, timeout: float) -> int | None:
        """SIGTERM and wait; killed (and None returned) if it does not exit in time."""
        self.terminate()
        code = self.wait(timeout)
        if code is None:
            self.kill()
        return code

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    # -- admin endpoint
    def admin_get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        url = f"http://{self.addrs['admin']}{path}"
        try:
            with _OPENER.open(url, timeout=timeout) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()


@dataclass
class Sample:
    at: float  # seconds since the soak started
    rss_kb: int
    fds: int
    threads: int


def sample(pid: int, at: float) -> Sample | None:
    """RSS, open fds and threads of ``pid`` from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    return Sample(at, rss, fds, threads)


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prometheus_values(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric family in Prometheus text (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            labels = key[len(name):]
            try:
                out[labels or "{}"] = float(value)
            except ValueError:
                pass
    return out


_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
               "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "04": "FIN_WAIT1", "05": "FIN_WAIT2"}


def fd_breakdown(pid: int, ports: dict[int, str]) -> dict[str, int]:
    """Open fds of ``pid`` by kind; TCP sockets by the peer they talk to (``ports`` names the
    soak's own listeners) and state, e.g. ``tcp legacy-app ESTABLISHED``."""
    sockets: dict[str, tuple[int, int, str]] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
                    sockets[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16),
                                      _TCP_STATES.get(state, state))
        except FileNotFoundError:
            pass
    out: collections.Counter[str] = collections.Counter()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return {}
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inode = target[8:-1]
            if inode in sockets:
                local, remote, state = sockets[inode]
                peer = ports.get(remote) or (f"client of :{local}" if state != "LISTEN" else f"listen :{local}")
                out[f"tcp {peer} {state}"] += 1
            else:
                out["socket (other)"] += 1
        elif target.startswith("anon_inode:"):
            out[target] += 1
        elif target.startswith("pipe:"):
            out["pipe"] += 1
        else:
            out["file"] += 1
    return dict(out)
