#!/usr/bin/env bash
# overlayd's ext_proc server next to the Go peer (grpc-go) and the HTTP/2 limit (nghttpd),
# measured in the same run, in interleaved rounds, with ../shared/bench (h2load, one Process
# stream per request, exactly as extproc-bench.sh does). Then the memory check.
#
#   bench/extproc/run.sh                      # 3 rounds, pinned + unpinned, headers + body30k
#   ROUNDS=1 MODES=unpinned bench/extproc/run.sh   # quicker
#
# Knobs (environment): ROUNDS [3], MODES ["pinned unpinned"], SETTINGS ["8x16 64x10"],
# BODIES ["headers body30k"], DURATION [8], WARMUP [2], OVERLAYD_BIN [release build below],
# SHARED_BENCH [../shared/bench], BENCH_WORK [/tmp/overlayd-bench], PORT [15060],
# RSS_OPEN [1000], RSS_CHURN [1000000] (0 skips the memory check). PORT is below Linux's ephemeral
# range (32768-60999): a port in it can be held by some client socket of an earlier round, and
# overlayd then exits at start with "address already in use".
# Output: the shared bench's RESULTS.md table (medians over rounds, ratio to the limit in the
# same round) and the rss lines. Everything runs on 127.0.0.1 and stops by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/bench/lib.sh"
PORT=${PORT:-15060}

BIN=$(overlayd_release_bin)

# Tools, fixtures and the Go peer (idempotent; skips what is there).
"$B/install.sh" >&2

export ROUNDS=${ROUNDS:-3} MODES=${MODES:-"pinned unpinned"} DURATION=${DURATION:-8} WARMUP=${WARMUP:-2}
export SETTINGS=${SETTINGS:-"8x16 64x10"} BODIES=${BODIES:-"headers body30k"}
export PARTS=extproc EXTPROC_PEERS="go nghttpd" MONITOR_IGNORE=overlayd
export EXTRA_EXTPROC="overlayd=127.0.0.1:$PORT"
export EXTRA_CMD_overlayd="$BIN serve --listen 127.0.0.1:$PORT --admin 127.0.0.1:0 --log-level warning"
# A failed round (a peer that did not start) is reported by run-all.sh; the memory check still
# runs, and the script exits non-zero at the end.
status=0
"$B/run-all.sh" || status=$?

RSS_OPEN=${RSS_OPEN:-1000}
RSS_CHURN=${RSS_CHURN:-1000000}
if [ "$RSS_CHURN" != 0 ] || [ "$RSS_OPEN" != 0 ]; then
  log=$(mktemp)
  "$BIN" serve --listen "127.0.0.1:$PORT" --admin 127.0.0.1:0 --log-level info 2> "$log" &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
  for _ in $(seq 100); do grep -q "ext_proc listening" "$log" && break; sleep 0.1; done
  grep -q "ext_proc listening" "$log" || { cat "$log" >&2; exit 1; }
  python3 "$ROOT/bench/extproc/rss_check.py" --pid "$pid" --target "127.0.0.1:$PORT" \
    --open "$RSS_OPEN" --churn "$RSS_CHURN"
fi
exit "$status"
