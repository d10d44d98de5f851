#!/usr/bin/env python3
"""How the CPU time of a server's busiest threads is shared, window by window, under h2load.

  loop_share.py --pid PID --target 127.0.0.1:PORT [--seconds 6] [-c 64] [-m 10] [--window-ms 100]

Drives header-only Process streams exactly as ../shared/bench/extproc-bench.sh does (h2load, one
thread, the shared bench's headers.grpc fixture) and reads each thread's time on a CPU
(/proc/PID/task/TID/schedstat) every window. Prints, for the two busiest threads, their
milliseconds on a CPU in each window, and the median over the windows of busiest / second
busiest.

Why: overlayd's event loops own their connections (SwiftNIO binds a connection to one loop for
its life). When h2load's single thread shares a core with one loop, that loop's connections run
at that loop's share of the core while the other loop has a core to itself; the ratio printed
here is how uneven that is, and it shows in the latency tail. Only 127.0.0.1 targets.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def on_cpu_ns(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None


def sample(pid):
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        ns = on_cpu_ns(pid, tid)
        if ns is not None:
            result[tid] = ns
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--target", required=True, help="HOST:PORT of the ext_proc server (127.0.0.1 only)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds (after 2 s of warm-up)")
    parser.add_argument("-c", type=int, default=64, help="h2load connections")
    parser.add_argument("-m", type=int, default=10, help="h2load streams per connection")
    parser.add_argument("--window-ms", type=int, default=100)
    parser.add_argument("--body", default=os.path.join(os.environ.get("BENCH_WORK", "/tmp/overlayd-bench"), "bodies/headers.grpc"))
    args = parser.parse_args()
    if not args.target.startswith("127.0.0.1:"):
        sys.exit("loop_share.py: --target must be 127.0.0.1:PORT")
    if not os.path.exists(args.body):
        sys.exit(f"loop_share.py: no fixture at {args.body} (run ../shared/bench/install.sh)")
    if not os.path.isdir(f"/proc/{args.pid}"):
        sys.exit(f"loop_share.py: no process {args.pid}")

    load = subprocess.Popen(
        ["h2load", "-D", str(int(args.seconds) + 3), "-c", str(args.c), "-m", str(args.m), "-t", "1",
         "-d", args.body, "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://{args.target}/envoy.service.ext_proc.v3.ExternalProcessor/Process"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2)
        windows = []
        previous = sample(args.pid)
        for _ in range(int(args.seconds * 1000 / args.window_ms)):
            time.sleep(args.window_ms / 1000)
            current = sample(args.pid)
            deltas = sorted(((current[t] - previous[t]) / 1e6 for t in current if t in previous), reverse=True)
            windows.append(deltas[:2] + [0.0] * (2 - len(deltas[:2])))
            previous = current
    finally:
        output, _ = load.communicate()
    if load.returncode != 0:
        sys.exit(f"loop_share.py: h2load failed:\n{output}")
    rate = next((line.split(",")[1].strip() for line in output.splitlines() if line.startswith("finished in")), "?")
    print(f"pid {args.pid} at {args.target}, c={args.c} m={args.m}: {rate}")
    print(f"ms on a CPU per {args.window_ms} ms window, busiest / second busiest thread:")
    print(" ".join(f"{a:.0f}/{b:.0f}" for a, b in windows))
    ratios = [a / b for a, b in windows if b > 0]
    if ratios:
        print(f"median busiest/second: {statistics.median(ratios):.2f} over {len(ratios)} windows; "
              f"windows above 1.3: {sum(r > 1.3 for r in ratios)}")


if __name__ == "__main__":
    main()
