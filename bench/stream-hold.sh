#!/usr/bin/env bash
# Phase 3 of bench/stream-overhead.sh for one Sluice build, with the Go
# runtime's view: N streams held open against a simulator sending an event
# a second (max_concurrency: 2000, as there); RSS with them open minus RSS
# before, and the same difference of HeapAlloc, HeapInuse and stack memory
# (runtime.MemStats, from --pprof's /debug/pprof/heap?debug=1), per stream.
# Writes the heap profile with the streams open to ./stream-hold-TAG.pprof
# and the goroutines (debug=1 counts by stack) to ./stream-hold-TAG.goroutines.
# BIN may be a script that execs the binary with GODEBUG=memprofilerate=1
# for an exact heap profile.
# OUT=dir writes them there (default: the repository).
# Usage: [P=19601] bench/stream-hold.sh BIN TAG [N=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1 TAG=$2 N=${3:-1000} P=${P:-19601} OUT=${OUT:-$PWD}
PIDS=()
W=$(mktemp -d)
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; sleep 0.2; rm -rf $W' EXIT
go build -o $W/sc ./bench/streamclient
SC=$W/sc
simflags=(--model m --slots 2048 --max-waiting 8192 --kv-tokens 1000000000 --prefill-tps 1e9 --step-per-seq 1ns)
taskset -c 0 $BIN sim --listen 127.0.0.1:$((P+1)) "${simflags[@]}" --step 1s >/dev/null 2>&1 & PIDS+=($!)
body() { printf '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":%d,"stream":true}' "$1"; }
printf 'models:\n  - name: m\n    backends:\n      - url: http://127.0.0.1:%d\n        max_concurrency: 2000\n' $((P+1)) > $W/mem.yaml
sleep 0.5
GOMAXPROCS=1 taskset -c 1 $BIN serve --config $W/mem.yaml --listen 127.0.0.1:$((P+4)) --admin-listen off --pprof 127.0.0.1:$((P+5)) --log-level error --data-dir $W/dd2 2>$W/s2.log & SP=$!; PIDS+=($SP)
sleep 1.5
curl -sf -m 5 -o /dev/null -d "$(body 1)" http://127.0.0.1:$((P+4))/v1/chat/completions || true
sleep 1
r0=$(awk '/^VmRSS/ {print $2}' /proc/$SP/status)
curl -sf "http://127.0.0.1:$((P+5))/debug/pprof/heap?debug=1" | grep -E "^# (HeapInuse|Stack|HeapAlloc) =" > $W/m0
taskset -c 0 $SC --mode hold --hold 6s --wait 30s --url http://127.0.0.1:$((P+4))/v1/chat/completions --body "$(body 1000)" --conns $N > $W/hold.out &
hc=$!
for _ in $(seq 400); do grep -q open $W/hold.out && break; sleep 0.1; done
sleep 2
r1=$(awk '/^VmRSS/ {print $2}' /proc/$SP/status)
curl -sf "http://127.0.0.1:$((P+5))/debug/pprof/heap?debug=1" | grep -E "^# (HeapInuse|Stack|HeapAlloc) =" > $W/m1
curl -sf -o $OUT/stream-hold-$TAG.pprof "http://127.0.0.1:$((P+5))/debug/pprof/heap?gc=1"
curl -sf -o $OUT/stream-hold-$TAG.goroutines "http://127.0.0.1:$((P+5))/debug/pprof/goroutine?debug=1"
wait $hc || true
echo "$TAG hold: $(cat $W/hold.out) rss0=$r0 rss1=$r1 KiB/stream=$(awk -v a=$r0 -v b=$r1 -v n=$N 'BEGIN{printf "%.1f", (b-a)/n}')"
paste $W/m0 $W/m1 | awk -v n=$N '{printf "  %s %.1f KiB/stream\n", $2, ($NF-$4)/1024/n}'
