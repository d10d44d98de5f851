"""The HTML injector's insertion point, checked against html5lib's tokenizer on a sample.

The fuzz target (Fuzz/html-injector) checks byte exactness and where the snippet goes by its own
rules; this checks the rules against an independent tokenizer: for a sample of pages (the committed
seeds and whatever a fuzz run's corpus holds, Fuzz/.build-fuzz/corpus/html-injector), the fuzz
target is replayed with OVERLAYD_FUZZ_DUMP set, which records each page, the insertion offset and
the outcome. A probe start tag put at that offset must come out of html5lib's tokenizer as a start
tag, outside any <template>: had the offset been inside a comment, a script, style, textarea, title
(or other raw-text element), a CDATA section, a bogus comment, a doctype or an attribute value, it
would come out as text, a comment or part of a tag. The tokenizer switches to the raw-text states
the way html5lib's parser tells it to (script, style, xmp, iframe, noembed, noframes, noscript,
textarea, title, plaintext).

Not checked: `atEnd` insertions (the documented fallback: after an unterminated construct the
snippet lands inside it and is inert).

    python3 -m pytest Fuzz/tests -q        # needs: scripts/fuzz --build html-injector; pip html5lib
"""

import json
import os
import pathlib
import random
import subprocess

import pytest
from html5lib._tokenizer import HTMLTokenizer
from html5lib.constants import tokenTypes

FUZZ = pathlib.Path(__file__).resolve().parent.parent
BINARY = pathlib.Path(os.environ.get("OVERLAYD_FUZZ_HTML", FUZZ / ".build-fuzz/release/html-injector"))
SAMPLE = int(os.environ.get("OVERLAYD_FUZZ_SAMPLE", "3000"))
PROBE = "overlayd-probe-q7"

RAW_STATES = {
    "script": "scriptDataState",
    "style": "rawtextState", "xmp": "rawtextState", "iframe": "rawtextState", "noembed": "rawtextState",
    "noframes": "rawtextState", "noscript": "rawtextState",
    "textarea": "rcdataState", "title": "rcdataState",
    "plaintext": "plaintextState",
}


def tokens(text):
    """html5lib's tokens, with the content-model switches its tree builder would make."""
    tokenizer = HTMLTokenizer(text)
    for token in tokenizer:
        yield token
        if token["type"] == tokenTypes["StartTag"] and token["name"] in RAW_STATES:
            tokenizer.state = getattr(tokenizer, RAW_STATES[token["name"]])


def probe_is_a_tag(page: bytes, offset: int) -> bool:
    text = page[:offset].decode("latin-1") + f"<{PROBE}>" + page[offset:].decode("latin-1")
    template_depth = 0
    for token in tokens(text):
        kind = token["type"]
        if kind == tokenTypes["StartTag"] and token["name"] == PROBE:
            return template_depth == 0 and not token["data"]
        if kind == tokenTypes["StartTag"] and token["name"] == "template":
            template_depth += 1
        elif kind == tokenTypes["EndTag"] and token["name"] == "template" and template_depth > 0:
            template_depth -= 1
    return False


def sample_files():
    files = []
    for directory in (FUZZ / "corpus/html-injector", FUZZ / ".build-fuzz/corpus/html-injector"):
        if directory.is_dir():
            files += sorted(p for p in directory.iterdir() if p.is_file())
    random.Random(19).shuffle(files)
    return files[:SAMPLE]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    assert BINARY.exists(), f"{BINARY} is missing: build it with scripts/fuzz --build html-injector"
    files = sample_files()
    assert files, "no sample: the seed corpus Fuzz/corpus/html-injector is missing"
    dump = tmp_path_factory.mktemp("dump") / "dump.jsonl"
    env = dict(os.environ, OVERLAYD_FUZZ_DUMP=str(dump), ASAN_OPTIONS="detect_leaks=0")
    for start in range(0, len(files), 500):
        subprocess.run([str(BINARY), *map(str, files[start:start + 500])], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = dump.read_text().splitlines()
    assert len(lines) >= len(files)
    return [json.loads(line) for line in lines]


def test_the_insertion_point_is_a_place_for_a_tag(records):
    checked = 0
    wrong = []
    for record in records:
        if record["outcome"] in ("atEnd", "alreadyPresent"):
            continue
        page = bytes.fromhex(record["page"])
        checked += 1
        if not probe_is_a_tag(page, record["offset"]):
            wrong.append((record["outcome"], record["offset"], page[:300]))
    assert checked > 0
    assert not wrong, f"{len(wrong)} of {checked} insertions are not where a tag can start, e.g. {wrong[:3]}"


def test_the_oracle_can_fail():
    # Inside a comment, an attribute value, a script and a title, the probe is not a tag.
    page = b"<!-- x --><a title='y'><script>z</script><title>t</title>"
    for inside in (b"<!-- x", b"title='y", b"<script>z", b"<title>t"):
        assert not probe_is_a_tag(page, page.index(inside) + len(inside) - 1)
    assert probe_is_a_tag(page, len(b"<!-- x -->"))
