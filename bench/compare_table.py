#!/usr/bin/env python3
"""The tables of bench/compare.sh: per (setting, target), medians over the rounds of req/s and
p99, and each overlayd build's ratios taken within a round, then the median: to its peer
(req/s ours / peer's; p99 ours / peer's) and HEAD / BASE.

    python3 bench/compare_table.py EXTPROC.tsv PEER PROXY.tsv PEER

Rows are labelled NAME#ROUND (../shared/bench's TSV: setting, label, rps, p50_ms, p99_ms, ...).
"""
import csv
import statistics
import sys


def load(path):
    rows = {}
    for row in csv.DictReader(open(path), delimiter="\t"):
        name, _, round_ = row["label"].rpartition("#")
        rows[(row["setting"], name, int(round_))] = (float(row["rps"]), float(row["p99_ms"]),
                                                     int(row["failed"] or 0) + int(row["errored"] or 0))
    return rows


def table(title, rows, peer):
    settings = sorted({s for s, _, _ in rows})
    rounds = sorted({r for _, _, r in rows})
    print(f"\n{title}: medians over {len(rounds)} rounds (ratios taken within each round)")
    print(f"| setting | target | req/s | p99 ms | req/s ÷ {peer} | p99 ÷ {peer} | req/s HEAD ÷ BASE | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for setting in settings:
        for name in (peer, "head", "base"):
            mine = [rows[(setting, name, r)] for r in rounds if (setting, name, r) in rows]
            if not mine:
                continue
            rps = statistics.median(v[0] for v in mine)
            p99 = statistics.median(v[1] for v in mine)
            failed = sum(v[2] for v in mine)
            cells = ["", "", ""]
            if name != peer:
                pairs = [(rows[(setting, name, r)], rows[(setting, peer, r)]) for r in rounds
                         if (setting, name, r) in rows and (setting, peer, r) in rows]
                if pairs:
                    cells[0] = f"{statistics.median(a[0] / b[0] for a, b in pairs):.3f}"
                    cells[1] = f"{statistics.median(a[1] / b[1] for a, b in pairs if b[1] > 0):.2f}"
            if name == "head":
                pairs = [(rows[(setting, 'head', r)], rows[(setting, 'base', r)]) for r in rounds
                         if (setting, "head", r) in rows and (setting, "base", r) in rows]
                if pairs:
                    cells[2] = f"{statistics.median(a[0] / b[0] for a, b in pairs):.3f}"
            print(f"| {setting} | {name} | {rps:,.0f} | {p99:.2f} | {cells[0]} | {cells[1]} | {cells[2]} | {failed} |")


if __name__ == "__main__":
    extproc, extproc_peer, proxy, proxy_peer = sys.argv[1:5]
    table("ext_proc", load(extproc), extproc_peer)
    table("proxy", load(proxy), proxy_peer)
