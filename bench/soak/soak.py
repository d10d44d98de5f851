#!/usr/bin/env python3
"""Fault soak (issue 19, part 3): real overlayd processes under mixed traffic while everything
around them flaps, every exchange checked.

  soak.py [--minutes 15] [--bin PATH] [--out soak.json] [--extproc-rate 40] [--proxy-rate 40]

What runs (all on 127.0.0.1, ports picked by the kernel):

* ``overlayd serve --config FILE`` (ext_proc); FILE is rewritten every 5 s, valid variants
  alternating with invalid ones that must be rejected (``/config`` is checked after each);
* ``overlayd proxy --upstream APP --control-plane URL``; the fake control plane cycles normal,
  down, 500, garbage, oversized (20 MB), hanging; the proxy's active version must always be one of
  the valid documents;
* a fake OpenAI-compatible backend used by both (normal, down, slow, 500, 429 + Retry-After,
  garbage JSON, truncated SSE), besides mock models;
* the legacy app (``fakes.LegacyApp``), which counts every request id.

Traffic: Envoy-emulated ext_proc exchanges (``envoy.py``: every body mode, pass-through and
overlaid hosts, HTML and JSON, cancellations) and HTTP/1.1 GETs through the proxy (some closed
mid-response). Each exchange's bytes are compared with the page (one insertion at the right
place, or none), every request id must reach the app exactly once (or not at all when the client
went away first). In the middle the ext_proc server is SIGTERMed while traffic runs (in-flight
exchanges must finish) and started again; exchanges meanwhile are Envoy's fail-open.

Every 10 s /proc gives RSS, fds and threads of each overlayd; after the warm-up they must stay
within 10 %. The summary is printed as markdown, the full data written as JSON; the exit status
is 1 when any check failed. The processes started here are stopped by PID on exit and Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO / "tests" / "python")]

import grpc  # noqa: E402

import configs  # noqa: E402
import envoy_emulator as envoy  # noqa: E402
import fakes  # noqa: E402
import procs  # noqa: E402
import traffic  # noqa: E402
from extproc_helpers import CHANNEL_OPTIONS  # noqa: E402

DRAIN_TIMEOUT = 10.0
HELD = 8  # exchanges surely in flight at the SIGTERM: their page takes HELD_DELAY s at the app
HELD_DELAY = 2.0
CONFIG_PERIOD = 5.0
MODEL_PERIOD = 8.0
PLANE_PERIOD = 8.0
SAMPLE_PERIOD = 10.0
FLAT_TOLERANCE = 0.10
# A 1-thread or few-fd swing of a small count is not growth: spreads within these absolute slacks
# pass too (each is also reported as a share).
FLAT_SLACK = {"rss_kb": 0, "fds": 8, "threads": 2}
CLOSE_WAIT_LIMIT = 10  # sockets whose peer has closed, still held by overlayd at one sample
API_KEY = "sk-soak-not-a-real-key"


# ------------------------------------------------------------------------------------------- records


class Record:
    """Everything the soak learns, thread-safe. Failures keep their details (the first 200)."""

    def __init__(self, started: float):
        self.started = started
        self.lock = threading.Lock()
        self.outcomes: collections.Counter = collections.Counter()  # (front, outcome) -> n
        self.by_mode: collections.Counter = collections.Counter()  # (resp mode, outcome) -> n
        self.islands: collections.Counter = collections.Counter()  # (front, status) -> n
        self.sent: collections.Counter = collections.Counter()  # front -> exchanges
        self.passed: collections.Counter = collections.Counter()
        self.failed: collections.Counter = collections.Counter()  # kind -> n
        self.failures: list[dict] = []
        self.failure_groups: collections.Counter = collections.Counter()
        self.failed_with_trailers: collections.Counter = collections.Counter()  # outcome -> n of them
        self.slow_answers = 0
        self.latency: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        self.expected: dict[str, tuple[int, str, str]] = {}  # rid -> (count the app must see, front, host)
        self.versions_seen: collections.Counter = collections.Counter()
        self.events: list[dict] = []
        self.resources: dict[str, list[procs.Sample]] = collections.defaultdict(list)
        self.config_checks: collections.Counter = collections.Counter()
        self.plane_checks: collections.Counter = collections.Counter()
        self.fd_kinds: dict[str, dict[str, int]] = {}  # process -> fds by kind at the last sample
        self.close_wait: dict[str, tuple[int, dict]] = {}  # process -> (most CLOSE_WAIT sockets, fds then)
        self.inflight: dict[str, float] = {}
        self.drain_watch: set[str] | None = None
        self.drain_outcomes: collections.Counter = collections.Counter()

    def now(self) -> float:
        return time.monotonic() - self.started

    def event(self, what: str, **data) -> None:
        with self.lock:
            self.events.append({"at": round(self.now(), 2), "event": what, **data})

    def fail(self, kind: str, detail: str, **context) -> None:
        """Counts a failure; the first 20 of each kind (apart for exchanges with and without
        response trailers, so a rare one is not hidden behind a frequent one) are kept in full."""
        group = kind + (" [response trailers]" if "trailers=True" in context.get("exchange", "") else "")
        with self.lock:
            self.failed[kind] += 1
            self.failure_groups[group] += 1
            if self.failure_groups[group] <= 20:
                self.failures.append({"at": round(self.now(), 2), "kind": kind, "group": group, "detail": detail,
                                      **context})

    def exchange(self, front: str, rid: str, host: str, describe: str, result: envoy.Result, mode: str | None,
                 overlaid: bool, started: float, slow_page: bool = False) -> None:
        """Counts one finished exchange; ``slow_page``: the app delayed it (kept out of the latency
        figures, which are about overlayd)."""
        minute = int(max(0.0, started - self.started) // 60)
        with self.lock:
            self.sent[front] += 1
            self.outcomes[(front, result.outcome)] += 1
            if mode:
                self.by_mode[(mode, result.outcome)] += 1
            if result.island:
                self.islands[(front, result.island)] += 1
            self.slow_answers += result.slow_answers
            self.expected[rid] = (1 if result.forwarded else 0, front, host)
            if result.config_version:
                self.versions_seen[result.config_version] += 1
            if result.outcome not in ("fail-open while down", "fail-closed while down (FULL_DUPLEX)") and not slow_page:
                kind = f"{front} {'overlaid' if overlaid else 'pass-through'}"
                self.latency[(kind, minute)].append(result.overlayd_seconds)
            if self.drain_watch is not None and rid in self.drain_watch:
                self.drain_outcomes[result.outcome] += 1
            if result.ok:
                self.passed[front] += 1
        if not result.ok:
            self.fail(result.outcome, result.detail, front=front, exchange=describe)
            with self.lock:
                self.failed_with_trailers[result.outcome] += "trailers=True" in describe


# ------------------------------------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args):
        self.args = args
        self.binary = Path(args.bin).resolve()
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayd-soak-"))
        self.stop = threading.Event()
        self.record = Record(time.monotonic())
        self.env = {**os.environ, configs.KEY_ENV: API_KEY}
        self.started: list[procs.Overlayd] = []
        self.sidecar = envoy.Sidecar()
        self.serve: procs.Overlayd | None = None
        self.serve_generation = 0
        self.cfg_lock = threading.Lock()
        self.cfg_index = 0
        self.cfg_current: configs.Variant | None = None
        self.last_valid: configs.Variant | None = None
        self.valid_versions: set[str] = set()
        self.threads: list[threading.Thread] = []

    # -------------------------------------------------------------- processes
    def _overlayd(self, name: str, args: list[str], needs: tuple[str, ...]) -> procs.Overlayd:
        proc = procs.Overlayd(name, self.binary, args, self.tmp, self.env)
        self.started.append(proc)
        return proc.start(needs)

    def _start_serve(self) -> None:
        self.serve_generation += 1
        serve = self._overlayd(f"serve-{self.serve_generation}", [
            "serve", "--config", str(self.config_path), "--config-poll-interval", "0.5",
            "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--drain-timeout", str(DRAIN_TIMEOUT)],
            ("ext_proc", "admin"))
        self._wait_ready(serve)
        channel = grpc.insecure_channel(serve.addrs["ext_proc"], options=CHANNEL_OPTIONS)
        grpc.channel_ready_future(channel).result(timeout=10)
        self.serve = serve
        self.sidecar.set("up", channel, new_generation=True)
        self.record.event("ext_proc up", pid=serve.pid, address=serve.addrs["ext_proc"], name=serve.name)

    def _wait_ready(self, proc: procs.Overlayd, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status, body = proc.admin_get("/readyz")
            if status == 200:
                return
            if time.monotonic() > deadline or not proc.alive():
                raise RuntimeError(f"{proc.name} not ready: /readyz {status} {body[:200]!r}\n{proc.last_lines()}")
            self.stop.wait(0.1)  # polling with a deadline

    def _write_config(self, variant: configs.Variant) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(variant.text)
        os.replace(tmp, self.config_path)
        self.cfg_current = variant
        if variant.valid:
            self.last_valid = variant
            self.valid_versions.add(configs.content_version(variant.text))

    # -------------------------------------------------------------- setup
    def setup(self) -> None:
        self.app = fakes.LegacyApp(seed=self.args.seed)
        self.app_addr = f"127.0.0.1:{self.app.port}"
        self.model = fakes.FlappingOpenAI()
        self.cycle = configs.serve_cycle(self.model.base)
        self.proxy_docs = configs.proxy_documents(self.model.base)
        self.proxy_versions = {configs.content_version(d) for d in self.proxy_docs}
        self.plane = fakes.FlappingControlPlane(self.proxy_docs)
        self.port_names = {self.app.port: "legacy-app", self.model.port: "model-backend",
                           self.plane.port: "control-plane"}
        self.config_path = self.tmp / "overlays.yaml"
        self._write_config(self.cycle[0])
        self.cfg_index = 1
        self._start_serve()
        self.proxy = self._overlayd("proxy", [
            "proxy", "--upstream", f"http://{self.app_addr}", "--control-plane", self.plane.url,
            "--control-plane-interval", "1", "--control-plane-timeout", "2", "--control-plane-backoff", "0.5",
            "--control-plane-max-backoff", "2", "--state-dir", str(self.tmp / "proxy-state"),
            "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--drain-timeout", str(DRAIN_TIMEOUT),
            "--upstream-timeout", "10"], ("proxy", "admin"))
        self._wait_ready(self.proxy)
        self.record.event("proxy up", pid=self.proxy.pid, address=self.proxy.addrs["proxy"])

    # -------------------------------------------------------------- periodic tasks
    def _every(self, name: str, period: float, task, first: float | None = None) -> None:
        def loop():
            due = time.monotonic() + (period if first is None else first)
            while not self.stop.wait(max(0.0, due - time.monotonic())):
                try:
                    task()
                except Exception as err:  # a task failing is a soak failure, reported with its trace
                    self.record.fail("soak task", f"{name}: {err!r}\n{traceback.format_exc()[-1500:]}")
                due += period
        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def flap_config(self) -> None:
        with self.cfg_lock:
            variant = self.cycle[self.cfg_index % len(self.cycle)]
            self.cfg_index += 1
            self._write_config(variant)
            want_version = configs.content_version(self.last_valid.text)
            want_result = "applied" if variant.valid else "rejected"
        generation, state, _ = self.sidecar.current()
        serve = self.serve
        if state != "up":
            self.record.config_checks["skipped (sidecar restarting)"] += 1
            return
        deadline = time.monotonic() + 3.0
        report = {}
        while time.monotonic() < deadline:
            status, body = serve.admin_get("/config")
            report = json.loads(body) if status == 200 else {"status": status}
            if report.get("version") == want_version and report.get("lastResult") == want_result:
                if not variant.valid and not (report.get("lastRejection") or {}).get("problems"):
                    break
                self.record.config_checks["ok"] += 1
                return
            if self.stop.wait(0.1):
                return
        if self.sidecar.current()[:2] != (generation, "up"):
            self.record.config_checks["skipped (sidecar restarting)"] += 1
            return
        self.record.config_checks["failed"] += 1
        self.record.fail("config reload", f"after writing '{variant.name}' /config should show version {want_version} "
                         f"and lastResult {want_result} within 3 s; it shows {json.dumps(report)[:600]}")

    def flap_model(self) -> None:
        modes = fakes.FlappingOpenAI.MODES
        index = getattr(self, "_model_index", 0) + 1
        self._model_index = index
        self.model.set_mode(modes[index % len(modes)])
        self.record.event("model backend", mode=self.model.mode)

    def flap_plane(self) -> None:
        modes = fakes.FlappingControlPlane.MODES
        index = getattr(self, "_plane_index", 0) + 1
        self._plane_index = index
        self.plane.set_mode(modes[index % len(modes)])
        self.record.event("control plane", mode=self.plane.mode)

    def check_proxy_config(self) -> None:
        status, body = self.proxy.admin_get("/config")
        report = json.loads(body) if status == 200 else {}
        if report.get("version") in self.proxy_versions:
            self.record.plane_checks["ok"] += 1
        else:
            self.record.plane_checks["failed"] += 1
            self.record.fail("proxy config", f"proxy /config version {report.get('version')!r} is not one of the valid "
                             f"documents {sorted(self.proxy_versions)}: {body[:400]!r}")
        ready, _ = self.proxy.admin_get("/readyz")
        if ready != 200:
            self.record.fail("proxy readiness", f"proxy /readyz {ready} while its last good config serves")

    def sample(self) -> None:
        at = self.record.now()
        for proc in self.started:
            if proc.stopped_at is not None:
                continue
            if not proc.alive():
                if proc is self.serve and self.sidecar.current()[1] != "up":
                    continue  # being restarted
                proc.stopped_at = time.monotonic()
                self.record.fail("crash", f"{proc.name} (pid {proc.pid}) exited with {proc.proc.returncode}:\n"
                                 f"{proc.last_lines()}")
                if proc is self.serve:
                    self.sidecar.set("down", None)
                continue
            found = procs.sample(proc.pid, at)
            if found is not None:
                kinds = procs.fd_breakdown(proc.pid, self.port_names)
                close_wait = sum(n for kind, n in kinds.items() if kind.endswith("CLOSE_WAIT"))
                with self.record.lock:
                    self.record.resources[proc.name].append(found)
                    self.record.fd_kinds[proc.name] = kinds
                    if close_wait > self.record.close_wait.get(proc.name, (0, {}))[0]:
                        self.record.close_wait[proc.name] = (close_wait, kinds)
        own = procs.sample(os.getpid(), at)
        with self.record.lock:
            self.record.resources["soak (this script)"].append(own)
        self.record.event("soak cpu", seconds=round(procs.cpu_seconds(), 1))

    def _hold_exchanges(self) -> list[threading.Thread]:
        """Starts HELD exchanges whose page takes HELD_DELAY s at the app, and returns once
        overlayd has answered each one's request headers: they are in flight for the SIGTERM."""
        rng = random.Random(self.args.seed * 3000)
        answered = threading.Semaphore(0)
        threads = []
        for i in range(HELD):
            plan = dataclasses.replace(  # overlaid hosts, every body mode: the whole path runs during the drain
                traffic.extproc_plan(rng, 0.0), host=list(configs.SERVE_OVERLAID)[i % len(configs.SERVE_OVERLAID)],
                variant=("std", "obj", "big")[i % 3], resp_mode=list(envoy.MODES.values())[i % len(envoy.MODES)],
                cancel=None, upstream_delay=HELD_DELAY)
            app = envoy.AppClient(self.app_addr, idle_limit=fakes.LegacyApp.IDLE_TIMEOUT / 2)
            thread = threading.Thread(target=self._extproc_exchange, args=(plan, app, rng, answered.release),
                                      name=f"held-{i}", daemon=True)
            thread.start()
            threads.append(thread)
        for _ in threads:
            if not answered.acquire(timeout=10):
                self.record.fail("drain", "an exchange meant to be in flight at SIGTERM got no first answer in 10 s")
                break
        return threads

    def restart_sidecar(self) -> None:
        """SIGTERM the ext_proc server under traffic (with HELD exchanges surely in flight), wait
        for its drain, start a new one."""
        old = self.serve
        _, _, old_channel = self.sidecar.current()
        held = self._hold_exchanges()
        with self.record.lock:
            self.record.drain_watch = set(self.record.inflight)
            watched = len(self.record.drain_watch)
        self.sidecar.set("draining")
        sent_at = time.monotonic()
        old.terminate()
        self.record.event("SIGTERM ext_proc", pid=old.pid, in_flight=watched)
        code = old.wait(DRAIN_TIMEOUT + 10)
        drained = time.monotonic() - sent_at
        if code is None:
            old.kill()
            self.record.fail("drain", f"{old.name} did not exit within {DRAIN_TIMEOUT + 10:.0f} s of SIGTERM")
        elif code != 0:
            self.record.fail("drain", f"{old.name} exited with {code} after SIGTERM:\n{old.last_lines()}")
        elif drained > DRAIN_TIMEOUT + 2:
            self.record.fail("drain", f"{old.name} took {drained:.1f} s to exit, --drain-timeout is {DRAIN_TIMEOUT:g}")
        self.sidecar.set("down", None)
        old_channel.close()
        self.record.event("ext_proc exited", code=code, drain_seconds=round(drained, 3))
        with self.cfg_lock:  # start on a valid file (an invalid one would serve pass-through: not this test)
            if not self.cfg_current.valid:
                self._write_config(self.last_valid)
            self._start_serve()
        for thread in held:
            thread.join(timeout=30)
        self.restart_info = {"sigterm_at": round(sent_at - self.record.started, 2), "in_flight": watched,
                             "held_with_slow_page": HELD,
                             "exit_code": code, "drain_seconds": round(drained, 3),
                             "down_seconds": round(time.monotonic() - sent_at, 3)}

    # -------------------------------------------------------------- traffic
    def _extproc_exchange(self, plan: envoy.Plan, app: envoy.AppClient, rng: random.Random,
                          on_answered=None) -> None:
        started = time.monotonic()
        with self.record.lock:
            self.record.inflight[plan.rid] = started
        try:
            result = envoy.Exchange(plan, self.sidecar, app, rng, on_answered).run()
        except Exception as err:  # the soak's own bug, or the app unreachable: reported, never hidden
            result = envoy.Result("soak", False, f"{err!r}\n{traceback.format_exc()[-1200:]}")
        finally:
            with self.record.lock:
                self.record.inflight.pop(plan.rid, None)
        self.record.exchange("ext_proc", plan.rid, plan.host, plan.describe(), result,
                             envoy.MODE_NAMES[plan.resp_mode], plan.host in configs.SERVE_OVERLAID, started,
                             bool(plan.upstream_delay))

    def _extproc_worker(self, index: int, pacer: traffic.Pacer) -> None:
        rng = random.Random(self.args.seed * 1000 + index)
        app = envoy.AppClient(self.app_addr, idle_limit=fakes.LegacyApp.IDLE_TIMEOUT / 2)
        while pacer.wait_turn():
            self._extproc_exchange(traffic.extproc_plan(rng, self.args.trailers_share), app, rng)

    def _proxy_worker(self, index: int, pacer: traffic.Pacer) -> None:
        rng = random.Random(self.args.seed * 2000 + index)
        client = traffic.ProxyClient(self.proxy.addrs["proxy"], rng)
        while pacer.wait_turn():
            plan = traffic.proxy_plan(rng)
            started = time.monotonic()
            try:
                result = client.run(plan)
            except Exception as err:
                result = envoy.Result("soak", False, f"{err!r}\n{traceback.format_exc()[-1200:]}", forwarded=True)
            self.record.exchange("proxy", plan.rid, plan.host, plan.describe(), result, None,
                                 plan.host in configs.PROXY_OVERLAID, started, bool(plan.upstream_delay))

    def run(self) -> None:
        args = self.args
        seconds = args.minutes * 60
        self.setup()
        self.record.started = time.monotonic()
        self.restart_info = None
        self._every("config", CONFIG_PERIOD, self.flap_config)
        self._every("model", MODEL_PERIOD, self.flap_model)
        self._every("plane", PLANE_PERIOD, self.flap_plane, first=PLANE_PERIOD / 2)
        self._every("sample", SAMPLE_PERIOD, self.sample, first=0.0)
        self._every("proxy-config", SAMPLE_PERIOD, self.check_proxy_config, first=SAMPLE_PERIOD / 2)
        restart = threading.Timer(seconds * args.restart_at, self._guarded(self.restart_sidecar, "restart"))
        restart.daemon = True
        restart.start()
        workers = []
        for front, rate, count, target in (("ext_proc", args.extproc_rate, args.workers, self._extproc_worker),
                                           ("proxy", args.proxy_rate, args.workers, self._proxy_worker)):
            pacer = traffic.Pacer(rate, self.stop)
            for i in range(count):
                thread = threading.Thread(target=target, args=(i, pacer), name=f"{front}-{i}", daemon=True)
                thread.start()
                workers.append(thread)
        self.stop.wait(seconds)
        self.stop.set()
        restart.cancel()
        for thread in workers:
            thread.join(timeout=60)
            if thread.is_alive():
                self.record.fail("soak", f"worker {thread.name} still busy 60 s after the end")
        for thread in self.threads:
            thread.join(timeout=30)

    def _guarded(self, task, name: str):
        def run():
            try:
                task()
            except Exception as err:
                self.record.fail("soak task", f"{name}: {err!r}\n{traceback.format_exc()[-1500:]}")
        return run

    # -------------------------------------------------------------- end
    def finish(self) -> dict:
        """Final checks: request ids at the app, metrics, graceful stops; returns the JSON data."""
        rec = self.record
        lost, doubled, unexpected = [], [], []
        with self.app.count_lock:
            counts = dict(self.app.counts)
            models = dict(self.app.models)
        for rid, (want, front, host) in rec.expected.items():
            got = counts.get(rid, 0)
            if want == 1 and got == 0:
                lost.append(rid)
                rec.fail("lost", f"{front} request {rid} ({host}) never reached the app")
            elif got > 1:
                doubled.append(rid)
                rec.fail("doubled", f"{front} request {rid} ({host}) reached the app {got} times")
            elif want == 0 and got == 1:
                unexpected.append(rid)
                rec.fail("doubled", f"{front} request {rid} ({host}) reached the app although the client "
                         "went away before Envoy would forward it")
            if front == "proxy" and got:
                overlay = configs.PROXY_OVERLAID.get(host)
                model = models.get(rid)
                if (overlay is None) != (model is None) or (overlay and model not in overlay[1]):
                    rec.fail("model header", f"proxy request {rid} to {host} reached the app with "
                             f"x-overlay-model {model!r}")
        strays = [rid for rid in counts if rid not in rec.expected]
        if strays:
            rec.fail("unknown request", f"{len(strays)} request ids at the app the soak never sent: {strays[:5]}")
        bad_versions = {v: n for v, n in rec.versions_seen.items() if v not in self.valid_versions}
        if bad_versions:
            rec.fail("config version", f"exchanges served by versions that were never valid: {bad_versions}")

        metrics = {}
        for proc in (self.serve, self.proxy):
            if proc is not None and proc.alive():
                status, body = proc.admin_get("/metrics")
                text = body.decode("utf-8", "replace")
                metrics[proc.name] = {name: procs.prometheus_values(text, name) for name in (
                    "overlayd_extproc_errors_total", "overlayd_config_reloads_total",
                    "overlayd_control_plane_fetches_total", "overlayd_model_calls_total",
                    "overlayd_injections_total", "overlayd_proxy_upstream_errors_total",
                    "overlayd_proxy_upstream_retries_total", "overlayd_proxy_client_aborts_total",
                    "overlayd_shadow_jobs_total", "overlayd_decisions_total")}
        errors = sum(metrics.get(self.serve.name, {}).get("overlayd_extproc_errors_total", {}).values())
        if errors:
            rec.fail("ext_proc protocol errors", f"overlayd_extproc_errors_total = {errors}: "
                     f"{metrics[self.serve.name]['overlayd_extproc_errors_total']}")
        stops = {}
        for proc in (self.serve, self.proxy):
            if proc is not None and proc.alive():
                began = time.monotonic()
                code = proc.stop(DRAIN_TIMEOUT + 10)
                stops[proc.name] = {"exit_code": code, "seconds": round(time.monotonic() - began, 2)}
                if code != 0:
                    rec.fail("stop", f"{proc.name} exited with {code} on SIGTERM:\n{proc.last_lines()}")
        if self.restart_info is None:
            rec.fail("drain", "the ext_proc server was not restarted (run too short?)")
        elif rec.drain_outcomes:
            cut = sum(n for outcome, n in rec.drain_outcomes.items() if outcome.startswith("cut"))
            if cut:
                rec.fail("drain", f"{cut} exchanges in flight at SIGTERM were cut")
        for name, (most, kinds) in rec.close_wait.items():
            if most > CLOSE_WAIT_LIMIT:
                rec.fail("CLOSE_WAIT sockets", f"{name} held {most} TCP sockets whose peer had closed (CLOSE_WAIT) "
                         f"at one sample; its fds then: {kinds}")
        if fakes._Server.unexpected_errors:
            rec.fail("soak", f"{fakes._Server.unexpected_errors} unexpected errors in the fake servers' handlers")
        resources = self.resource_verdicts()
        for name, row in resources.items():
            if row.get("verdict") == "NOT FLAT":
                rec.fail("resources", f"{name}: {row}; fds by kind at the end: {rec.fd_kinds.get(name)}")
        return {
            "minutes": self.args.minutes, "binary": str(self.binary), "seed": self.args.seed, "log_dir": str(self.tmp),
            "sent": dict(rec.sent), "passed": dict(rec.passed),
            "outcomes": {f"{f} | {o}": n for (f, o), n in sorted(rec.outcomes.items())},
            "by_response_body_mode": {f"{m} | {o}": n for (m, o), n in sorted(rec.by_mode.items())},
            "islands": {f"{f} | {s}": n for (f, s), n in sorted(rec.islands.items())},
            "failed": dict(rec.failed), "failures": rec.failures,
            "failed_with_response_trailers": dict(rec.failed_with_trailers),
            "lost": lost, "doubled": doubled + unexpected, "slow_answers": rec.slow_answers,
            "requests_at_app": sum(counts.values()),
            "config_checks": dict(rec.config_checks), "proxy_config_checks": dict(rec.plane_checks),
            "config_versions_seen": dict(rec.versions_seen),
            "restart": self.restart_info, "drain_outcomes": dict(rec.drain_outcomes),
            "model_backend_calls": dict(self.model.calls), "model_stream_requests": self.model.stream_requested,
            "control_plane_requests": dict(self.plane.requests),
            "fake_server_errors": fakes._Server.unexpected_errors,
            "metrics": metrics, "stops": stops,
            "resources": resources, "fds_by_kind_at_last_sample": rec.fd_kinds,
            "resource_samples": {name: [vars(s) for s in samples] for name, samples in rec.resources.items()},
            "latency": self.latency_table(), "soak_cpu_seconds": procs.cpu_seconds(),
            "events": rec.events,
        }

    def resource_verdicts(self) -> dict:
        out = {}
        warm = self.args.warmup_minutes * 60
        for proc in self.started:
            samples = self.record.resources.get(proc.name, [])
            start = proc.started_at - self.record.started
            after = [s for s in samples if s.at >= start + warm]
            row = {"samples": len(samples), "after_warmup": len(after),
                   "close_wait_max": self.record.close_wait.get(proc.name, (0, {}))[0]}
            if len(after) < 3:
                row["verdict"] = "too short"
                out[proc.name] = row
                continue
            flat = True
            row["rss_mb_per_min"] = round(_slope([(s.at / 60, s.rss_kb / 1024) for s in after]), 3)
            for key in ("rss_kb", "fds", "threads"):
                values = [getattr(s, key) for s in after]
                low, high = min(values), max(values)
                row[key] = {"min": low, "max": high, "first": values[0], "last": values[-1],
                            "spread": round((high - low) / low, 3) if low else None}
                flat &= low > 0 and high - low <= max(FLAT_TOLERANCE * low, FLAT_SLACK[key])
            row["verdict"] = "flat" if flat else "NOT FLAT"
            out[proc.name] = row
        return out

    def latency_table(self) -> dict:
        table: dict[str, dict[int, dict]] = collections.defaultdict(dict)
        for (kind, minute), values in sorted(self.record.latency.items()):
            values = sorted(values)
            table[kind][minute] = {"n": len(values), "p50_ms": round(1000 * _pct(values, 0.50), 1),
                                   "p99_ms": round(1000 * _pct(values, 0.99), 1)}
        return table

    def cleanup(self) -> None:
        self.stop.set()
        for proc in self.started:
            if proc.alive():
                proc.stop(DRAIN_TIMEOUT + 5)  # SIGTERM, then SIGKILL by PID
        for server in (getattr(self, "plane", None), getattr(self, "model", None), getattr(self, "app", None)):
            if server is not None:
                if hasattr(server, "set_mode"):
                    server.set_mode("normal")  # release hanging handlers
                server.close()


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


