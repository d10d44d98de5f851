"""`overlayd control-plane`'s JSON API against bad input (issue 15, acceptance "Bad input").

Every change route gets malformed JSON, an unknown field, an invalid value, a stale version, no
token, a wrong token, a foreign Origin and an oversized body: each answer has the right status and
a precise message (and the problem's path), and no version is written (the history and the
desired state's ETag are read before and after). Then the good paths: create, weights, rollback,
history with its diff, export/import, split preview, the long poll's 304 and 200.
"""
from __future__ import annotations

import subprocess
import threading
import time

import pytest

from control_plane_proc import OPERATOR_TOKEN, REPORT_TOKEN, ControlPlane
from overlayd_proc import overlayd_bin, wait_until


def overlay(name: str, host: str, weights=(50, 50), **spec_extra) -> dict:
    spec = {"hostApp": host, "models": [{"name": "mock-fast", "weight": weights[0]},
                                        {"name": "mock-smart", "weight": weights[1]}], "strategy": "Canary"}
    spec.update(spec_extra)
    return {"apiVersion": "orchestrator.io/v1", "kind": "AIOverlay", "metadata": {"name": name}, "spec": spec}


def model(name: str, **spec) -> dict:
    return {"apiVersion": "orchestrator.io/v1", "kind": "AIModel", "metadata": {"name": name},
            "spec": {"provider": "mock", **spec}}


REPORT = {"instance": "pod-1", "host": "pod-1", "version": "2", "intervalSeconds": 10,
          "decisions": [{"overlay": "crm", "model": "mock-fast", "count": 3}]}

# route -> (method, path, a valid body (JSON-able, or text for import))
ROUTES = {
    "create overlay": ("POST", "/v1/overlays", overlay("hr", "hr.example.com")),
    "replace overlay": ("PUT", "/v1/overlays/crm", overlay("crm", "crm.example.com", (60, 40))),
    "delete overlay": ("DELETE", "/v1/overlays/erp", None),
    "weights": ("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": 50, "mock-smart": 50}}),
    "create model": ("POST", "/v1/models", model("mock-extra")),
    "replace model": ("PUT", "/v1/models/mock-fast", model("mock-fast", mock={"latency": "5ms"})),
    "delete model": ("DELETE", "/v1/models/mock-extra-none", None),
    "rollback": ("POST", "/v1/rollback", {"version": 1}),
    "import": ("POST", "/v1/import", None),  # body filled in from /v1/export
    "validate": ("POST", "/v1/validate", {"overlay": overlay("hr", "hr.example.com")}),
}

# route -> (body with an unknown field, status, problem path)
UNKNOWN_FIELD = {
    "create overlay": (overlay("hr", "hr.example.com", colour="red"), 422, "AIOverlay hr: spec.colour"),
    "replace overlay": (overlay("crm", "crm.example.com", colour="red"), 422, "AIOverlay crm: spec.colour"),
    "weights": ({"weights": {"mock-fast": 50, "mock-smart": 50}, "colour": 1}, 400, "body: colour"),
    "create model": (model("mock-extra", colour="red"), 422, "AIModel mock-extra: spec.colour"),
    "replace model": (model("mock-fast", colour="red"), 422, "AIModel mock-fast: spec.colour"),
    "rollback": ({"version": 1, "colour": 1}, 400, "body: colour"),
    "validate": ({"overlay": overlay("hr", "hr.example.com", colour="red")}, 422, "AIOverlay hr: spec.colour"),
}

# route -> (body with an invalid value, problem path, words of the message)
INVALID = {
    "create overlay": (overlay("hr", "hr.example.com", (50, 70)), "AIOverlay hr: spec.models", "weights must sum to 100, got 120"),
    "replace overlay": (overlay("crm", "crm.example.com", (101, -1)), "AIOverlay crm: spec.models[0].weight", "must be 0...100, got 101"),
    "weights": ({"weights": {"mock-fast": "half", "mock-smart": 50}}, "weights.mock-fast", "must be an integer 0...100"),
    "create model": (model("mock-extra", maxConcurrency=0), "AIModel mock-extra: spec.maxConcurrency", ""),
    "replace model": (model("mock-fast", provider="carrier-pigeon"), "AIModel mock-fast: spec.provider", "carrier-pigeon"),
    "rollback": ({"version": "one"}, "version", "positive integer"),
    "validate": ({"overlay": overlay("hr", "hr.example.com", (50, 70))}, "AIOverlay hr: spec.models", "sum to 100"),
}


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("cp-api")).start()
    # Version 2, so If-Match "1" is a real, stale version.
    reply = cp.request("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": 70, "mock-smart": 30}})
    assert reply.status == 200, reply.text
    yield cp
    assert cp.stop() == 0, cp.output()


@pytest.fixture
def unchanged(plane):
    """Checks that the test wrote no version: same history, same ETag."""
    before = plane.history()
    etag = plane.get("/v1/desired-state").headers["etag"]
    yield
    assert plane.history() == before
    assert plane.get("/v1/desired-state").headers["etag"] == etag


