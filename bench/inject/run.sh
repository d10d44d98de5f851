#!/usr/bin/env bash
# bench/inject: MB/s of OverlayInject's HTMLInjector on a 100 KB page in 1 KB and 16 KB chunks,
# next to a plain byte scan of the same chunks (the limit) and a copy+scan, in the same run.
#
#   bench/inject/run.sh                          # 7 rounds, >= 1 s per measurement
#   bench/inject/run.sh --rounds 3 --seconds 0.3 # quicker (arguments go to inject-bench)
#
# Builds only the inject-bench product, in release, with the scratch path bench/inject/.build
# (git-ignored). Resolving pulls the main package's dependency manifests; only OverlayInject
# (stdlib only) is compiled.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
cd "$HERE"

echo "== machine: $(nproc) CPUs; $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //' || true)"
echo "== date: $(date -u +%Y-%m-%dT%H:%M:%SZ); load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
echo "== $(swift --version 2>&1 | head -1)"
# Pin the same dependency versions as the main package (both Package.resolved files are git-ignored).
if [ -f ../../Package.resolved ] && ! cmp -s ../../Package.resolved Package.resolved; then
  cp ../../Package.resolved Package.resolved
fi
echo "== building inject-bench (release, --scratch-path $HERE/.build)"
swift build -c release --scratch-path "$HERE/.build" --product inject-bench >&2
BIN=$(swift build -c release --scratch-path "$HERE/.build" --show-bin-path)/inject-bench
echo "== $BIN $*"
"$BIN" "$@"
