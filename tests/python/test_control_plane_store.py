"""The control plane's store survives `kill -9` in the middle of 1,000 rapid changes (issue 15,
acceptance "Crash safety"): at restart the store opens, the history is intact (every version
from 1 up, none missing, none changed) and the newest version is a complete, valid document that
includes every change the killed process had acknowledged."""
from __future__ import annotations

import http.client
import subprocess
import threading

from control_plane_proc import ControlPlane
from overlayd_proc import overlayd_bin, wait_until


def test_kill9_during_1000_rapid_changes(tmp_path):
    plane = ControlPlane(tmp_path).start()
    acknowledged: list[int] = []
    errors: list[str] = []

    def hammer():
        host, port = plane.addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        for i in range(1000):
            fast = 1 + i % 99
            try:
                reply = plane.request("PUT", "/v1/overlays/crm/weights",
                                      {"weights": {"mock-fast": fast, "mock-smart": 100 - fast}}, connection=conn)
            except (OSError, http.client.HTTPException):
                return  # the process is gone
            if reply.status != 200:
                errors.append(reply.text)
                return
            acknowledged.append(reply.json["version"])

    writer = threading.Thread(target=hammer)
    writer.start()
    wait_until(lambda: len(acknowledged) >= 300 or errors or not writer.is_alive(), 120, "300 acknowledged changes")
    plane.kill9()
    writer.join(30)
    assert not errors, errors
    assert 300 <= len(acknowledged) < 1000, f"{len(acknowledged)} changes acknowledged before kill -9"

    plane.start()
    history = plane.history()
    numbers = [v["version"] for v in history]
    newest = numbers[0]
    # Contiguous from 1, nothing lost that was acknowledged; at most the one change in flight more.
    assert numbers == list(range(newest, 0, -1))
    assert acknowledged[-1] <= newest <= acknowledged[-1] + 1
    assert history[-1]["summary"].startswith("seeded from")
    # The newest version is complete: it validates with `overlayd validate`, and it is what is served.
    detail = plane.get(f"/v1/history/{newest}").json
    path = tmp_path / "newest.yaml"
    path.write_text(detail["yaml"])
    out = subprocess.run([str(overlayd_bin()), "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    served = plane.get("/v1/desired-state")
    assert served.headers["etag"] == f'"{newest}"' and served.text == detail["yaml"]
    # And the store takes new changes after the crash.
    reply = plane.request("PUT", "/v1/overlays/crm/weights", {"weights": {"mock-fast": 50, "mock-smart": 50}})
    assert reply.status == 200 and reply.json["version"] == newest + 1, reply.text
    assert plane.stop() == 0, plane.output()


def test_restart_keeps_history_and_ignores_the_seed(tmp_path):
    plane = ControlPlane(tmp_path).start()
    reply = plane.request("DELETE", "/v1/overlays/erp")
    assert reply.status == 200
    assert plane.stop() == 0
    plane.start()
    assert [v["version"] for v in plane.history()] == [2, 1]
    assert "--seed ignored" in plane.output()
    assert [o["metadata"]["name"] for o in plane.get("/v1/state").json["overlays"]] == ["crm"]
    assert plane.stop() == 0


def test_missing_token_files_are_created_and_logged(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen([str(overlayd_bin()), "control-plane", "--listen", "127.0.0.1:0", "--data", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(lambda: any("control plane listening on" in l for l in lines), 30, "listening")
        text = "".join(lines)
        assert "created --token-file with a random token" in text and str(data / "operator.token") in text
        assert str(data / "report.token") in text
        token = (data / "operator.token").read_text().strip()
        assert len(token) == 64 and (data / "operator.token").stat().st_mode & 0o777 == 0o600
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, "".join(lines)


def test_listen_error_names_the_flag_and_address(tmp_path):
    (tmp_path / "a").mkdir()
    plane = ControlPlane(tmp_path / "a").start()
    try:
        out = subprocess.run(
            [str(overlayd_bin()), "control-plane", "--listen", plane.addr, "--data", str(tmp_path / "b")],
            capture_output=True, text=True, timeout=30)
        assert out.returncode != 0
        assert f"cannot listen on {plane.addr} (--listen): " in out.stderr + out.stdout, out.stderr
        assert "already in use" in out.stderr + out.stdout
    finally:
        assert plane.stop() == 0


def test_bad_seed_names_every_problem(tmp_path):
    seed = tmp_path / "seed.yaml"
    seed.write_text("apiVersion: orchestrator.io/v1\nkind: AIOverlay\nmetadata: {name: x}\nspec: {hostApp: '', models: []}\n")
    out = subprocess.run([str(overlayd_bin()), "control-plane", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "d"),
                          "--seed", str(seed)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert f"--seed {seed}" in out.stderr and "spec.hostApp" in out.stderr and "spec.models" in out.stderr, out.stderr
