"""scripts/test's and scripts/demo's set-up of Debian packages, with dpkg-query, id and apt-get
replaced by recording stand-ins on PATH (nothing is installed): as root each installs exactly the
missing packages; as another user it prints one line naming them and stops before anything else.

The clean-environment run of the whole set-up (a fresh clone, nothing pip-installed on PATH) is
scripts/check-clean-setup, run by .ci/run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from overlayd_proc import REPO_ROOT

MISSING = ("chromium-driver", "prometheus")


def _stand_ins(directory: Path, uid: int, missing: tuple[str, ...] = MISSING) -> Path:
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    log = directory / "calls.log"
    scripts = {
        # `dpkg-query -W -f=... PKG`: the packages of MISSING are not installed.
        "dpkg-query": f"""#!/bin/sh
for a in "$@"; do pkg=$a; done
case " {' '.join(missing)} " in *" $pkg "*) printf 'not-installed' ;; *) printf 'installed' ;; esac
""",
        "id": f"#!/bin/sh\necho {uid}\n",
        # Records the call; `install` fails so the run stops there (nothing is installed).
        "apt-get": f"""#!/bin/sh
echo "apt-get $*" >> {log}
[ "$1" = update ] && exit 0
exit 100
""",
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return log


def _run(directory: Path, uid: int, command: tuple[str, ...] = ("test", "--setup-only"),
         missing: tuple[str, ...] = MISSING) -> tuple[subprocess.CompletedProcess, Path]:
    log = _stand_ins(directory, uid, missing)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERLAYD_")}
    env["PATH"] = f"{directory / 'bin'}:{env['PATH']}"
    # A venv place that must stay untouched: the run has to stop before the Python set-up.
    env["OVERLAYD_VENV"] = str(directory / "venv")
    proc = subprocess.run(
        [str(REPO_ROOT / "scripts" / command[0]), *command[1:]], env=env, capture_output=True, text=True, timeout=60)
    assert not (directory / "venv").exists(), "the run went on to the Python set-up"
    return proc, log


def _assert_installed_only(log: Path, missing: tuple[str, ...]) -> None:
    """As root: apt-get was asked for exactly the missing packages, after an update."""
    calls = log.read_text().splitlines()
    assert calls == ["apt-get update -q", f"apt-get install -y -q {' '.join(missing)}"], calls


def _assert_named_in_one_line(proc: subprocess.CompletedProcess, log: Path, script: str,
                              missing: tuple[str, ...]) -> None:
    """As another user: exit 1, no apt-get, one line naming what to install."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not log.exists(), "apt-get was called without root"
    assert proc.stderr.strip().splitlines() == [
        f"scripts/{script}: missing Debian packages; install them with: sudo apt-get install {' '.join(missing)}"
    ], proc.stderr


def test_as_root_installs_only_the_missing_packages(tmp_path):
    proc, log = _run(tmp_path, uid=0)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    _assert_installed_only(log, MISSING)


def test_as_another_user_names_what_to_install_in_one_line(tmp_path):
    proc, log = _run(tmp_path, uid=1000)
    _assert_named_in_one_line(proc, log, "test", MISSING)


def test_unknown_argument_is_refused(tmp_path):
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "test"), "--pyhton"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "usage: scripts/test [--swift | --python | --setup-only]" in proc.stderr


DEMO_MISSING = ("libnghttp2-dev", "libprotobuf-c-dev")


def _run_demo(directory: Path, uid: int) -> tuple[subprocess.CompletedProcess, Path]:
    return _run(directory, uid, ("demo",), DEMO_MISSING)


def test_demo_as_root_installs_only_the_missing_build_libraries_and_stops_when_that_fails(tmp_path):
    proc, log = _run_demo(tmp_path, uid=0)
    assert proc.returncode == 100, proc.stdout + proc.stderr  # the stand-in apt-get's failure, before any build
    _assert_installed_only(log, DEMO_MISSING)


def test_demo_as_another_user_names_what_to_install_in_one_line(tmp_path):
    proc, log = _run_demo(tmp_path, uid=1000)
    _assert_named_in_one_line(proc, log, "demo", DEMO_MISSING)


def _package_list(script: str, variable: str) -> list[str]:
    text = (REPO_ROOT / "scripts" / script).read_text()
    block = text[text.index(f"{variable}=(") + len(variable) + 2:]
    block = block[:block.index("\n)")]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_scripts_test_installs_every_library_scripts_demo_does():
    demo = _package_list("demo", "packages")
    assert demo == ["libsqlite3-dev", "libnghttp2-dev", "libprotobuf-c-dev", "zlib1g-dev"]
    assert set(demo) <= set(_package_list("test", "apt_packages"))
