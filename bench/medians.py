#!/usr/bin/env python3
"""Medians per (setting, target) of the rows ../shared/bench's scripts append to a TSV
(extproc-bench.sh / proxy-bench.sh with TSV=FILE), as a Markdown table.

    python3 bench/medians.py ROWS.tsv
"""
import csv
import statistics
import sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
groups: dict[tuple[str, str], list[dict]] = {}
for row in rows:
    groups.setdefault((row["setting"], row["label"]), []).append(row)
print("| setting | target | req/s | p50 ms | p99 ms | failed |")
print("|---|---|---:|---:|---:|---:|")
for (setting, label), items in sorted(groups.items()):
    def med(key):
        return statistics.median(float(r[key]) for r in items)
    failed = sum(int(r["failed"] or 0) + int(r["errored"] or 0) for r in items)
    print(f"| {setting} | {label} | {med('rps'):,.0f} | {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | {failed} |")
