#!/usr/bin/env bash
# Where proxy mode's cost per request goes, beside nginx: req/s, p99, and each process's CPU µs and
# context switches per request (both read from /proc) around interleaved wrk runs (same run, same
# upstream), for
#   overlaid   overlayd proxy, overlaid page (split, instant mock model, result island, injection)
#   passthru   overlayd proxy, a host no overlay matches (no overlay work: NIO HTTP/1 in and out)
#   nginx-sub  nginx + sub_filter (../shared/bench's peer; proxy and upstream in the same workers)
#   nginx-2proc the same nginx proxy and sub_filter in a process of its own (a second nginx, one
#              worker) before the same upstream: overlayd's topology, for comparison only
#   nio-floor  bench/proxy/nio-floor: the least a proxy on SwiftNIO's own HTTP/1 codecs costs (NIO's
#              server pipeline, one handler, pooled keep-alive upstream connections, two event
#              loops like overlayd), pass-through host; none of overlayd's own work
#   nio-floor-tag the same, injecting nginx sub_filter's constant tag before `</head>` (chunked)
#   direct     the upstream served directly (nginx; its cost per request is the upstream's share)
#
#   bench/proxy/floor.sh          # ROUNDS=3 DURATION=5 CONNS="16 64"
#
# passthru minus nio-floor is what overlayd's own per-request work costs on a host it does not
# overlay (routing, limits, header rewriting, metrics); overlaid minus nio-floor-tag is the same
# for the overlay (split, model call, result store, result island). NIO_FLOOR=0 leaves the
# nio-floor rows out (its release build takes about a minute the first time, in .build-nio-floor).
# Knobs: ROUNDS, DURATION, CONNS, OVERLAYD_BIN, OVERLAYD_ARGS (more proxy flags, e.g. "--threads 1"),
# NIO_FLOOR, SHARED_BENCH, BENCH_WORK, PORT, NGINX2_PORT, FLOOR_PORT. Everything runs on 127.0.0.1
# and stops by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
. "$ROOT/bench/lib.sh"
PORT=${PORT:-8090}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-"16 64"}

BIN=$(overlayd_release_bin)
NIO_FLOOR=${NIO_FLOOR:-1}
FLOOR_PORT=${FLOOR_PORT:-18093}
FLOOR_BIN=
[ "$NIO_FLOOR" = 1 ] && FLOOR_BIN=$(nio_floor_bin)
"$B/install.sh" >&2
"$B/start-peers.sh" nginx >&2

log=$(mktemp)
rows=$(mktemp)
PROXY_PID=
FLOOR_PID=
NGINX2=$(mktemp -d)
NGINX2_PORT=${NGINX2_PORT:-18092}
stop_nginx2() { if [ -s "$NGINX2/nginx.pid" ]; then kill "$(cat "$NGINX2/nginx.pid")" 2>/dev/null || true; fi; }
trap 'for p in $PROXY_PID $FLOOR_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; stop_nginx2; "$B/stop-peers.sh" nginx >&2 || true; rm -rf "$log" "$rows" "$NGINX2"' EXIT
start_bench_proxy "$BIN" "$PORT" "$log"
pid=$PROXY_PID
if curl -s -H 'Host: passthrough.test' "http://127.0.0.1:$PORT/" | grep -q 'overlayd-result'; then
  echo "FAIL: the pass-through host got an overlay" >&2; exit 1
fi

nginx_pids=$(pgrep -d ' ' -f "nginx: worker" || true)
[ -n "$nginx_pids" ] || { echo "FAIL: no nginx worker running" >&2; exit 1; }

# nginx-2proc: the shared peer's proxy server block (same keep-alive pool, headers, sub_filter),
# in a second nginx of one worker, so that proxy and upstream are two processes, as with overlayd.
mkdir -p "$NGINX2"/tmp
cat > "$NGINX2/nginx.conf" <<CONF
worker_processes 1;
pid $NGINX2/nginx.pid;
error_log $NGINX2/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path $NGINX2/tmp/client_body;
    proxy_temp_path $NGINX2/tmp/proxy;
    fastcgi_temp_path $NGINX2/tmp/fastcgi;
    uwsgi_temp_path $NGINX2/tmp/uwsgi;
    scgi_temp_path $NGINX2/tmp/scgi;
    upstream app { server 127.0.0.1:18081; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX2_PORT backlog=4096;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header Accept-Encoding "";
            sub_filter '</head>' '<script src="/__overlay/overlay.js"></script></head>';
            sub_filter_once on;
        }
    }
}
CONF
nginx -p "$NGINX2/" -e "$NGINX2/error.log" -c "$NGINX2/nginx.conf" -g 'daemon on;'
for _ in $(seq 50); do [ -s "$NGINX2/nginx.pid" ] && break; sleep 0.1; done
nginx2_pids=$(pgrep -d ' ' -P "$(cat "$NGINX2/nginx.pid")" || true)
[ -n "$nginx2_pids" ] || { echo "FAIL: the second nginx has no worker (see $NGINX2/error.log)" >&2; exit 1; }
curl -s "http://127.0.0.1:$NGINX2_PORT/" | grep -q '/__overlay/overlay.js' || { echo "FAIL: nginx-2proc does not substitute" >&2; exit 1; }
if [ -n "$FLOOR_BIN" ]; then
  "$FLOOR_BIN" "$FLOOR_PORT" 18081 2 > /dev/null 2>&1 &
  FLOOR_PID=$!
  wait_listening "$FLOOR_PORT"
  # Its first request may find the upstream pool still connecting: a few tries.
  injects=0
  for _ in $(seq 20); do
    if curl -s "http://127.0.0.1:$FLOOR_PORT/" | grep -q '/__overlay/overlay.js'; then injects=1; break; fi
    sleep 0.1
  done
  [ "$injects" = 1 ] || { echo "FAIL: nio-floor does not inject" >&2; exit 1; }
  if curl -s -H 'Host: passthrough.test' "http://127.0.0.1:$FLOOR_PORT/" | grep -q '/__overlay/overlay.js'; then
    echo "FAIL: nio-floor injects into the pass-through host" >&2; exit 1
  fi
