#!/usr/bin/env bash
# Per-request cost of a running server as the kernel sees it, for comparing
# Sluice with a bare reference (bench/cache-hit.sh's floor, bench/bareproxy)
# where callgrind's user-space instruction counts do not explain a CPU gap:
#   1. perf stat on the server while wrk posts BODY for DUR: CPU time
#      (task-clock), context switches, minor page faults, and wakes of the
#      client per request. Over loopback the client's TCP receive and its
#      epoll wake-up run in the server's send (softirq), so each wake of a
#      sleeping wrk is server kernel time (a few us on this VM); a slower
#      server leaves wrk asleep more often, so compare kernel time per
#      request only at similar wakes (docs/BENCHMARKS.md §9, kernel side);
#   2. strace -c -f on the server for a second wrk run: system calls by
#      type per request (strace slows the server: counts only, not time).
# GC cycles need the server started with GODEBUG=gctrace=1 (count the
# "gc N" lines of its stderr around a run); where the CPU goes inside the
# process: perf record -g -p PID (docs/BENCHMARKS.md §9, Step 4d).
# Run the server pinned as the scripts do (taskset -c 1, GOMAXPROCS=1);
# wrk runs on CPU 0.
# Usage: bench/per-request.sh PID URL BODY [DUR=10] [CONNS=64]
set -euo pipefail
PID=$1 URL=$2 BODY=$3 DUR=${4:-10} CONNS=${5:-64}
command -v perf >/dev/null && command -v strace >/dev/null || { echo "needs perf and strace"; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$BODY" > "$WORK/post.lua"
load() { taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$WORK/post.lua" "$URL" > "$WORK/$1.wrk"; awk '/requests in/ {print $1}' "$WORK/$1.wrk"; }

perf stat -e task-clock,context-switches,minor-faults -e sched:sched_waking --filter 'comm=="wrk"' \
  -p "$PID" -o "$WORK/perf.txt" -- sleep "$DUR" &
n=$(load perf); wait
errs=$(awk '/Non-2xx/ {s+=$5} /Socket errors/ {gsub(/,/,""); s+=$4+$6+$8+$10} END {print s+0}' "$WORK/perf.wrk")
awk -v n="$n" -v e="$errs" -v dur="$DUR" '{gsub(/,/,"",$1)} /task-clock/ {tc=$1} /context-switches/ {cs=$1}
  /minor-faults/ {pf=$1} /sched_waking/ {wk=$1}
  END {printf "requests %d (%.0f/s, %d errors); CPU %.2f us/request (%.0f%% of a core); per request: context switches %.3f, minor faults %.4f, wakes of wrk %.3f\n",
    n, n/dur, e, tc*1000/n, tc/dur/10, cs/n, pf/n, wk/n}' "$WORK/perf.txt"

timeout -s INT $((DUR + 1)) strace -c -f -p "$PID" -o "$WORK/strace.txt" 2>/dev/null &
sleep 0.5
n=$(load strace); wait
echo "system calls per request under strace ($n requests):"
awk -v n="$n" '$1 ~ /^[0-9.]+$/ && $NF != "total" && $4/n >= 0.001 {printf "  %-14s %7.3f\n", $NF, $4/n}' "$WORK/strace.txt"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
