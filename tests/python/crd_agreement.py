"""The shared AIOverlay/AIModel documents of fixtures/crd_agreement/ and both judges of them.

Each fixture file starts with comment lines ``# key: value``:

* ``expect``: ``accept`` (the CRDs and overlayd both accept), ``reject`` (both reject),
  ``overlayd-only`` (a rule the schema does not express: a cross-resource rule, or the prompt
  template's variables; the CRDs accept every document, overlayd rejects the set) or ``crd-only`` (a bound the CRD needs for its CEL cost budget; overlayd accepts);
* ``why`` / ``breaks``: in words, what the file shows or which rule it breaks;
* ``path``: for every verdict but ``accept``, the field the rejection must name, in overlayd's
  notation (``spec.models[0].weight``); both judges must name it (or a field below it).

The first document is the one under test; further documents are context (an AIModel that a
fallback names, say), and must be valid themselves. The API server judges each document alone
(:class:`k8s_check.CrdValidator`); overlayd judges the file (``overlayd validate FILE``, the binary
``$OVERLAYD_BIN``, default ``.build/debug/overlayd``).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from k8s_check import load_documents
from overlayd_proc import overlayd_bin

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "crd_agreement"
VERDICTS = ("accept", "reject", "overlayd-only", "crd-only")
_HEADER = re.compile(r"^# ([a-z-]+): (.*)$")
# "  - AIOverlay salesforce-copilot: spec.models[1].weight: must be 0...100, got 120"
_PROBLEM = re.compile(r"^\s*- (?P<resource>[^:]+): (?P<path>[^\s:]*): (?P<message>.*)$")


@dataclass(frozen=True)
class Fixture:
    path: Path
    expect: str
    reason: str
    field: str | None
    documents: list

    @property
    def name(self) -> str:
        return self.path.name


def load_fixture(path: Path) -> Fixture:
    header: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _HEADER.match(line)
        if not match:
            break
        header[match.group(1)] = match.group(2).strip()
    expect = header.get("expect")
    if expect not in VERDICTS:
        raise ValueError(f"{path.name}: first line must be '# expect: <{'|'.join(VERDICTS)}>'")
    reason = header.get("why") or header.get("breaks") or ""
    if not reason:
        raise ValueError(f"{path.name}: needs a '# why:' or '# breaks:' comment")
    field = header.get("path")
    if expect != "accept" and not field:
        raise ValueError(f"{path.name}: a rejected document needs '# path: <field>'")
    return Fixture(path, expect, reason, field, load_documents(path))


def all_fixtures() -> list[Fixture]:
    return [load_fixture(p) for p in sorted(FIXTURE_DIR.glob("*.yaml"))]


def names_field(text: str, field: str) -> bool:
    """True if ``text`` names ``field`` or a field below it (``spec.models`` ~ ``spec.models[1].name``)."""
    return re.search(rf"(^|[\s(]){re.escape(field)}($|[.\[:\s])", text) is not None


@dataclass(frozen=True)
class OverlaydVerdict:
    returncode: int
    output: str

    @property
    def accepted(self) -> bool:
        return self.returncode == 0

    def problem_paths(self) -> list[str]:
        return [m.group("path") for m in map(_PROBLEM.match, self.output.splitlines()) if m]

    def names(self, field: str) -> bool:
        return any(names_field(path, field) for path in self.problem_paths())


def overlayd_validate(path: Path) -> OverlaydVerdict:
    binary = overlayd_bin()
    if not binary.exists():
        raise AssertionError(f"{binary} does not exist: build it (swift build) or set OVERLAYD_BIN")
    proc = subprocess.run([str(binary), "validate", str(path)], capture_output=True, text=True, timeout=60)
    return OverlaydVerdict(proc.returncode, (proc.stdout + proc.stderr).strip())


def serve_options() -> set[str]:
    """The options `overlayd serve --help` lists (to check the arguments our manifests pass)."""
    proc = subprocess.run([str(overlayd_bin()), "serve", "--help"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"overlayd serve --help failed: {proc.stderr}")
    return set(re.findall(r"--[a-z][a-z0-9-]*", proc.stdout))
