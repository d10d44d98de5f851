#!/usr/bin/env bash
# Before and after a change, in the same run: two overlayd binaries (HEAD and BASE) next to the
# Go ext_proc peer and nginx sub_filter, in interleaved rounds (../shared/bench's load tools).
#
#   bench/compare.sh BASE_BIN [HEAD_BIN]      # HEAD_BIN: the release build of this checkout
#
# Per round, in this order (HEAD and BASE swap places every other round):
#   ext_proc: go, HEAD, BASE, each for every body in BODIES at every setting in SETTINGS
#             (h2load, one Process stream per request: extproc-bench.sh);
#   proxy:    nginx-subfilter, HEAD, BASE in front of the shared upstream (127.0.0.1:18081) with
#             bench/proxy/overlay.yaml (an instant mock model), wrk and h2load --h1 at CONNS.
# Each server is started fresh for its turn and stopped by PID after it. Output: every row, then
# per (setting, target) the median over the rounds of req/s and p99, and of each overlayd's
# ratio to its peer within the round (go for ext_proc, nginx-subfilter for the proxy), and
# HEAD/BASE. Knobs: ROUNDS [3], SETTINGS ["8x16 64x10"], BODIES ["headers body30k"],
# CONNS ["16 64"], TOOLS ["wrk h2load"], DURATION [8], WARMUP [2], PORT [15060], PROXY_PORT [8090].
# Unpinned (the servers and the load tools share the two cores, as in production sidecars).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
. "$ROOT/bench/lib.sh"
BASE_BIN=${1:?usage: bench/compare.sh BASE_BIN [HEAD_BIN]}
[ -x "$BASE_BIN" ] || { echo "no overlayd binary at $BASE_BIN" >&2; exit 2; }
if [ -n "${2:-}" ]; then HEAD_BIN=$2; else HEAD_BIN=$(overlayd_release_bin); fi
[ -x "$HEAD_BIN" ] || { echo "no overlayd binary at $HEAD_BIN" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
SETTINGS=${SETTINGS:-"8x16 64x10"}
BODIES=${BODIES:-"headers body30k"}
export DURATION=${DURATION:-8} WARMUP=${WARMUP:-2} CONNS=${CONNS:-"16 64"} TOOLS=${TOOLS:-"wrk h2load"}
PORT=${PORT:-15060}
PROXY_PORT=${PROXY_PORT:-8090}

"$B/install.sh" >&2
. "$B/common.sh"
"$B/start-peers.sh" nginx >&2

work=$(mktemp -d)
tsv_e="$work/extproc.tsv" tsv_p="$work/proxy.tsv"
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; "$B/stop-peers.sh" nginx >&2 || true; rm -rf "$work"' EXIT
wait_listening() {  # PORT: until something accepts there (the server logs its own errors)
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}

extproc_turn() {  # LABEL ROUND [BIN]: start (go peer or overlayd), bench every body, stop
  local label=$1 round=$2 bin=${3:-} target
  if [ -z "$bin" ]; then
    start_peer go unpinned "$work/go.log"; PID=$PEER_PID; target=127.0.0.1:$(peer_port go)
  else
    "$bin" serve --listen "127.0.0.1:$PORT" --admin 127.0.0.1:0 --log-level warning 2> "$work/$label.log" &
    PID=$!; target=127.0.0.1:$PORT
  fi
  wait_listening "${target##*:}"
  for body in $BODIES; do
    SETTINGS=$SETTINGS LABEL="$label#$round" TSV="$tsv_e" "$B/extproc-bench.sh" "$target" "$body" \
      | sed "s/^/round $round: /"
  done
  stop
}

proxy_turn() {  # LABEL ROUND [BIN]: nginx-subfilter (no BIN) or overlayd proxy in front of :18081
  local label=$1 round=$2 bin=${3:-}
  if [ -z "$bin" ]; then
    LABEL="$label#$round" TSV="$tsv_p" "$B/proxy-bench.sh" http://127.0.0.1:18082/ | sed "s/^/round $round: /"
    return
  fi
  start_bench_proxy "$bin" "$PROXY_PORT" "$work/$label-proxy.log" > /dev/null
  PID=$PROXY_PID
  LABEL="$label#$round" EXPECT_TAG=0 TSV="$tsv_p" "$B/proxy-bench.sh" "http://127.0.0.1:$PROXY_PORT/" \
    | sed "s/^/round $round: /"
  stop
}

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="head base"; else order="base head"; fi
  extproc_turn go "$round"
  for who in $order; do
    if [ "$who" = head ]; then extproc_turn head "$round" "$HEAD_BIN"; else extproc_turn base "$round" "$BASE_BIN"; fi
  done
  proxy_turn nginx-subfilter "$round"
  for who in $order; do
    if [ "$who" = head ]; then proxy_turn head "$round" "$HEAD_BIN"; else proxy_turn base "$round" "$BASE_BIN"; fi
  done
done

echo
echo "HEAD: $HEAD_BIN"
echo "BASE: $BASE_BIN"
python3 "$ROOT/bench/compare_table.py" "$tsv_e" go "$tsv_p" nginx-subfilter
