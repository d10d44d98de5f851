#!/usr/bin/env bash
# The cost of tracing (issue 17) on ext_proc header-only streams: overlayd with tracing off (no
# --otlp-endpoint), on at 1 % and on at 100 % sampling, exporting over OTLP/HTTP to a local sink
# that reads each request and answers 200 (bench/extproc/otlp_sink.py). Each round starts each
# configuration afresh, measures it with the shared extproc-bench.sh (h2load, one Process stream
# per request) and stops it (SIGTERM: the exporter flushes before the next one starts, so one
# configuration's export never overlaps another's measurement); the configurations are
# interleaved over the rounds, and the medians printed at the end.
#
#   bench/extproc/tracing.sh     # ROUNDS=3 SETTINGS="64x10" DURATION=8 WARMUP=2
#
# Knobs: ROUNDS, SETTINGS, DURATION, WARMUP, OVERLAYD_BIN (default: release build in
# .build-release), SHARED_BENCH, BENCH_WORK, PORT (15061), SINK_PORT (15318; both below Linux's
# ephemeral range). Traffic stays on 127.0.0.1; the processes started here are stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/bench/lib.sh"
PORT=${PORT:-15061}
SINK_PORT=${SINK_PORT:-15318}
ROUNDS=${ROUNDS:-3}
export SETTINGS=${SETTINGS:-"64x10"} DURATION=${DURATION:-8} WARMUP=${WARMUP:-2} CHECK=0

BIN=$(overlayd_release_bin)
"$B/install.sh" >&2

work=$(mktemp -d)
sink_pid=""
pid=""
stop_overlayd() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
cleanup() {
  stop_overlayd
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

python3 "$ROOT/bench/extproc/otlp_sink.py" "$SINK_PORT" "$work/sink.count" &
sink_pid=$!

wait_listening "$SINK_PORT"

# label -> overlayd's tracing flags.
configs=(
  "off="
  "on-1%=--otlp-endpoint http://127.0.0.1:$SINK_PORT --trace-sample-ratio 0.01"
  "on-100%=--otlp-endpoint http://127.0.0.1:$SINK_PORT --trace-sample-ratio 1"
)

tsv="$work/rows.tsv"
for round in $(seq "$ROUNDS"); do
  for config in "${configs[@]}"; do
    label=${config%%=*}
    read -r -a flags <<< "${config#*=}"
    "$BIN" serve --listen "127.0.0.1:$PORT" --admin 127.0.0.1:0 --log-level warning "${flags[@]}" \
      2> "$work/overlayd-$label.log" &
    pid=$!
    wait_listening "$PORT"
    LABEL=$label TSV="$tsv" "$B/extproc-bench.sh" "127.0.0.1:$PORT" headers | sed "s/^/round $round: /"
    stop_overlayd
  done
done
echo
echo "OTLP export requests the sink received in all rounds: $(cat "$work/sink.count" 2>/dev/null || echo 0)"
echo "medians over $ROUNDS rounds (same run):"
python3 "$ROOT/bench/medians.py" "$tsv"
