"""A configuration file that cannot be read is said so in plain words (the same reader serves
``validate``, ``--config`` at start and on reload, and ``--control-plane-token-file``); a directory
used to be "NSCocoaErrorDomain error 256"."""

from __future__ import annotations

import subprocess

import pytest

from overlayd_proc import overlayd_bin


def validate(path) -> subprocess.CompletedProcess:
    return subprocess.run([str(overlayd_bin()), "validate", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("directory", "it is a directory, not a file"),
        ("missing", "no such file"),
        ("binary", "it is not UTF-8 text"),
    ],
)
def test_an_unreadable_config_says_why(tmp_path, kind, reason):
    path = tmp_path / "overlays.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00apiVersion")
    result = validate(path)
    assert result.returncode == 1, result
    assert f"{path}: 1 problem:\n  - cannot read the file: {reason}\n" in result.stdout + result.stderr, result


def test_a_state_dir_that_is_a_file_is_said_so(tmp_path):
    path = tmp_path / "state"
    path.write_text("not a directory")
    result = subprocess.run(
        [str(overlayd_bin()), "serve", "--control-plane", "http://127.0.0.1:9/x", "--state-dir", str(path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0, result
    assert f"Error: --state-dir {path} is a file, not a directory" in result.stderr, result.stderr
    assert path.read_text() == "not a directory"
