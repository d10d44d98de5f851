"""Fixtures that run the real overlayd binary ($OVERLAYD_BIN, default .build/debug/overlayd).

* ``overlayd`` - one process per test module, ext_proc on 127.0.0.1:0 (TCP);
* ``overlayd_unix`` - one per module, ext_proc on ``unix:<tmp>/overlayd.sock``;
* ``start_overlayd`` - a factory for a fresh process inside one test;
* ``channel`` / ``stub`` - a grpc channel (no proxy) and ExternalProcessor stub on ``overlayd``.

Every process is stopped with SIGTERM at teardown and must exit 0 within 10 s.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from extproc_helpers import CHANNEL_OPTIONS
from overlayd_proc import OVERLAY_CONFIG_YAML, OverlaydProcess


def _write_config(directory: Path) -> Path:
    path = directory / "overlays.yaml"
    path.write_text(OVERLAY_CONFIG_YAML)
    return path


def _stop_and_check(proc: OverlaydProcess) -> None:
    code = proc.stop()
    assert code == 0, f"overlayd exited with {code} after SIGTERM (expected 0).\n{proc.describe()}"


@pytest.fixture(scope="module")
def overlayd(tmp_path_factory):
    directory = tmp_path_factory.mktemp("overlayd")
    proc = OverlaydProcess(_write_config(directory)).start()
    yield proc
    _stop_and_check(proc)


@pytest.fixture(scope="module")
def overlayd_unix(tmp_path_factory):
    directory = tmp_path_factory.mktemp("overlayd_unix")
    socket_path = directory / "overlayd.sock"
    assert len(str(socket_path)) < 100, f"unix socket path too long: {socket_path}"
    proc = OverlaydProcess(_write_config(directory), listen=f"unix:{socket_path}").start()
    yield proc
    _stop_and_check(proc)


@pytest.fixture
def start_overlayd(tmp_path):
    """Start a fresh overlayd for one test: ``proc = start_overlayd()``."""
    started: list[OverlaydProcess] = []

    def start(**kwargs) -> OverlaydProcess:
        proc = OverlaydProcess(_write_config(tmp_path), **kwargs).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        _stop_and_check(proc)


@pytest.fixture(scope="module")
def channel(overlayd):
    ch = grpc.insecure_channel(overlayd.grpc_target, options=CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(ch).result(timeout=10)
    except grpc.FutureTimeoutError:
        raise AssertionError(f"cannot connect to {overlayd.grpc_target}.\n{overlayd.describe()}") from None
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def stub(channel):
    return ep_grpc.ExternalProcessorStub(channel)
