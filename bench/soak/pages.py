"""The legacy app's pages, and the byte-exact check of what a client got back.

Every page is a pure function of ``(variant, rid)``: the legacy app serves it, and the checker
builds it again to compare, so a body that reaches the client holds its own request id and a
mix-up between two exchanges is visible. Each HTML variant knows where overlayd must insert its
snippet (README "Injection": before the first real ``</head>``; else right after the first
``<body …>`` start tag; else before ``</body>``; else at the end; never twice), or that it must
not insert anything (already carries the marker, CSP forbids scripts, not a 2xx).

:func:`verify` compares a received body with the original: the original bytes plus at most one
snippet at exactly the expected offset (HTML, also inside gzip), the original object plus the one
added member (JSON, checked byte by byte as ``JSONEnricher`` builds it), or byte identity.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass

SNIPPET_RE = re.compile(
    rb'<script data-overlayd type="application/json" id="overlayd-result">([^<]*)</script>'
    rb'<script src="/__overlay/overlay\.js" defer(?: nonce="([^"]*)")?></script>')
JSON_KEY = "overlay"
MARK = b"\x00INSERT\x00"  # where the snippet belongs; removed before the page is served

HTML_VARIANTS = ("std", "big", "bodyfirst", "tricky", "bodyend", "atend", "utf8", "already", "csp",
                 "cspblock", "gzip", "notfound")
JSON_VARIANTS = ("obj", "empty", "list", "haskey", "outside")


@dataclass(frozen=True)
class Page:
    variant: str
    status: int
    headers: tuple[tuple[str, str], ...]  # without content-length / transfer-encoding
    body: bytes  # as sent on the wire (gzip for the gzip variant)
    plain: bytes  # decoded body
    kind: str  # "html" | "json"
    insert_at: int | None  # HTML: where the snippet must go in `plain`; None: nothing may be inserted
    enrich: bool = False  # JSON: the one member must be added (on an overlaid host)
    encoding: str | None = None
    nonce: str | None = None


def path_for(variant: str, rid: str) -> str:
    if variant in JSON_VARIANTS:
        return f"/data/{rid}" if variant == "outside" else f"/api/{variant}/{rid}"
    return f"/p/{variant}/{rid}"


def variant_of(path: str) -> tuple[str, str]:
    """(variant, rid) of a path made by :func:`path_for`."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[0] == "data":
        return "outside", parts[1]
    return parts[1], parts[2]


def _rows(rid: str, count: int) -> str:
    return "".join(f"<tr><td>row {i} of {rid}</td><td>{(i * 7919) % 10007}</td></tr>\n" for i in range(count))


