#!/usr/bin/env bash
# CPU per cache hit of Sluice builds side by side with bench/cache-hit.sh's
# bare Go handler (the floor), the method of docs/BENCHMARKS.md §9 Step 4d:
# every server is started once, together, on CPU 1 (GOMAXPROCS=1, flag-mode
# defaults, --log-level error) behind one instant backend on CPU 0; each is
# then measured in turn for DUR seconds with wrk -t1 -c64 from CPU 0, the
# order rotated every round, its CPU time per request taken from perf stat
# (task-clock of the server process), split into user and kernel time from
# /proc/PID/stat (10 ms ticks: ~0.03 us per request over 8 s). Comparing
# builds in the same rounds resists a shared machine better than one run
# per build. Every Sluice is checked to answer X-Cache: HIT before the
# rounds; non-2xx and socket errors are counted per round.
# Needs wrk, perf, taskset, curl, go (for the floor).
# Usage: [PORT_BASE=19411] bench/hit-cpu.sh ROUNDS DUR name=SLUICE_BIN [name=SLUICE_BIN ...]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench/install-tools.sh wrk curl   # apt-get when missing (root, else sudo)
R=$1 DUR=$2; shift 2
W=$(mktemp -d); PIDS=()
trap 'kill ${PIDS[@]} 2>/dev/null; rm -rf $W' EXIT
P=${PORT_BASE:-19411}   # another PORT_BASE lets two runs share a machine
start_hit_bench "$P" $((P + 9)) $((P + 29)) "$@"
for n in "${names[@]}"; do taskset -c 0 wrk -t1 -c64 -d2s -s "$W/post.lua" "http://${ADDR[$n]}/v1/chat/completions" >/dev/null; done
echo "round target req/s cpu_us_per_req user_us sys_us share_of_core errors load"
k=${#names[@]}
for r in $(seq "$R"); do
  o=$(( (r - 1) % k ))
  for n in "${names[@]:o}" "${names[@]:0:o}"; do
    t0=$(awk '{print $14, $15}' "/proc/${PID[$n]}/stat")
    perf stat -e task-clock -p "${PID[$n]}" -o "$W/ps.txt" -- sleep "$DUR" 2>/dev/null & pp=$!
    taskset -c 0 wrk -t1 -c64 -d"${DUR}s" -s "$W/post.lua" "http://${ADDR[$n]}/v1/chat/completions" > "$W/wrk.txt"; wait $pp
    t1=$(awk '{print $14, $15}' "/proc/${PID[$n]}/stat")
    req=$(awk '/requests in/ {print $1}' "$W/wrk.txt")
    err=$(awk '/Non-2xx/ {s+=$5} /Socket errors/ {gsub(/,/,""); s+=$4+$6+$8+$10} END {print s+0}' "$W/wrk.txt")
    tc=$(awk '/task-clock/ {gsub(/,/,"",$1); print $1}' "$W/ps.txt")
    awk -v r="$r" -v n="$n" -v req="$req" -v tc="$tc" -v d="$DUR" -v e="$err" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
      -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
      'BEGIN {split(t0, a, " "); split(t1, b, " ");
        printf "%d %s %.0f %.2f %.2f %.2f %.0f%% %d %s\n", r, n, req/d, tc*1000/req,
          (b[1]-a[1])*1e6/hz/req, (b[2]-a[2])*1e6/hz/req, tc/d/10, e, l}'
  done
done
