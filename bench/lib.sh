# Shared by the bench scripts (sourced right after ROOT, this checkout, is set).

# The shared bench (B; SHARED_BENCH overrides) and its work folder, checked once here.
B=${SHARED_BENCH:-$ROOT/../shared/bench}
[ -x "$B/install.sh" ] || { echo "shared bench not found at $B (set SHARED_BENCH)" >&2; exit 2; }
export SHARED_BENCH=$B BENCH_WORK=${BENCH_WORK:-/tmp/overlayd-bench}

# The overlayd binary to measure: $OVERLAYD_BIN, else a release build of this checkout in
# .build-release (its own scratch path: the debug build in .build is left alone), with the
# deployment build's flags (README "Deployment").
overlayd_release_bin() {
  local bin=${OVERLAYD_BIN:-}
  if [ -z "$bin" ]; then
    echo "building overlayd (release, --scratch-path .build-release)" >&2
    (cd "$ROOT" && swift build -c release --scratch-path .build-release --product overlayd \
      -Xswiftc -enforce-exclusivity=unchecked >&2)
    bin="$ROOT/.build-release/release/overlayd"
  fi
  [ -x "$bin" ] || { echo "no overlayd binary at $bin" >&2; return 2; }
  echo "$bin"
}

# bench/proxy/nio-floor, built (release, in .build-nio-floor) with the flags of overlayd's release
# build above, so that the two compare; prints its path.
nio_floor_bin() {
  echo "building bench/proxy/nio-floor (release, --scratch-path .build-nio-floor)" >&2
  local args=(-c release --package-path "$ROOT/bench/proxy/nio-floor" --scratch-path "$ROOT/.build-nio-floor")
  swift build "${args[@]}" -Xswiftc -enforce-exclusivity=unchecked >&2
  echo "$(swift build "${args[@]}" --show-bin-path)/nio-floor"
}

# overlayd proxy in front of the shared bench's nginx upstream (127.0.0.1:18081) on
# 127.0.0.1:$2 with bench/proxy/overlay.yaml (an instant mock model), its stderr in $3. Sets
# PROXY_PID; returns once the proxy answers, and fails unless its page carries the overlay.
# OVERLAYD_ARGS: more flags for the proxy (split on spaces), e.g. "--threads 1".
start_bench_proxy() {
  local bin=$1 port=$2 log=$3 page extra
  read -r -a extra <<< "${OVERLAYD_ARGS:-}"
  "$bin" proxy --upstream http://127.0.0.1:18081 --listen "127.0.0.1:$port" --admin 127.0.0.1:0 \
    --config "$ROOT/bench/proxy/overlay.yaml" --log-level warning "${extra[@]}" 2> "$log" &
  PROXY_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  page=$(curl -s "http://127.0.0.1:$port/")
  grep -q 'id="overlayd-result"' <<< "$page" || { echo "FAIL: overlayd's page carries no overlay" >&2; cat "$log" >&2; return 1; }
  echo "check: overlayd injects its snippet ($(wc -c <<< "$page") bytes)"
}

# Returns once something accepts connections on 127.0.0.1:$1 (at most 20 s; fails after).
wait_listening() {
  python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.time() + 20
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(f"nothing listens on 127.0.0.1:{sys.argv[1]}")
PY
}