def _html(rid: str, variant: str) -> tuple[bytes, tuple[tuple[str, str], ...], int, str | None]:
    """The page with MARK at the insertion point (or without one), extra headers, status, nonce."""
    title = f"Legacy page {rid}"
    head = f"<meta charset=utf-8>\n<title>{title}</title>\n<link rel=stylesheet href=/s.css>\n"
    body = f"<h1>{title}</h1>\n<table>\n{_rows(rid, 30)}</table>\n"
    extra: tuple[tuple[str, str], ...] = ()
    status, nonce = 200, None
    if variant in ("std", "gzip", "notfound"):
        text = f"<!doctype html>\n<html lang=en>\n<head>\n{head}\x00</head>\n<body>\n{body}</body>\n</html>\n"
        if variant == "notfound":
            status, text = 404, text.replace("\x00", "")
    elif variant == "big":  # a long head (several chunks before the insertion point) and a long body
        metas = "".join(f'<meta name="m{i}" content="{rid} {i} {"x" * 40}">\n' for i in range(400))
        text = (f"<!doctype html>\n<html>\n<head>\n{head}{metas}\x00</head>\n<body>\n{body}"
                f"<table>{_rows(rid, 1500)}</table>\n</body>\n</html>\n")
    elif variant == "bodyfirst":  # no </head>: right after the body start tag (a '>' in a quoted value)
        text = f"<!doctype html>\n<html>\n<BODY class=\"legacy\" data-x='a>b'\n>\x00\n{body}</body></html>\n"
    elif variant == "tricky":  # '</head>' where it does not count, then the real one in capitals
        text = (f"<!DOCTYPE html><html><head>{head}<!-- </head> <body> -->\n"
                f"<script>var s = \"</head><body>\"; if (a < b) {{}}</script>\n"
                f"<style>/* </head> */ p {{ color: red }}</style>\n"
                f"<meta content=\"</head>\" name=tricky>\n<title>a </head> title</title>\n"
                f"<template><body></head></template>\n\x00</HEAD ><body>{body}</body></html>")
    elif variant == "bodyend":  # neither </head> nor <body>: before </body>
        text = f"<div>{body}</div>\n\x00</body>\n</html>\n"
    elif variant == "atend":  # none of them: at the very end
        text = f"<div>{body}</div>\n<p>no head, no body tags\n\x00"
    elif variant == "utf8":  # multi-byte characters around the insertion point and chunk cuts
        text = (f"<html><head><title>Überblick — {rid} ✓ 日本語</title>\n<meta name=d content=\"é\u2028\">"
                f"\x00</head><body>{'ç€𝄞' * 500}{body}</body></html>")
    elif variant == "already":  # our marker is there: nothing may be inserted
        text = (f"<html><head><script data-overlayd type=\"application/json\" id=\"overlayd-result\">{{}}"
                f"</script>{head}</head><body>{body}</body></html>")
    elif variant == "csp":  # a nonce policy: the snippet's script carries the nonce
        nonce = f"n{rid.replace('-', '')}"
        extra = (("content-security-policy", f"default-src 'self'; script-src 'self' 'nonce-{nonce}'"),)
        text = f"<html><head>{head}\x00</head><body>{body}</body></html>"
    elif variant == "cspblock":  # no script may run: nothing may be inserted
        extra = (("content-security-policy", "script-src 'none'"),)
        text = f"<html><head>{head}</head><body>{body}</body></html>"
    else:
        raise ValueError(variant)
    return text.encode(), extra, status, nonce


def _json(rid: str, variant: str) -> tuple[bytes, bool]:
    if variant in ("obj", "outside"):
        value = {"rid": rid, "accounts": [{"name": f"Acme {i}", "balance": i * 101, "note": "ü\u2028<&>"}
                                          for i in range(20)], "nested": {"overlay_like": True}}
        return (json.dumps(value, indent=1, ensure_ascii=False) + "\n").encode(), variant == "obj"
    if variant == "empty":
        return b"{ }", True
    if variant == "list":
        return json.dumps([rid, 1, 2, 3]).encode(), False
    if variant == "haskey":
        return json.dumps({"rid": rid, JSON_KEY: "the app's own"}).encode(), False
    raise ValueError(variant)


def page(variant: str, rid: str) -> Page:
    if variant in JSON_VARIANTS:
        body, enrich = _json(rid, variant)
        return Page(variant, 200, (("content-type", "application/json"),), body, body, "json", None, enrich)
    marked, extra, status, nonce = _html(rid, variant)
    at = marked.find(b"\x00")
    plain = marked.replace(b"\x00", b"")
    headers = (("content-type", "text/html; charset=utf-8"), *extra)
    encoding = None
    wire = plain
    if variant == "gzip":
        encoding = "gzip"
        wire = gzip.compress(plain, mtime=0)
        headers = (*headers, ("content-encoding", "gzip"))
    return Page(variant, status, headers, wire, plain, "html", at if at >= 0 else None, encoding=encoding,
                nonce=nonce)


# ---------------------------------------------------------------------------------- checking


@dataclass
class Verdict:
    ok: bool
    outcome: str  # identical | injected | enriched | untouched | altered
    island: dict | None = None
    detail: str = ""


def first_difference(a: bytes, b: bytes) -> str:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return (f"first difference at byte {n} (lengths {len(a)} vs {len(b)}): got {a[max(0, n - 40):n + 60]!r} "
            f"expected {b[max(0, n - 40):n + 60]!r}")


def _decode(body: bytes, encoding: str | None) -> bytes | None:
    if encoding is None:
        return body
    try:
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    except zlib.error:
        return None