fi
ticks() { local sum=0 p; for p in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$sum"; }
# Context switches of every thread of the given processes, voluntary plus involuntary (a thread
# that ends between the two reads is left out of both).
switches() {
  local sum=0 p f n
  for p in "$@"; do
    for f in /proc/"$p"/task/*/status; do
      n=$(awk '/^(non)?voluntary_ctxt_switches/{s += $2} END {print s}' "$f" 2>/dev/null || true)
      sum=$((sum + ${n:-0}))
    done
  done
  echo "$sum"
}
hz=$(getconf CLK_TCK)

measure() {  # "proxy PIDs" label conns url [wrk args...]  (the proxy's PIDs: "" when there is none)
  local proxy=$1 label=$2 conns=$3 url=$4; shift 4
  local o0 n0 o1 n1 os0 ns0 os1 ns1 out
  o0=$(ticks $proxy); n0=$(ticks $nginx_pids); os0=$(switches $proxy); ns0=$(switches $nginx_pids)
  out=$(wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" "$url")
  o1=$(ticks $proxy); n1=$(ticks $nginx_pids); os1=$(switches $proxy); ns1=$(switches $nginx_pids)
  local rps p99
  rps=$(grep -oP 'Requests/sec:\s+\K[\d.]+' <<< "$out")
  p99=$(grep -oP '^\s+99%\s+\K\S+' <<< "$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$conns" "$rps" "$((o1 - o0))" "$((n1 - n0))" "$p99" \
    "$((os1 - os0))" "$((ns1 - ns0))" >> "$rows"
  echo "round $round c=$conns $label: $rps req/s, p99 $p99"
}

for round in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    measure "$pid" overlaid "$c" "http://127.0.0.1:$PORT/"
    measure "$pid" passthru "$c" "http://127.0.0.1:$PORT/" -H 'Host: passthrough.test'
    measure "" nginx-sub "$c" http://127.0.0.1:18082/
    measure "$nginx2_pids" nginx-2proc "$c" "http://127.0.0.1:$NGINX2_PORT/"
    if [ -n "$FLOOR_PID" ]; then
      measure "$FLOOR_PID" nio-floor "$c" "http://127.0.0.1:$FLOOR_PORT/" -H 'Host: passthrough.test'
      measure "$FLOOR_PID" nio-floor-tag "$c" "http://127.0.0.1:$FLOOR_PORT/"
    fi
    measure "" direct "$c" http://127.0.0.1:18081/
  done
done

python3 - "$rows" "$DURATION" "$hz" <<'EOF'
import statistics, sys
path, duration, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = [line.rstrip("\n").split("\t") for line in open(path)]
def us(ticks, rps):
    return float(ticks) / hz * 1e6 / (float(rps) * duration)
def ms(text):  # wrk's latency: 812.00us, 5.20ms, 1.02s
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float("nan")
by = {}
for label, conns, rps, od, ng, p99, osw, nsw in rows:
    n = float(rps) * duration
    by.setdefault((int(conns), label), []).append((float(rps), us(od, rps), us(ng, rps), ms(p99), int(osw) / n, int(nsw) / n))
print(f"\nmedians over the rounds (same run); CPU µs per request from /proc ({duration:g} s runs); context")
print("switches per request (voluntary and involuntary, every thread) from /proc/PID/task/*/status.")
print("proxy: overlayd, nginx-2proc's own worker or nio-floor; nginx: the shared nginx (the upstream; for")
print("nginx-sub, its proxy and upstream together)")
print("| c | target | req/s | ÷ nginx-sub req/s | p99 ms | p99 ÷ nginx-sub | proxy CPU µs/req | nginx CPU µs/req | switches/req proxy | switches/req nginx |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for conns in sorted({c for c, _ in by}):
    ref = by.get((conns, "nginx-sub"), [(float("nan"),) * 6])
    ref_rps = statistics.median(r[0] for r in ref)
    ref_p99 = statistics.median(r[3] for r in ref)
    for label in ("overlaid", "passthru", "nginx-sub", "nginx-2proc", "nio-floor", "nio-floor-tag", "direct"):
        items = by.get((conns, label))
        if not items:
            continue
        med = [statistics.median(i[k] for i in items) for k in range(6)]
        print(f"| {conns} | {label} | {med[0]:,.0f} | {med[0] / ref_rps:.2f}× | {med[3]:.2f} | {med[3] / ref_p99:.2f}× "
              f"| {med[1]:.0f} | {med[2]:.0f} | {med[4]:.2f} | {med[5]:.2f} |")
EOF
