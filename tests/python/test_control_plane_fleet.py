"""A real `overlayd serve --control-plane` sidecar against a real `overlayd control-plane`
(issue 15): the sidecar follows a change within 2 s through the long poll (its interval is 30 s,
so only the long poll can bring it that fast), its reports arrive and show in /v1/fleet, the
sidecar's admin port answers /v1/state and /v1/fleet read-only, and it keeps serving its last
known good document while the control plane is down and restarting."""
from __future__ import annotations

import json
import time

import grpc
import pytest

from control_plane_proc import ControlPlane
from extproc_helpers import CHANNEL_OPTIONS, Stream, request_headers
from overlayd_proc import OverlaydProcess, http_get, scrape, wait_until


def config(proc) -> dict:
    return json.loads(http_get(proc.admin_addr, "/config").body)


def served_etag(proc) -> str | None:
    fetch = config(proc).get("lastFetch") or {}
    return fetch.get("etag") if fetch.get("result") in ("applied", "not_modified", "unchanged") else None


def overlaid(proc, host: str) -> bool:
    channel = grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS)
    try:
        stream = Stream(channel)
        stream.send(request_headers(host, eos=True, extra=(("accept", "text/html"),)))
        answer = stream.recv(why=f"request_headers for {host}")
        stream.cancel()
        return not answer.HasField("mode_override")
    finally:
        channel.close()


@pytest.fixture
def fleet(tmp_path):
    (tmp_path / "cp").mkdir()
    plane = ControlPlane(tmp_path / "cp").start()
    sidecar = OverlaydProcess(None, extra_args=(
        "--control-plane", f"http://{plane.addr}/v1/desired-state", "--control-plane-interval", "30",
        "--control-plane-backoff", "0.1", "--control-plane-max-backoff", "0.5", "--control-plane-timeout", "2",
        "--control-plane-report-token-file", str(plane.report_token_file), "--state-dir", str(tmp_path / "state")))
    sidecar.start()
    yield plane, sidecar
    if sidecar.alive():
        assert sidecar.stop() == 0, sidecar.describe()
    if plane.alive():
        assert plane.stop() == 0, plane.output()


def test_a_change_reaches_the_sidecar_within_2s_and_reports_show_in_the_fleet(fleet):
    plane, sidecar = fleet
    wait_until(lambda: served_etag(sidecar) == '"1"', 10, "the sidecar serves version 1")
    # The first report (after the first fetch) arrives.
    instance = wait_until(lambda: next(iter(plane.get("/v1/fleet").json["instances"]), None), 10, "a report")
    assert instance["version"] == "1" and instance["lagging"] is False
    assert overlaid(sidecar, "crm.example.com")

    # Several changes in a row, each followed within 2 s (the poller's interval is 30 s).
    for fast in (50, 20, 65):
        reply = plane.request("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": fast, "mock-smart": 100 - fast}})
        assert reply.status == 200, reply.text
        changed = time.monotonic()
        version = reply.json["version"]
        wait_until(lambda: served_etag(sidecar) == f'"{version}"', 2.0, f"the sidecar serves version {version}")
        assert time.monotonic() - changed < 2.0
        state = json.loads(http_get(sidecar.admin_addr, "/v1/state").body)
        assert state["version"] == version and state["readOnly"] is True
        weights = [m["weight"] for m in state["overlays"][0]["spec"]["models"]]
        assert weights == [fast, 100 - fast]

    # The decisions made since reach the fleet with the next report (after the next fetch).
    for _ in range(5):
        assert overlaid(sidecar, "crm.example.com")
    reply = plane.request("DELETE", "/v1/overlays/erp")
    assert reply.status == 200

    def decisions():
        view = plane.get("/v1/fleet").json
        rows = [o for o in view["overlays"] if o["overlay"] == "crm"]
        return rows and view["instances"][0]["version"] == str(reply.json["version"]) and rows[0]
    row = wait_until(decisions, 5, "decisions of crm in /v1/fleet")
    assert row["rps"] > 0 and abs(sum(row["share"].values()) - 1) < 1e-6, row
    models = {m["model"]: m for m in plane.get("/v1/fleet").json["models"]}
    assert set(row["share"]) <= set(models), models
    assert scrape(sidecar.admin_addr).value("overlayd_control_plane_reports_total", result="sent") >= 2

    # The sidecar's own read-only fleet view: this one instance.
    own = json.loads(http_get(sidecar.admin_addr, "/v1/fleet").body)
    assert len(own["instances"]) == 1
    # Its admin port takes no changes.
    assert http_get(sidecar.admin_addr, "/v1/overlays").status == 404


def test_the_sidecar_keeps_its_last_known_good_document_while_the_control_plane_restarts(fleet):
    plane, sidecar = fleet
    wait_until(lambda: served_etag(sidecar) == '"1"', 10, "the sidecar serves version 1")
    reply = plane.request("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": 50, "mock-smart": 50}})
    wait_until(lambda: served_etag(sidecar) == '"2"', 2.0, "the sidecar serves version 2")
    address = plane.addr

    plane.kill9()
    wait_until(lambda: (config(sidecar).get("lastFetch") or {}).get("result") == "failed", 10, "a failed fetch")
    # Still serving version 2: overlays route, ready, same document.
    assert overlaid(sidecar, "crm.example.com")
    assert http_get(sidecar.admin_addr, "/readyz").status == 200
    state = json.loads(http_get(sidecar.admin_addr, "/v1/state").body)
    assert [m["weight"] for m in state["overlays"][0]["spec"]["models"]] == [50, 50]

    # The control plane comes back on the same address with its store; the sidecar follows again.
    plane.args[plane.args.index("--listen") + 1] = address
    plane.start()
    assert plane.version() == 2
    reply = plane.request("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": 10, "mock-smart": 90}})
    assert reply.status == 200
    wait_until(lambda: served_etag(sidecar) == '"3"', 5, "the sidecar serves version 3 after the restart")
    assert overlaid(sidecar, "crm.example.com")