def body_of(plane, route: str):
    method, path, body = ROUTES[route]
    if route == "import":
        body = plane.get("/v1/export").body
    return method, path, body


def problem(reply, status: int, words: str, path: str | None = None) -> dict:
    assert reply.status == status, f"{reply.status} {reply.text}"
    assert reply.headers["content-type"].startswith("application/json")
    answer = reply.json
    assert words in answer["error"] or any(words in p["message"] for p in answer["problems"]), answer
    if path is not None:
        assert path in [p["path"] for p in answer["problems"]], answer
    return answer


@pytest.mark.parametrize("route", ROUTES)
def test_no_token_is_401(plane, unchanged, route):
    method, path, body = body_of(plane, route)
    problem(plane.request(method, path, body, token=None), 401, "needs the operator token")


@pytest.mark.parametrize("route", ROUTES)
def test_wrong_token_is_401(plane, unchanged, route):
    method, path, body = body_of(plane, route)
    problem(plane.request(method, path, body, token=REPORT_TOKEN), 401, "wrong operator token")


@pytest.mark.parametrize("route", ROUTES)
def test_foreign_origin_is_403(plane, unchanged, route):
    method, path, body = body_of(plane, route)
    reply = plane.request(method, path, body, headers={"origin": "http://evil.example"})
    problem(reply, 403, 'foreign Origin "http://evil.example"')


@pytest.mark.parametrize("route", [r for r in ROUTES if ROUTES[r][0] != "DELETE"])
def test_oversized_body_is_413(plane, unchanged, route):
    method, path, _ = ROUTES[route]
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    problem(plane.request(method, path, big, headers={"content-type": "application/json"}), 413, "limit")


@pytest.mark.parametrize("route", [r for r in ROUTES if ROUTES[r][0] != "DELETE" and r != "import"])
def test_malformed_json_is_400(plane, unchanged, route):
    method, path, _ = ROUTES[route]
    reply = plane.request(method, path, b'{"apiVersion": "orchestrator.io/v1",', headers={"content-type": "application/json"})
    problem(reply, 400, "malformed JSON")


def test_malformed_yaml_import_is_422(plane, unchanged):
    reply = plane.request("POST", "/v1/import", b"kind: [unclosed\n", headers={"content-type": "application/yaml"})
    problem(reply, 422, "not valid YAML or JSON")


@pytest.mark.parametrize("route", UNKNOWN_FIELD)
def test_unknown_field(plane, unchanged, route):
    method, path, _ = ROUTES[route]
    body, status, path_ = UNKNOWN_FIELD[route]
    problem(plane.request(method, path, body), status, "unknown field", path_)


@pytest.mark.parametrize("route", INVALID)
def test_invalid_value_is_422_with_its_path(plane, unchanged, route):
    method, path, _ = ROUTES[route]
    body, path_, words = INVALID[route]
    problem(plane.request(method, path, body), 422, words, path_)


@pytest.mark.parametrize("route", [r for r in ROUTES if r != "validate"])
def test_stale_version_is_409_with_the_current_one(plane, unchanged, route):
    method, path, body = body_of(plane, route)
    reply = plane.request(method, path, body, headers={"if-match": '"1"'})
    answer = problem(reply, 409, "stale version")
    assert answer["currentVersion"] == plane.version()


@pytest.mark.parametrize("method,path,body,words", [
    ("PUT", "/v1/overlays/nope", overlay("nope", "nope.example.com"), 'no AIOverlay named "nope"'),
    ("DELETE", "/v1/overlays/nope", None, 'no AIOverlay named "nope"'),
    ("PUT", "/v1/overlays/nope/weights", {"weights": {"a": 100}}, 'no AIOverlay named "nope"'),
    ("DELETE", "/v1/models/nope", None, 'no AIModel named "nope"'),
    ("POST", "/v1/rollback", {"version": 999}, "no version 999"),
])
def test_unknown_names_are_404(plane, unchanged, method, path, body, words):
    problem(plane.request(method, path, body), 404, words)


def test_existing_name_is_409(plane, unchanged):
    answer = problem(plane.request("POST", "/v1/overlays", overlay("crm", "crm.example.com")), 409, "AIOverlay crm exists")
    assert answer["currentVersion"] == plane.version()


def test_every_problem_is_reported_at_once(plane, unchanged):
    bad = overlay("Bad_Name", "", (150, 0), strategy="Sideways")
    answer = problem(plane.request("POST", "/v1/overlays", bad), 422, "does not validate")
    paths = {p["path"] for p in answer["problems"]}
    assert {"AIOverlay Bad_Name: metadata.name", "AIOverlay Bad_Name: spec.hostApp",
            "AIOverlay Bad_Name: spec.strategy"} <= paths, answer


