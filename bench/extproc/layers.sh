#!/usr/bin/env bash
# Two overlayd builds side by side with the peers (issue 16): req/s, p99 and CPU µs per
# header-only exchange of each server, read from /proc around interleaved h2load runs (same run),
# for
#   nghttp2    overlayd serve, this build (OVERLAYD_BIN, or the release build of this tree)
#   base       overlayd serve, another build (BASE_BIN, required)
#   go         ../shared/bench's Go peer (grpc-go)
#   nghttpd    nghttp2's own server with a static file: the HTTP/2 limit (no gRPC, no protobuf)
#
#   BASE_BIN=/path/to/overlayd bench/extproc/layers.sh   # ROUNDS=3 DURATION=5 SETTINGS="8x16 64x10" PINNED=1
#
# Issue 16's gate compared the two HTTP/2 layers of one build this way (the swift-nio-http2 layer
# is gone since); its part 4, libprotobuf-c decoding against the build before it.
#
# PINNED=1 puts every server on core 0 and h2load on core 1 (CPU per exchange is then the
# server's alone); PINNED=0 leaves both free. Knobs: ROUNDS, DURATION, SETTINGS, PINNED,
# OVERLAYD_BIN, SHARED_BENCH, BENCH_WORK, PORT. Everything runs on 127.0.0.1 and stops by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/bench/lib.sh"
PORT=${PORT:-15070}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
SETTINGS=${SETTINGS:-"8x16 64x10"}
PINNED=${PINNED:-1}

[ -n "${BASE_BIN:-}" ] || { echo "set BASE_BIN to the overlayd build to compare with" >&2; exit 2; }
[ -x "$BASE_BIN" ] || { echo "BASE_BIN=$BASE_BIN is not an executable" >&2; exit 2; }
BIN=$(overlayd_release_bin)
"$B/install.sh" >&2
if [ "$PINNED" = 1 ]; then PIN_CPU=0 "$B/start-peers.sh" go nghttpd >&2; else "$B/start-peers.sh" go nghttpd >&2; fi
BODY=$BENCH_WORK/bodies/headers.grpc
[ -f "$BODY" ] || { echo "no $BODY (install.sh makes it)" >&2; exit 2; }

rows=$(mktemp)
logs=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  "$B/stop-peers.sh" go nghttpd >&2 || true
  rm -rf "$rows" "$logs"
}
trap cleanup EXIT

pin=()
client=()
if [ "$PINNED" = 1 ]; then pin=(taskset -c 0); client=(taskset -c 1); fi
start_overlayd() {  # binary port log
  "${pin[@]}" "$1" serve --listen "127.0.0.1:$2" --admin 127.0.0.1:0 --log-level warning \
    2> "$logs/$3.log" &
  pids+=($!)
  wait_listening "$2"
}
start_overlayd "$BIN" "$PORT" nghttp2
pid_nghttp2=${pids[-1]}
second=base
start_overlayd "$BASE_BIN" "$((PORT + 1))" base
pid_nio=${pids[-1]}
pid_go=$(cat "$BENCH_WORK/pids/go.pid")
pid_nghttpd=$(cat "$BENCH_WORK/pids/nghttpd.pid")
# Each answers a Process stream (nghttpd: its static file) before the rounds.
python3 "$B/grpc_check.py" "127.0.0.1:$PORT" "$BODY" -n 20 >&2
python3 "$B/grpc_check.py" "127.0.0.1:$((PORT + 1))" "$BODY" -n 20 >&2

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

measure() {  # label pid target path conns streams
  local label=$1 pid=$2 target=$3 path=$4 c=$5 m=$6 t0 t1 line
  rm -f "$logs/h2.log" "$logs/h2.tsv"
  t0=$(ticks "$pid")
  "${client[@]}" h2load -D "$DURATION" -c "$c" -m "$m" -t 1 -d "$BODY" --log-file="$logs/h2.log" \
    -H 'content-type: application/grpc' -H 'te: trailers' "http://$target$path" > "$logs/h2.out" 2>&1 || true
  t1=$(ticks "$pid")
  python3 "$B/h2summary.py" "$logs/h2.out" "$logs/h2.log" --tsv "$logs/h2.tsv" > /dev/null || true
  # rps done failed p99_ms (h2summary's columns)
  line=$(tail -1 "$logs/h2.tsv" | awk -F'\t' '{print $3 "\t" $4 "\t" $6 + $7 "\t" $10}')
  printf '%s\t%s\t%s\t%s\n' "$label" "$c x $m" "$((t1 - t0))" "$line" >> "$rows"
  echo "round $round c=$c m=$m $label: $(cut -f1 <<< "$line") req/s, p99 $(cut -f4 <<< "$line") ms" >&2
}

PROCESS=/envoy.service.ext_proc.v3.ExternalProcessor/Process
for round in $(seq "$ROUNDS"); do
  for s in $SETTINGS; do
    c=${s%x*}; m=${s#*x}
    measure nghttp2 "$pid_nghttp2" "127.0.0.1:$PORT" "$PROCESS" "$c" "$m"
    measure "$second" "$pid_nio" "127.0.0.1:$((PORT + 1))" "$PROCESS" "$c" "$m"
    measure go "$pid_go" "127.0.0.1:50052" "$PROCESS" "$c" "$m"
    measure nghttpd "$pid_nghttpd" "127.0.0.1:18080" /resp-headers.bin "$c" "$m"
  done
done

python3 - "$rows" "$hz" "$PINNED" "$second" <<'EOF'
import statistics, sys
path, hz, pinned, second = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
rows = [line.rstrip("\n").split("\t") for line in open(path)]
by = {}
for label, setting, ticks, rps, done, failed, p99 in rows:
    entry = by.setdefault((setting, label), {"rps": [], "us": [], "failed": [], "p99": []})
    entry["rps"].append(float(rps))
    entry["us"].append(float(ticks) / hz * 1e6 / max(1, int(done)))
    entry["failed"].append(failed)
    entry["p99"].append(float(p99))
labels = ["nghttp2", second, "go", "nghttpd"]
print(f"\nheader-only, {'pinned (servers on core 0, h2load on core 1)' if pinned else 'unpinned'}; "
      "medians over the rounds (same run); CPU µs per exchange from /proc")
print(f"| setting | server | req/s | p99 ms | CPU µs/exchange | req/s ÷ {second} | CPU ÷ {second} | req/s ÷ go | req/s ÷ nghttpd | rounds (req/s) | failed |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
for setting in dict.fromkeys(s for s, _ in by):
    med = {l: (statistics.median(by[(setting, l)]["rps"]), statistics.median(by[(setting, l)]["us"])) for l in labels if (setting, l) in by}
    for l in labels:
        if l not in med: continue
        rps, us = med[l]
        nio, go, limit = med[second], med["go"], med["nghttpd"]
        runs = ", ".join(f"{r:,.0f}" for r in by[(setting, l)]["rps"])
        p99 = statistics.median(by[(setting, l)]["p99"])
        print(f"| {setting} | {l} | {rps:,.0f} | {p99:.2f} | {us:.1f} | {rps / nio[0]:.2f}× | {us / nio[1]:.2f}× | "
              f"{rps / go[0]:.2f}× | {rps / limit[0]:.2f}× | {runs} | {','.join(by[(setting, l)]['failed'])} |")
EOF
