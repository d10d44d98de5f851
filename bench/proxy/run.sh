#!/usr/bin/env bash
# overlayd proxy next to nginx + sub_filter (../shared/bench's peer doing the same injection) and
# the upstream served directly (the limit): a 30 KB HTML page at c=1, 16, 64 with wrk and
# h2load --h1, in interleaved rounds in the same run (../shared/bench/proxy-bench.sh).
#
#   bench/proxy/run.sh               # ROUNDS=3 DURATION=8 WARMUP=2 CONNS="1 16 64"
#
# overlayd proxies to the shared upstream (127.0.0.1:18081) on 127.0.0.1:$PORT (8090) with
# bench/proxy/overlay.yaml (an instant mock model). Its page carries the overlay snippet, not
# nginx's bare tag, so proxy-bench.sh's tag check is replaced by one of ours (EXPECT_TAG=0 + curl).
# Knobs: ROUNDS, DURATION, WARMUP, CONNS, TOOLS, OVERLAYD_BIN, SHARED_BENCH, BENCH_WORK, PORT.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/bench/lib.sh"
PORT=${PORT:-8090}
ROUNDS=${ROUNDS:-3}
export DURATION=${DURATION:-8} WARMUP=${WARMUP:-2} CONNS=${CONNS:-"1 16 64"}

BIN=$(overlayd_release_bin)
"$B/install.sh" >&2
"$B/start-peers.sh" nginx >&2

log=$(mktemp)
PROXY_PID=
trap 'if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi; "$B/stop-peers.sh" nginx >&2 || true; rm -f "$log"' EXIT
start_bench_proxy "$BIN" "$PORT" "$log"

tsv="$(mktemp -d)/rows.tsv"
for round in $(seq "$ROUNDS"); do
  LABEL=overlayd EXPECT_TAG=0 TSV="$tsv" "$B/proxy-bench.sh" "http://127.0.0.1:$PORT/" | sed "s/^/round $round: /"
  LABEL=nginx-subfilter TSV="$tsv" "$B/proxy-bench.sh" http://127.0.0.1:18082/ | sed "s/^/round $round: /"
  LABEL=upstream-direct EXPECT_TAG=0 TSV="$tsv" "$B/proxy-bench.sh" http://127.0.0.1:18081/ | sed "s/^/round $round: /"
done
echo
echo "medians over $ROUNDS rounds (same run):"
python3 "$ROOT/bench/medians.py" "$tsv"
