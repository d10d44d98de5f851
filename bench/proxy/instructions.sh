#!/usr/bin/env bash
# User-space instructions per proxied request (valgrind's callgrind), for overlayd builds and the
# nio-floor peer: a count that the shared machine's noise does not move (two runs of one build
# differ by well under 1 %), for telling small per-request cuts apart where req/s and CPU time
# cannot. Not time: cache misses, the kernel's share (about half of the CPU per request) and
# context switches are not in it. Use it to compare builds; floor.sh says what they are worth.
#
#   bench/proxy/instructions.sh                       # this checkout's release build
#   bench/proxy/instructions.sh OLD_BIN NEW_BIN ...   # several builds, same run
#
# Each binary serves bench/proxy/overlay.yaml before the shared bench's nginx upstream (a ~30 KB
# page) under callgrind; h2load --h1 (4 connections) sends WARMUP requests, the counters are
# zeroed, then N requests of each target go through and the counters are dumped:
#   passthru   a host no overlay matches (Host: passthrough.test)
#   overlaid   the overlaid page (split, instant mock model, result island, injection)
# and, unless NIO_FLOOR=0, bench/proxy/nio-floor on the same two hosts (its tag injection for
# the second). Knobs: N [2000], WARMUP [1000], NIO_FLOOR [1], PORT [8097], KEEP [unset: a folder
# that gets each dump as KEEP/<n>-<target>.cg for callgrind_annotate]. Binaries are measured
# from a copy without DWARF (valgrind 3.19 cannot read Swift's); valgrind is installed with apt
# when missing (as root).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/bench/lib.sh"
N=${N:-2000}
WARMUP=${WARMUP:-1000}
NIO_FLOOR=${NIO_FLOOR:-1}
PORT=${PORT:-8097}

if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >&2
fi
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$(overlayd_release_bin)")
FLOOR_BIN=
[ "$NIO_FLOOR" = 1 ] && FLOOR_BIN=$(nio_floor_bin)
"$B/install.sh" >&2
"$B/start-peers.sh" nginx >&2

work=$(mktemp -d)
SERVER_PID=
trap 'if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi; "$B/stop-peers.sh" nginx >&2 || true; rm -rf "$work"' EXIT

# Runs "$@" (a server listening on $PORT) under callgrind and prints its instructions per request
# for each target.
measure() {
  local label=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no --collect-jumps=no \
    --compress-strings=no --compress-pos=no "$@" > "$work/server.log" 2>&1 &
  SERVER_PID=$!
  local up=0
  for _ in $(seq 600); do
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then up=1; break; fi
    sleep 0.1
  done
  [ "$up" = 1 ] || { echo "FAIL: $label does not answer under valgrind" >&2; tail -20 "$work/server.log" >&2; exit 1; }
  local dumps=0 target authority out ok ir
  for target in passthru overlaid; do
    authority=()
    [ "$target" = passthru ] && authority=(-H ":authority: passthrough.test")
    h2load --h1 -n "$WARMUP" -c 4 "${authority[@]}" "http://127.0.0.1:$PORT/" > /dev/null
    callgrind_control -z "$SERVER_PID" > /dev/null
    out=$(h2load --h1 -n "$N" -c 4 "${authority[@]}" "http://127.0.0.1:$PORT/")
    callgrind_control -d "$SERVER_PID" > /dev/null
    dumps=$((dumps + 1))
    ok=$(grep -oP 'status codes: \K\d+(?= 2xx)' <<< "$out")
    [ "$ok" = "$N" ] || { echo "FAIL: $label $target: $ok of $N answered 2xx" >&2; exit 1; }
    if [ -n "${KEEP:-}" ]; then
      mkdir -p "$KEEP"; cp "$work/cg.$SERVER_PID.$dumps" "$KEEP/$((++kept))-$target.cg"
    fi
    ir=$(grep -m1 '^summary:' "$work/cg.$SERVER_PID.$dumps" | awk '{print $2}')
    [ -n "$ir" ] || ir=$(grep -m1 '^totals:' "$work/cg.$SERVER_PID.$dumps" | awk '{print $2}')
    printf '| %s | %s | %s |\n' "$label" "$target" "$(python3 -c "print(f'{$ir / $N:,.0f}')")"
  done
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

kept=0
echo "| build | target | instructions per request |"
echo "|---|---|---:|"
for bin in "${bins[@]}"; do
  objcopy --strip-debug "$bin" "$work/overlayd"
  measure "$bin" "$work/overlayd" proxy --upstream http://127.0.0.1:18081 --listen "127.0.0.1:$PORT" \
    --admin 127.0.0.1:0 --config "$ROOT/bench/proxy/overlay.yaml" --log-level warning
done
if [ -n "$FLOOR_BIN" ]; then
  objcopy --strip-debug "$FLOOR_BIN" "$work/nio-floor"
  measure nio-floor "$work/nio-floor" "$PORT" 18081 2
fi
