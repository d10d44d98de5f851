#!/usr/bin/env bash
# Where proxy mode's cost per request goes, beside nginx: req/s and CPU µs per request of each
# process, read from /proc around interleaved wrk runs (same run, same upstream), for
#   overlaid   overlayd proxy, overlaid page (split, instant mock model, result island, injection)
#   passthru   overlayd proxy, a host no overlay matches (no overlay work: NIO HTTP/1 in and out)
#   nginx-sub  nginx + sub_filter (../shared/bench's peer; proxy and upstream in the same workers)
#   direct     the upstream served directly (nginx; its cost per request is the upstream's share)
#
#   bench/proxy/floor.sh          # ROUNDS=3 DURATION=5 CONNS="16 64"
#
# passthru is the floor of this design: what NIO's HTTP/1 codecs, the pipeline and the loopback
# kernel path cost with none of overlayd's own work. Knobs: ROUNDS, DURATION, CONNS, OVERLAYD_BIN,
# SHARED_BENCH, BENCH_WORK, PORT. Everything runs on 127.0.0.1 and stops by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/bench/lib.sh"
PORT=${PORT:-8090}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-"16 64"}

BIN=$(overlayd_release_bin)
"$B/install.sh" >&2
"$B/start-peers.sh" nginx >&2

log=$(mktemp)
rows=$(mktemp)
PROXY_PID=
trap 'if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi; "$B/stop-peers.sh" nginx >&2 || true; rm -f "$log" "$rows"' EXIT
start_bench_proxy "$BIN" "$PORT" "$log"
pid=$PROXY_PID
if curl -s -H 'Host: passthrough.test' "http://127.0.0.1:$PORT/" | grep -q 'overlayd-result'; then
  echo "FAIL: the pass-through host got an overlay" >&2; exit 1
fi

nginx_pids=$(pgrep -d ' ' -f "nginx: worker" || true)
[ -n "$nginx_pids" ] || { echo "FAIL: no nginx worker running" >&2; exit 1; }
ticks() { local sum=0 p; for p in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$sum"; }
hz=$(getconf CLK_TCK)

measure() {  # label conns url [wrk args...]
  local label=$1 conns=$2 url=$3; shift 3
  local o0 n0 o1 n1 out
  o0=$(ticks "$pid"); n0=$(ticks $nginx_pids)
  out=$(wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" "$url")
  o1=$(ticks "$pid"); n1=$(ticks $nginx_pids)
  local rps p99
  rps=$(grep -oP 'Requests/sec:\s+\K[\d.]+' <<< "$out")
  p99=$(grep -oP '^\s+99%\s+\K\S+' <<< "$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$conns" "$rps" "$((o1 - o0))" "$((n1 - n0))" "$p99" >> "$rows"
  echo "round $round c=$conns $label: $rps req/s, p99 $p99"
}

for round in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    measure overlaid "$c" "http://127.0.0.1:$PORT/"
    measure passthru "$c" "http://127.0.0.1:$PORT/" -H 'Host: passthrough.test'
    measure nginx-sub "$c" http://127.0.0.1:18082/
    measure direct "$c" http://127.0.0.1:18081/
  done
done

python3 - "$rows" "$DURATION" "$hz" <<'EOF'
import statistics, sys
path, duration, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = [line.rstrip("\n").split("\t") for line in open(path)]
def us(ticks, rps):
    return float(ticks) / hz * 1e6 / (float(rps) * duration)
by = {}
for label, conns, rps, od, ng, p99 in rows:
    by.setdefault((int(conns), label), []).append((float(rps), us(od, rps), us(ng, rps), p99))
print(f"\nmedians over the rounds (same run); CPU µs per request from /proc ({duration:g} s runs)")
print("| c | target | req/s | overlayd CPU µs/req | nginx CPU µs/req | ratio to nginx-sub req/s |")
print("|---:|---|---:|---:|---:|---:|")
for conns in sorted({c for c, _ in by}):
    ref = statistics.median(r[0] for r in by.get((conns, "nginx-sub"), [(float("nan"),)]))
    for label in ("overlaid", "passthru", "nginx-sub", "direct"):
        items = by.get((conns, label))
        if not items:
            continue
        rps = statistics.median(i[0] for i in items)
        od = statistics.median(i[1] for i in items)
        ng = statistics.median(i[2] for i in items)
        print(f"| {conns} | {label} | {rps:,.0f} | {od:.0f} | {ng:.0f} | {rps / ref:.2f}× |")
EOF