def verify(pg: Page, got: bytes, overlaid: bool, *, must_insert: bool) -> Verdict:
    """Compares ``got`` (the body as the client received it, still encoded) with ``pg``.

    ``overlaid``: the host has an overlay (an insertion is allowed where the page allows one).
    ``must_insert``: overlayd saw the whole body, so the insertion must be there (a model that is
    down still gets a ``failed`` island; only fail-open paths may leave the page alone).
    """
    if got == pg.body:
        if overlaid and must_insert and (pg.insert_at is not None or pg.enrich) and pg.status == 200:
            return Verdict(False, "altered", detail="overlaid page came back without the insertion")
        return Verdict(True, "identical")
    if not overlaid:
        return Verdict(False, "altered", detail="pass-through host: " + first_difference(got, pg.body))
    if pg.kind == "json":
        return _verify_json(pg, got)
    plain = _decode(got, pg.encoding)
    if plain is None:
        return Verdict(False, "altered", detail=f"body is not valid {pg.encoding} any more ({len(got)} bytes)")
    found = [m for m in SNIPPET_RE.finditer(plain)]
    if pg.insert_at is None:
        return Verdict(False, "altered", detail="nothing may be inserted into this page: " +
                       first_difference(plain, pg.plain))
    if len(found) != 1:
        return Verdict(False, "altered", detail=f"{len(found)} snippets in the page; " +
                       first_difference(plain, pg.plain))
    match = found[0]
    without = plain[:match.start()] + plain[match.end():]
    if without != pg.plain:
        return Verdict(False, "altered", detail="bytes besides the snippet changed: " +
                       first_difference(without, pg.plain))
    if match.start() != pg.insert_at:
        return Verdict(False, "altered", detail=f"snippet at byte {match.start()}, expected at {pg.insert_at}: "
                       f"...{plain[max(0, match.start() - 50):match.start()]!r}<snippet>")
    nonce = match.group(2).decode() if match.group(2) is not None else None
    if nonce != pg.nonce:
        return Verdict(False, "altered", detail=f"script nonce {nonce!r}, expected {pg.nonce!r}")
    try:
        island = json.loads(match.group(1))
    except ValueError as err:
        return Verdict(False, "altered", detail=f"island is not JSON ({err}): {match.group(1)[:200]!r}")
    return Verdict(True, "injected", island)


def _verify_json(pg: Page, got: bytes) -> Verdict:
    """``JSONEnricher``: body[..<close] + ("," if members) + '"overlay":' + value + body[close...]."""
    if not pg.enrich:
        return Verdict(False, "altered", detail="JSON that must pass untouched changed: " +
                       first_difference(got, pg.body))
    close = pg.body.rstrip().rfind(b"}")
    prefix, suffix = pg.body[:close], pg.body[close:]
    sep = b"," if pg.body[:close].strip() != b"{" else b""
    head = prefix + sep + b'"' + JSON_KEY.encode() + b'":'
    if not (got.startswith(head) and got.endswith(suffix) and len(got) > len(head) + len(suffix)):
        return Verdict(False, "altered", detail="not the original object plus one member: " +
                       first_difference(got, pg.body))
    value = got[len(head):len(got) - len(suffix)]
    try:
        island = json.loads(value)
        whole = json.loads(got)
    except ValueError as err:
        return Verdict(False, "altered", detail=f"enriched body is not JSON ({err})")
    original = json.loads(pg.body)
    whole.pop(JSON_KEY, None)
    if whole != original or not isinstance(island, dict):
        return Verdict(False, "altered", detail="enriched object differs from the original beyond the one member")
    return Verdict(True, "enriched", island)


def check_island(island: dict, *, overlay: str, models: set[str], path: str) -> str | None:
    """The result's fields: its overlay and model, a known status, and a ready text about this
    very page (mock and fake answers quote the path, so cross-talk between exchanges shows)."""
    status = island.get("status")
    if island.get("overlay") != overlay:
        return f"island overlay {island.get('overlay')!r}, expected {overlay!r}"
    if island.get("model") not in models:
        return f"island model {island.get('model')!r} not one of {sorted(models)}"
    if status not in ("ready", "pending", "failed"):
        return f"island status {status!r}"
    if status == "ready" and path not in island.get("text", ""):
        return f"ready text does not mention this page's path {path!r}: {island.get('text', '')[:200]!r}"
    if status == "pending" and not re.fullmatch(r"[0-9a-f]{32}", island.get("token", "")):
        return f"pending without a token: {island!r}"
    return None
