#!/usr/bin/env bash
# Idle CPU of a gateway (issue 12): what `sluice serve` costs per second
# with no request at all, on its defaults (flag mode: embedded NATS job
# queue with 64 workers, batch tracker, load-metrics scraping, active health
# checks, forecast, admission kicks, buffered log), in front of one
# `sluice sim --instant` backend. Every background wake-up of an idle
# gateway competes with requests when it runs on one core (cache-hit.sh
# gives it GOMAXPROCS=1 on one CPU).
#
# Each binary given is measured in turn, ROUNDS times, the order rotating
# each round (A B, B A, ...) so drift on a shared machine does not favour
# one side. A run starts the gateway on a fresh data directory, lets it
# settle SETTLE seconds, then reads its utime+stime (all threads) from
# /proc/PID/stat over DUR seconds; with perf available it also counts
# task-clock and context switches over the same window.
#
# PIN=1 runs the gateway on CPU 1 with GOMAXPROCS=1 (as cache-hit.sh does);
# the default PIN=0 leaves it unpinned with Go's defaults. YAML, when set,
# runs it from a config file instead of flags: the same model and backend
# plus these lines, to price one part by turning it off (e.g.
# YAML='queue: {enabled: false}').
# Usage: [ROUNDS=2] [DUR=60] [SETTLE=5] [PIN=0] [YAML=...] bench/idle-cpu.sh BIN [BIN...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/idle-cpu.sh BIN [BIN...]"; exit 2; }
ROUNDS=${ROUNDS:-2} DUR=${DUR:-60} SETTLE=${SETTLE:-5} PIN=${PIN:-0}
NCPU=$(nproc)
. bench/lib.sh
SRV_ENV=()
if [ "$PIN" = 1 ]; then pin_cpus; SRV_ENV=(GOMAXPROCS=1); else LOADCPU=() SRVCPU=(); fi

WORK=$(mktemp -d)
SIM_PID= GW_PID=
cleanup() {
  set +e
  for p in $GW_PID $SIM_PID; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

BACK=127.0.0.1:19211 LISTEN=127.0.0.1:19214 ADMIN=127.0.0.1:19216
"${LOADCPU[@]}" "$1" sim --listen $BACK --instant --model m >/dev/null 2>&1 &
SIM_PID=$!
wait_up $BACK health
HZ=$(getconf CLK_TCK)
PERF=$(command -v perf || true)

SRC=(--model m --backend "http://$BACK")
if [ -n "${YAML:-}" ]; then
  printf 'models:\n  - name: m\n    backends: [{url: "http://%s"}]\n%s\n' "$BACK" "$YAML" > "$WORK/sluice.yaml"
  SRC=(--config "$WORK/sluice.yaml")
fi

run() { # bin tag -> "tag ms_cpu_per_s [task_clock_ms_per_s ctx_switches_per_s]"
  local bin=$1 tag=$2 dir t0 t1 perfout=""
  dir=$(mktemp -d -p "$WORK")
  env XDG_DATA_HOME="$dir" "${SRV_ENV[@]}" "${SRVCPU[@]}" "$bin" serve --listen $LISTEN --admin-listen $ADMIN \
    "${SRC[@]}" --log-level error 2>>"$WORK/serve.log" &
  GW_PID=$!
  wait_up $LISTEN healthz
  sleep "$SETTLE"
  t0=$(awk '{print $14+$15}' "/proc/$GW_PID/stat")
  if [ -n "$PERF" ]; then
    perfout=$("$PERF" stat -x, -e task-clock,context-switches -p "$GW_PID" -- sleep "$DUR" 2>&1 >/dev/null) || perfout=""
  else
    sleep "$DUR"
  fi
  t1=$(awk '{print $14+$15}' "/proc/$GW_PID/stat")
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; GW_PID=
  awk -v tag="$tag" -v ticks=$((t1 - t0)) -v hz="$HZ" -v dur="$DUR" -v perf="$perfout" 'BEGIN {
    n = split(perf, lines, "\n"); tc = cs = ""
    for (i = 1; i <= n; i++) { split(lines[i], f, ","); if (f[3] ~ /task-clock/) tc = f[1]; if (f[3] ~ /context-switches/) cs = f[1] }
    printf "%-10s %8.2f", tag, 1000 * ticks / hz / dur
    if (tc != "") printf " %10.2f %10.1f", tc / dur, cs / dur
    printf "\n" }'
}

echo "machine: $NCPU cores, $(uname -sr), load before $(cut -d' ' -f1-3 /proc/loadavg)"
echo "sluice serve $([ -n "${YAML:-}" ] && echo "config: defaults + $YAML" || echo "defaults (flag mode)"), one sim --instant backend, no requests; settle ${SETTLE}s, window ${DUR}s; pinned: $([ "$PIN" = 1 ] && echo "CPU 1, GOMAXPROCS=1" || echo no)"
printf "%-10s %8s %10s %10s\n" run "ms CPU/s" "task-clock" "ctx-sw/s"
for r in $(seq "$ROUNDS"); do
  k=$(( (r - 1) % $# ))
  bins=("$@"); order=("${bins[@]:k}" "${bins[@]:0:k}")
  for b in "${order[@]}"; do
    i=0; for x in "$@"; do i=$((i + 1)); [ "$x" = "$b" ] && break; done
    run "$b" "$r:bin$i"
  done
done
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
