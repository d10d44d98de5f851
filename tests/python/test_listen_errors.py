"""A listen address that cannot be opened: every command exits at once with status 1 and one
error line naming the option, the address and the reason (the bare ``bind(...)`` error said
neither which option nor which address), and nothing is announced as running.

The port is taken by a listening socket of this test on 127.0.0.1 (port 0: the kernel picks it).
``demo --port`` used to hang here: the banner waited forever for a proxy port that never came.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from overlayd_proc import OverlaydProcess, overlayd_bin

EXIT_TIMEOUT = 20.0


@pytest.fixture
def taken_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(overlayd_bin()), *args, "--log-level", "info"],
        capture_output=True, text=True, timeout=EXIT_TIMEOUT,
    )


def demo_case(taken: str) -> tuple[list[str], str]:
    """`demo` with every listener on a free port but `taken`, which gets the taken one."""
    free = {"--port": "0", "--admin": "127.0.0.1:0", "--ext-proc-listen": "127.0.0.1:0", "--console": "127.0.0.1:0"}
    free[taken] = "{port}" if taken == "--port" else "127.0.0.1:{port}"
    return ["demo", *(item for pair in free.items() for item in pair)], taken


CASES = {
    "serve --listen": (["serve", "--listen", "127.0.0.1:{port}", "--admin", "127.0.0.1:0"], "--listen"),
    "serve --admin": (["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:{port}"], "--admin"),
    "proxy --listen": (
        ["proxy", "--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:{port}", "--admin", "127.0.0.1:0"],
        "--listen",
    ),
    **{f"demo {option}": demo_case(option) for option in ("--port", "--ext-proc-listen", "--admin", "--console")},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_taken_port_is_named_with_its_option(case, taken_port):
    template, option = CASES[case]
    result = run([arg.format(port=taken_port) for arg in template])
    assert result.returncode == 1, result.stderr
    expected = (
        f"Error: cannot listen on 127.0.0.1:{taken_port} ({option}): the address is already in use"
    )
    assert expected in result.stderr, result.stderr
    assert "is running" not in result.stdout, result.stdout  # the demo announces nothing
    # The listeners that had started are shut down gracefully: no drain timeout, and no error
    # logged by them (Hummingbird logged two when it was cancelled instead).
    assert "drain timeout" not in result.stderr, result.stderr
    assert " error overlayd:" not in result.stderr, result.stderr


def test_a_socket_path_in_a_missing_directory_is_explained(tmp_path):
    path = tmp_path / "missing" / "overlayd.sock"
    result = run(["serve", "--listen", f"unix:{path}", "--admin", "127.0.0.1:0"])
    assert result.returncode == 1, result.stderr
    assert f"Error: cannot listen on unix:{path} (--listen): the socket's directory does not exist" in result.stderr, (
        result.stderr
    )


def test_a_socket_path_that_is_a_regular_file_is_left_alone(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    result = run(["serve", "--listen", f"unix:{path}", "--admin", "127.0.0.1:0"])
    assert result.returncode == 1, result.stderr
    assert (
        f"Error: cannot listen on unix:{path} (--listen): the path exists and is not a socket" in result.stderr
    ), result.stderr
    assert path.read_text() == "keep me"


def test_a_live_unix_socket_is_not_taken_over(tmp_path):
    """A second overlayd on the socket path of a running one fails; the first keeps its socket
    (it used to be unlinked and bound anew, and whichever exited first removed the other's path).
    A stale socket file (nobody listening) is still replaced, and removed at exit."""
    path = tmp_path / "overlayd.sock"
    first = OverlaydProcess(None, listen=f"unix:{path}").start()
    try:
        inode = path.stat().st_ino
        result = run(["serve", "--listen", f"unix:{path}", "--admin", "127.0.0.1:0"])
        assert result.returncode == 1, result.stderr
        assert (
            f"Error: cannot listen on unix:{path} (--listen): another process is listening on this socket"
            in result.stderr
        ), result.stderr
        assert path.stat().st_ino == inode
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))  # the first one still answers on it
    finally:
        assert first.stop() == 0
    assert not path.exists()

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a crash leaves it
    second = OverlaydProcess(None, listen=f"unix:{path}").start()
    assert second.stop() == 0
    assert not path.exists()
