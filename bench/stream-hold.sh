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
# PAD=bytes makes each held stream's request body that much larger (its
# message's content padded): RAG and chat-history prompts of 8-200 KiB.
# RAMP=duration spreads the openings over that long (streamclient --ramp):
# streams that arrive over time, not in one burst, so a buffer released
# early can serve a later stream. ALIAS=1 serves the streams under a model
# alias (the client asks for "a", upstream_model: m), so the gateway
# rewrites each request's body. "after GC" lines are the same
# differences with both samples taken after two forced collections (the
# heap the held streams keep, without garbage or pooled buffers).
# Usage: [P=19601] [PAD=0] [RAMP=0s] [ALIAS=] bench/stream-hold.sh BIN TAG [N=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1 TAG=$2 N=${3:-1000} P=${P:-19601} OUT=${OUT:-$PWD} PAD=${PAD:-0} RAMP=${RAMP:-0s} ALIAS=${ALIAS:-}
PIDS=()
W=$(mktemp -d)
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; sleep 0.2; rm -rf $W' EXIT
go build -o $W/sc ./bench/streamclient
SC=$W/sc
simflags=(--model m --slots 2048 --max-waiting 8192 --kv-tokens 1000000000 --prefill-tps 1e9 --step-per-seq 1ns)
taskset -c 0 $BIN sim --listen 127.0.0.1:$((P+1)) "${simflags[@]}" --step 1s >/dev/null 2>&1 & PIDS+=($!)
MODEL=m UP=
if [ -n "$ALIAS" ]; then MODEL=a UP="        upstream_model: m\n"; fi
body() { printf '{"model":"%s","messages":[{"role":"user","content":"hi%s"}],"max_tokens":%d,"stream":true}' "$MODEL" "$(head -c "${2:-0}" /dev/zero | tr '\0' x)" "$1"; }
printf "models:\n  - name: $MODEL\n    backends:\n      - url: http://127.0.0.1:%d\n        max_concurrency: 2000\n$UP" $((P+1)) > $W/mem.yaml
sleep 0.5
GOMAXPROCS=1 taskset -c 1 $BIN serve --config $W/mem.yaml --listen 127.0.0.1:$((P+4)) --admin-listen off --pprof 127.0.0.1:$((P+5)) --log-level error --data-dir $W/dd2 2>$W/s2.log & SP=$!; PIDS+=($SP)
sleep 1.5
curl -sf -m 5 -o /dev/null -d "$(body 1)" http://127.0.0.1:$((P+4))/v1/chat/completions || true
sleep 1
gcstats() { curl -sf -o /dev/null "http://127.0.0.1:$((P+5))/debug/pprof/heap?gc=1"; curl -sf "http://127.0.0.1:$((P+5))/debug/pprof/heap?gc=1&debug=1" | grep -E "^# (HeapInuse) =" > $1; }
gcstats $W/g0
r0=$(awk '/^VmRSS/ {print $2}' /proc/$SP/status)
curl -sf "http://127.0.0.1:$((P+5))/debug/pprof/heap?debug=1" | grep -E "^# (HeapInuse|Stack|HeapAlloc) =" > $W/m0
taskset -c 0 $SC --mode hold --hold 6s --wait 30s --ramp $RAMP --url http://127.0.0.1:$((P+4))/v1/chat/completions --body "$(body 1000 $PAD)" --conns $N > $W/hold.out &
hc=$!
for _ in $(seq 400); do grep -q open $W/hold.out && break; sleep 0.1; done
sleep 2
r1=$(awk '/^VmRSS/ {print $2}' /proc/$SP/status)
curl -sf "http://127.0.0.1:$((P+5))/debug/pprof/heap?debug=1" | grep -E "^# (HeapInuse|Stack|HeapAlloc) =" > $W/m1
gcstats $W/g1
curl -sf -o $OUT/stream-hold-$TAG.pprof "http://127.0.0.1:$((P+5))/debug/pprof/heap?gc=1"
curl -sf -o $OUT/stream-hold-$TAG.goroutines "http://127.0.0.1:$((P+5))/debug/pprof/goroutine?debug=1"
wait $hc || true
echo "$TAG hold: $(cat $W/hold.out) rss0=$r0 rss1=$r1 KiB/stream=$(awk -v a=$r0 -v b=$r1 -v n=$N 'BEGIN{printf "%.1f", (b-a)/n}')"
paste $W/m0 $W/m1 | awk -v n=$N '{printf "  %s %.1f KiB/stream\n", $2, ($NF-$4)/1024/n}'
paste $W/g0 $W/g1 | awk -v n=$N '{printf "  %s after GC %.1f KiB/stream\n", $2, ($NF-$4)/1024/n}'