# ------------------------------------------------------------------------------------------- report


def markdown(data: dict) -> str:
    out = []
    ok = not data["failed"]
    out.append(f"## Fault soak: {'PASS' if ok else 'FAIL'} ({data['minutes']:g} min, {Path(data['binary']).name}, "
               f"seed {data['seed']})\n")
    out.append("| front end | exchanges | all checks passed | failed |\n|---|---:|---:|---:|")
    for front in ("ext_proc", "proxy"):
        sent, passed = data["sent"].get(front, 0), data["passed"].get(front, 0)
        out.append(f"| {front} | {sent} | {passed} | {sent - passed} |")
    out.append(f"\nRequests served by the legacy app: {data['requests_at_app']}; "
               f"lost: **{len(data['lost'])}**, doubled: **{len(data['doubled'])}**, "
               f"altered bytes: **{data['failed'].get('altered', 0)}**; "
               f"answers slower than Envoy's 0.5 s message_timeout: {data['slow_answers']}.\n")
    out.append("| front end | outcome | n |\n|---|---|---:|")
    for key, n in data["outcomes"].items():
        front, outcome = key.split(" | ")
        out.append(f"| {front} | {outcome} | {n} |")
    out.append("\nResult islands by status: " + ", ".join(f"{k}: {n}" for k, n in data["islands"].items()))
    modes = collections.defaultdict(collections.Counter)
    for key, n in data["by_response_body_mode"].items():
        mode, outcome = key.split(" | ")
        modes[mode][outcome] += n
    out.append("\next_proc by configured response body mode: " + "; ".join(
        f"{mode} {sum(c.values())} ({', '.join(f'{o} {n}' for o, n in c.most_common())})" for mode, c in modes.items()))
    if data["failed"]:
        trailers = data["failed_with_response_trailers"]
        out.append("\nErrors by kind: " + ", ".join(
            f"{k}: {n}" + (f" ({trailers[k]} of them with response trailers)" if trailers.get(k) else "")
            for k, n in sorted(data["failed"].items())))
    r = data["restart"]
    if r:
        out.append(f"\n**Sidecar drain and restart**: SIGTERM at {r['sigterm_at']} s with {r['in_flight']} exchanges "
                   f"in flight ({', '.join(f'{o}: {n}' for o, n in data['drain_outcomes'].items()) or 'none'}); "
                   f"exit code {r['exit_code']} after {r['drain_seconds']} s; new sidecar serving "
                   f"{r['down_seconds']} s after the SIGTERM.")
    out.append(f"\nConfig file rewrites checked on /config: {data['config_checks']}; proxy /config against the "
               f"valid control-plane documents: {data['proxy_config_checks']}.")
    out.append(f"Model backend calls by mode: {data['model_backend_calls']} (requests asking for SSE: "
               f"{data['model_stream_requests']}); control-plane requests by mode: {data['control_plane_requests']}.")
    for name, families in data["metrics"].items():
        parts = []
        for family, values in families.items():
            if values:
                parts.append(f"`{family.removeprefix('overlayd_')}` " + ", ".join(
                    f"{k}={v:g}" for k, v in values.items() if v))
        out.append(f"\n{name} metrics at the end: " + "; ".join(p for p in parts if not p.endswith("` ")))
    out.append("\nResources after the warm-up (/proc every 10 s; spread = (max − min) / min):\n")
    out.append("| process | samples (after warm-up) | RSS MB min–max | RSS trend MB/min | fds min–max | threads min–max | "
               "most CLOSE_WAIT | verdict |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, row in data["resources"].items():
        if "rss_kb" not in row:
            out.append(f"| {name} | {row['samples']} ({row['after_warmup']}) | | | | | {row['close_wait_max']} | "
                       f"{row['verdict']} |")
            continue
        rss, fds, thr = row["rss_kb"], row["fds"], row["threads"]
        out.append(f"| {name} | {row['samples']} ({row['after_warmup']}) | {rss['min'] / 1024:.1f}–{rss['max'] / 1024:.1f}"
                   f" ({rss['spread']:.1%}) | {row['rss_mb_per_min']:+.2f} | {fds['min']}–{fds['max']} ({fds['spread']:.1%}) | "
                   f"{thr['min']}–{thr['max']} ({thr['spread']:.1%}) | {row['close_wait_max']} | {row['verdict']} |")
    out.append(f"\nThe soak itself: {data['soak_cpu_seconds']:.0f} s of CPU ({data['soak_cpu_seconds'] / (60 * data['minutes']):.0%} "
               f"of one core).")
    kinds = sorted(data["latency"])
    minutes = sorted({m for k in kinds for m in data["latency"][k]})
    out.append("\nLatency per minute by start, p50 / p99 ms (n) (ext_proc: time the emulated Envoy waited for overlayd's "
               "answers in one exchange; proxy: the whole request; pages the app delayed on purpose left out; "
               "measured inside this Python process, so its own scheduling is included):\n")
    out.append("| min | " + " | ".join(kinds) + " |\n|---:|" + "---:|" * len(kinds))
    for m in minutes:
        cells = []
        for k in kinds:
            cell = data["latency"][k].get(m)
            cells.append(f"{cell['p50_ms']:.0f} / {cell['p99_ms']:.0f} ({cell['n']})" if cell else "")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    if data["failures"]:
        out.append("\nFirst failures of each kind (all of them, up to 20 per kind, in the JSON):\n")
        shown: collections.Counter = collections.Counter()
        for failure in data["failures"]:
            shown[failure["group"]] += 1
            if shown[failure["group"]] > 3:
                continue
            detail = failure["detail"].replace("\n", " ⏎ ")[:700]
            where = f" [{failure.get('exchange')}]" if failure.get("exchange") else ""
            out.append(f"- t={failure['at']} s **{failure['kind']}**{where}: {detail}")
    out.append(f"\nLogs of the overlayd processes: {data['log_dir']}")
    return "\n".join(out)


def main() -> int:
    default_bin = REPO / ".build-static/release/overlayd"
    if not default_bin.exists():
        default_bin = REPO / ".build/debug/overlayd"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--bin", default=str(default_bin))
    parser.add_argument("--out", default="soak.json", help="full data as JSON")
    parser.add_argument("--extproc-rate", type=float, default=40.0, help="ext_proc exchanges per second")
    parser.add_argument("--proxy-rate", type=float, default=40.0, help="proxy requests per second")
    parser.add_argument("--workers", type=int, default=6, help="worker threads per front end")
    parser.add_argument("--warmup-minutes", type=float, default=2.0)
    parser.add_argument("--restart-at", type=float, default=0.5, help="share of the run when the sidecar restarts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trailers-share", type=float, default=0.05,
                        help="share of ext_proc exchanges whose response has trailers (0 leaves them out)")
    args = parser.parse_args()
    if not Path(args.bin).exists():
        parser.error(f"no overlayd binary at {args.bin}")

    soak = Soak(args)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        soak.run()
        data = soak.finish()
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        soak.cleanup()
    Path(args.out).write_text(json.dumps(data, indent=1, default=str))
    print(markdown(data))
    print(f"\nFull data: {args.out}")
    return 0 if not data["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
