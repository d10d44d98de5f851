"""The console's embedded copy (Sources/ConsoleAssets/ConsoleAssets.swift, written by
scripts/gen-console) matches console/, and console.js is valid JavaScript (``node --check``).

Fails when someone edits console/ and forgets to run scripts/gen-console, or edits the generated
file by hand.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_console_assets_are_fresh():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-console"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, (
        "Sources/ConsoleAssets/ConsoleAssets.swift does not match console/: run scripts/gen-console.\n"
        + result.stderr)


def test_generated_file_embeds_every_console_file():
    generated = (ROOT / "Sources" / "ConsoleAssets" / "ConsoleAssets.swift").read_text()
    for path in ['path: "/"', 'path: "/console.css"', 'path: "/console.js"']:
        assert path in generated, f"{path} missing from the generated file"


def test_console_js_passes_node_check():
    node = shutil.which("node")
    assert node, "node is needed for `node --check console/console.js` (Debian: nodejs)"
    result = subprocess.run([node, "--check", str(ROOT / "console" / "console.js")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_console_never_assigns_html_from_data():
    # Every text from a document or report is set with textContent: the page has no innerHTML,
    # outerHTML, insertAdjacentHTML or document.write at all.
    source = (ROOT / "console" / "console.js").read_text()
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]:
        assert sink not in source, f"console.js uses {sink}"
