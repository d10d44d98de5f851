#!/usr/bin/env bash
# A whole overlaid page exchange (request headers, response headers, a 30 KB HTML body: three
# messages on one Process stream, bench/extproc/make_exchange.py) through overlayd and through
# the Go peer of ../shared/bench, in interleaved rounds in the same run, with the shared
# extproc-bench.sh (h2load, one stream per request). overlayd does the real work: the overlay's
# split, a (mock, instant) model call, waiting for its result, the injection of the result; the
# Go peer answers CONTINUE twice and inserts its tag into the body.
#
#   bench/extproc/overlaid.sh            # ROUNDS=3 SETTINGS="8x16 64x10" DURATION=8 WARMUP=2
#
# Knobs: ROUNDS, SETTINGS, DURATION, WARMUP, OVERLAYD_BIN (default: release build in
# .build-release), SHARED_BENCH, BENCH_WORK, PORT (15060). Traffic stays on 127.0.0.1; the
# processes started here are stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/bench/lib.sh"
PORT=${PORT:-15060}
ROUNDS=${ROUNDS:-3}
export SETTINGS=${SETTINGS:-"8x16 64x10"} DURATION=${DURATION:-8} WARMUP=${WARMUP:-2} CHECK=0

BIN=$(overlayd_release_bin)
"$B/install.sh" >&2
"$B/start-peers.sh" go >&2
FILE=$(python3 "$ROOT/bench/extproc/make_exchange.py" "$BENCH_WORK/bodies")

log=$(mktemp)
"$BIN" serve --config "$ROOT/bench/extproc/overlaid.yaml" --listen "127.0.0.1:$PORT" --admin 127.0.0.1:0 \
  --log-level warning 2> "$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; "$B/stop-peers.sh" go >&2 || true; rm -f "$log"' EXIT
wait_listening "$PORT"

tsv="$(mktemp -d)/rows.tsv"
for round in $(seq "$ROUNDS"); do
  for target in "overlayd=127.0.0.1:$PORT" "go=127.0.0.1:50052"; do
    LABEL=${target%%=*} TSV="$tsv" "$B/extproc-bench.sh" "${target#*=}" "$FILE" | sed "s/^/round $round: /"
  done
done
echo
echo "medians over $ROUNDS rounds (same run):"
python3 "$ROOT/bench/medians.py" "$tsv"