def test_report_bad_input(plane, unchanged):
    def post(body, token=REPORT_TOKEN, **kwargs):
        return plane.request("POST", "/v1/reports", body, token=token, **kwargs)
    problem(post(REPORT, token=None), 401, "needs the report token")
    problem(post(REPORT, token=OPERATOR_TOKEN), 401, "wrong report token")
    problem(post(b"{", headers={"content-type": "application/json"}), 400, "malformed JSON")
    problem(post({**REPORT, "userText": "hello"}), 400, "unknown field", "report: userText")
    problem(post({**REPORT, "decisions": [{"overlay": "crm", "model": "m", "count": -1}]}), 422, "integer ≥ 0",
            "report: decisions[0].count")
    problem(post(b'{"instance": "' + b"a" * 70_000 + b'"}', headers={"content-type": "application/json"}), 413, "limit")
    assert plane.get("/v1/fleet").json["instances"] == []


# ---------------------------------------------------------------------- good paths


def test_changes_rollback_history_and_diff(plane):
    start = plane.version()
    reply = plane.request("POST", "/v1/overlays", overlay("hr", "hr.example.com"), headers={"if-match": f'"{start}"'})
    assert reply.status == 201 and reply.json == {"version": start + 1}, reply.text
    assert plane.get("/v1/overlays/hr").json["spec"]["hostApp"] == "hr.example.com"
    reply = plane.request("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": 50, "mock-smart": 50}},
                          headers={"if-match": str(start + 1)})
    assert reply.status == 200, reply.text
    newest = plane.history()[0]
    assert newest["summary"] == "weights of crm: mock-fast 70→50, mock-smart 30→50"
    assert newest["author"] == "operator" and newest["rollbackOf"] is None
    detail = plane.get(f"/v1/history/{start + 2}").json
    assert "-  - name: mock-fast\n-    weight: 70" in detail["diff"] or "-    weight: 70" in detail["diff"], detail["diff"]
    assert "+    weight: 50" in detail["diff"]
    reply = plane.request("POST", "/v1/rollback", {"version": start})
    assert reply.status == 200 and reply.json == {"version": start + 3}
    assert plane.get(f"/v1/history/{start + 3}").json["yaml"] == plane.get(f"/v1/history/{start}").json["yaml"]
    assert plane.history()[0]["rollbackOf"] == start
    # Validate changes nothing; a good body is {"ok": true}.
    reply = plane.request("POST", "/v1/validate", {"overlay": overlay("ok", "ok.example.com")})
    assert reply.status == 200 and reply.json == {"ok": True}
    assert plane.version() == start + 3


def test_export_import_round_trip_and_the_exported_yaml_validates(plane, tmp_path):
    exported = plane.get("/v1/export")
    assert exported.headers["content-type"].startswith("application/yaml")
    path = tmp_path / "export.yaml"
    path.write_bytes(exported.body)
    out = subprocess.run([str(overlayd_bin()), "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("ok:"), out.stdout
    before = plane.version()
    reply = plane.request("POST", "/v1/import", exported.body, headers={"content-type": "application/yaml"})
    assert reply.status == 200 and reply.json == {"version": before + 1}
    assert plane.history()[0]["summary"] == "no change"


def test_split_preview_moves_the_buckets_between_the_bounds(plane):
    reply = plane.request("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": 80, "mock-smart": 20}})
    assert reply.status == 200, reply.text
    preview = plane.get("/v1/split-preview?overlay=crm&weights=mock-fast:50,mock-smart:50").json
    assert preview["moved"] == 3000
    assert preview["moves"] == [{"from": "mock-fast", "to": "mock-smart", "buckets": 3000, "range": [5000, 8000],
                                 "ranges": [[5000, 8000]]}]
    assert plane.get("/v1/split-preview?overlay=crm&weights=mock-fast:60,mock-smart:60").status == 422


def test_desired_state_etag_304_and_long_poll(plane):
    first = plane.get("/v1/desired-state")
    assert first.status == 200 and first.headers["x-overlayd-long-poll"] == "1"
    etag = first.headers["etag"]
    assert plane.get("/v1/desired-state", headers={"if-none-match": etag}).status == 304
    assert plane.get("/v1/desired-state?wait=0").status == 400
    # A held poll is answered as soon as the version changes.
    answers: list = []
    waiter = threading.Thread(target=lambda: answers.append(
        plane.get("/v1/desired-state?wait=30", headers={"if-none-match": etag}, timeout=40)))
    started = time.monotonic()
    waiter.start()
    # The poll is held (no answer yet) until the change below.
    wait_until(lambda: plane.get("/v1/desired-state").status == 200, 5, "the server answers")
    assert not answers
    reply = plane.request("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": 90, "mock-smart": 10}})
    assert reply.status == 200
    waiter.join(10)
    assert answers and answers[0].status == 200, answers
    assert answers[0].headers["etag"] == f'"{reply.json["version"]}"'
    assert time.monotonic() - started < 10
    assert "weight: 90" in answers[0].text


def test_state_and_lists_are_the_crd_shape(plane):
    state = plane.get("/v1/state")
    assert state.headers["etag"] == f'"{state.json["version"]}"'
    names = [o["metadata"]["name"] for o in state.json["overlays"]]
    assert "crm" in names and all(o["kind"] == "AIOverlay" for o in state.json["overlays"])
    assert [m["metadata"]["name"] for m in plane.get("/v1/models").json][:2] == ["mock-fast", "mock-smart"]
    assert plane.get("/v1/overlays/nope").status == 404
