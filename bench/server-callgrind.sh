#!/usr/bin/env bash
# Instructions per cache hit of the running server alone, counted by
# callgrind: the in-process benchmarks (BenchmarkServeCacheHit and its floor,
# bench/callgrind-ops.sh) count their Go client too (~95-100k of their
# ~130-145k instructions per request), which dilutes the ratio between two
# servers. Here each server runs as bench/hit-cpu.sh starts it (GOMAXPROCS=1,
# flag-mode defaults, --log-level error, one instant backend), under
# callgrind on CPU 1, with wrk -c64 (CONNS) posting the hit from CPU 0; the counts
# are zeroed after a warm-up, wrk runs DUR seconds, and the window's
# instructions (everything the process ran: the handler, net/http, the
# runtime, its collector and timers, background loops) are divided by the
# answers wrk received (up to CONNS answers in flight at the end are not
# counted: ~0.3% at 20k). "floor" is bench/cache-hit.sh's bare Go handler.
# Sluice builds are given as name=BIN (an executable script that execs a
# binary with extra environment works too: children are traced). The top functions of each
# window are written to OUT/name.top (callgrind_annotate, exclusive).
# CACHESIM=1 adds callgrind's cache simulation (32 KiB 8-way L1i and L1d,
# 512 KiB 8-way last level, 64-byte lines: a Zen core's L1s) and prints the
# L1 misses per answer: I1 (code lines fetched again) and D1 (data lines read
# and written). A line of code a hit runs is fetched again on nearly every
# hit (net/http, the kernel and the runtime pass through L1 in between), so
# I1 counts the code lines a hit spans, which instructions do not: the same
# count of instructions spread over more lines costs more cycles. Load does
# not change these counts either.
# MODE=proxied counts a proxied request instead: the body of
# bench/proxy-overhead.sh (no temperature 0, so the cache cannot answer it:
# every request goes to the instant backend), and two floors in place of
# the bare handler: "bare", bench/bareproxy on net/http's Transport (the
# bare-go row of bench/proxy-overhead.sh), and "bare-lean", the same proxy
# on internal/h1client (Sluice's default upstream client for http://).
# MODE=stream is MODE=proxied with the answer streamed (the instant
# backend's 4 tokens: 6 SSE events, ~1 KB).
# Needs valgrind, wrk, taskset, curl, go.
# Under callgrind a request takes ~50x longer: at -c64 the proxied requests
# queue in Sluice's admission long enough to be refused (503
# pool_saturated, its overload control working), so MODE=proxied runs with
# fewer connections (CONNS, default 16 there) and any refusal is reported.
# NOFLOOR=1 leaves the floors out (a build may be named twice, to alternate).
# Usage: [MODE=hit|proxied|stream] [CONNS=64|16] [NOFLOOR=1] [PORT_BASE=19511] [DUR=20] [OUT=dir] [CACHESIM=1] bench/server-callgrind.sh name=SLUICE_BIN [name=SLUICE_BIN ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bench/install-tools.sh valgrind wrk curl   # apt-get when missing (root, else sudo)
DUR=${DUR:-20}
MODE=${MODE:-hit}
CONNS_SET=${CONNS:-}
CONNS=${CONNS:-64}
W=$(mktemp -d); OUT=${OUT:-$W/out}; mkdir -p "$OUT"
PIDS=()
trap 'kill ${PIDS[@]} 2>/dev/null; rm -rf $W' EXIT
P=${PORT_BASE:-19511}   # two ports: another PORT_BASE lets two runs share a machine
BACK=127.0.0.1:$P ADDR=127.0.0.1:$((P + 9))
case $MODE in
hit)
  BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"temperature":0}'
  FLOORS=(floor)
  mkdir -p "$W/floor" && printf 'module floor\ngo 1.22\n' > "$W/floor/go.mod"
  sed -n '/^package main/,/^GO$/p' bench/cache-hit.sh | grep -v '^GO$' > "$W/floor/main.go"
  (cd "$W/floor" && GOWORK=off go build -o floor .) ;;
proxied | stream)
  BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}'
  [ "$MODE" = stream ] && BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"stream":true}'
  FLOORS=(bare bare-lean)
  CONNS=${CONNS_SET:-16}
  go build -o "$W/bareproxy" ./bench/bareproxy
  [ "$MODE" = stream ] && go build -o "$W/sc" ./bench/streamclient
  true ;;
*) echo "MODE: hit, proxied or stream, got $MODE"; exit 1 ;;
esac
[ "${NOFLOOR:-0}" = 1 ] && FLOORS=()
taskset -c 0 "${1#*=}" sim --listen $BACK --instant --model m >/dev/null 2>&1 & PIDS+=($!)
sleep 0.5
curl -sf -X POST -d "$BODY" "http://$BACK/v1/chat/completions" > "$W/answer.json"
printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$BODY" > "$W/post.lua"
# Go's asynchronous preemption signals upset callgrind; cpu.rdtscp=off: see
# bench/callgrind-ops.sh.
VG=(env GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off taskset -c 1 valgrind --tool=callgrind --trace-children=yes
  --callgrind-out-file="$W/cg.%p")
[ "${CACHESIM:-0}" = 1 ] && VG+=(--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=524288,8,64)
# code_pages: the 4 KiB pages of the binary's text holding the functions
# that run >= 5 instructions per answer (callgrind's per-function counts,
# addresses from go tool nm). On this kind of VM (pti=on, no PCID: the TLB
# is emptied on every syscall, ~3 per answer) each such page costs a page
# walk per answer: 80 more pages cost the bare handler +0.9 us of CPU per
# answer for ~400 more instructions (bench/code-pages.sh).
code_pages() { # callgrind-file binary requests
  callgrind_annotate --threshold=100 --auto=no "$1" 2>/dev/null |
    awk -v n="$3" '$2 == "(" || $2 ~ /^\(/ {v=$1; gsub(/,/,"",v); f=$0; sub(/^[^:]*:/,"",f); sub(/ .*/,"",f); sub(/'"'"'[0-9]+$/,"",f); c[f]+=v}
      END {for (f in c) if (c[f] >= 5*n) print f}' > "$W/hot.txt"
  go tool nm -size "$2" | awk 'NR==FNR {hot[$0]=1; next}
    ($3 == "T" || $3 == "t") {name=$4; for (i=5;i<=NF;i++) name=name " " $i
      if (name in hot) {a=strtonum("0x" $1); for (p=int(a/4096); p<=int((a+$2-1)/4096); p++) pg[p]=1}}
    END {n=0; for (p in pg) n++; print n}' "$W/hot.txt" -
}
# load SECONDS: wrk, or for MODE=stream bench/streamclient (its output
# put in wrk's words): wrk closes its connections in the middle of
# answers when it stops, and the server's writes into them (a stream's
# several per answer) raise SIGPIPEs that callgrind 3.19 dies of
# ("vgCallgrind_post_signal: Assertion ... failed"); streamclient lets
# every stream end first.
load() {
  if [ "$MODE" = stream ]; then
    taskset -c 0 "$W/sc" --mode load --conns "$CONNS" --dur "$1s" --url "http://$ADDR/v1/chat/completions" --body "$BODY" |
      awk '{printf "%d requests in %ss\nNon-2xx or Socket errors: %d\n", $1, $4, $3}'
  else
    taskset -c 0 wrk -t1 -c"$CONNS" --timeout 60s -d"$1s" -s "$W/post.lua" "http://$ADDR/v1/chat/completions"
  fi
}
echo "name requests instr_per_request code_pages load$([ "${CACHESIM:-0}" = 1 ] && echo " I1_miss D1_read_miss D1_write_miss")"
for b in ${FLOORS[@]+"${FLOORS[@]}"} "$@"; do
  n=${b%%=*} bin=${b#*=}
  if [ "$n" = floor ]; then
    "${VG[@]}" "$W/floor/floor" $ADDR "$W/answer.json" 2>/dev/null & pid=$!
  elif [ "$n" = bare ] || [ "$n" = bare-lean ]; then
    client=$([ "$n" = bare ] && echo nethttp || echo lean)
    "${VG[@]}" "$W/bareproxy" --listen $ADDR --backend $BACK --client $client 2>/dev/null & pid=$!
  else
    "${VG[@]}" "$bin" serve --listen $ADDR --admin-listen off --model m --backend http://$BACK --log-level error \
      --data-dir "$W/dd-$n" 2>/dev/null & pid=$!
  fi
  PIDS+=($pid)
  for _ in $(seq 1200); do curl -sf -o /dev/null -X POST -d "$BODY" "http://$ADDR/v1/chat/completions" && break; sleep 0.1; done
  load 5 >/dev/null # warm-up
  callgrind_control -z $pid >/dev/null
  load "$DUR" > "$W/wrk.txt"
  callgrind_control -d $pid >/dev/null
  kill $pid; wait $pid 2>/dev/null || true
  req=$(awk '/requests in/ {print $1}' "$W/wrk.txt")
  cp "$W/wrk.txt" "$OUT/$n.wrk"
  bad=$(awk '/^Non-2xx or Socket errors:/ {s+=$5; next} /Non-2xx/ {s+=$5} /Socket errors/ {gsub(/,/,""); s+=$4+$6+$8+$10} END {print s+0}' "$W/wrk.txt")
  [ "$bad" = 0 ] || echo "$n: $bad errors or non-2xx"
  f=$(ls -t "$W"/cg.$pid.* 2>/dev/null | head -1)
  [ -n "$f" ] || { echo "$n: no dump (callgrind died?)"; continue; }
  callgrind_annotate --threshold=99 "$f" > "$W/annotate.txt" 2>/dev/null || true
  sed -n 1,60p "$W/annotate.txt" > "$OUT/$n.top"
  cp "$f" "$OUT/$n.cg"
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  case $n in floor) exe=$W/floor/floor ;; bare | bare-lean) exe=$W/bareproxy ;; *) exe=$bin ;; esac
  [ -f "$exe" ] && head -c2 "$exe" | grep -q '^#!' && exe=$(awk '/exec/ {for (i=1;i<=NF;i++) if ($i ~ /^\//) {print $i; exit}}' "$exe")
  misses=""
  [ "${CACHESIM:-0}" = 1 ] && misses=$(awk -v n="$req" '/^events:/ {for (i=2;i<=NF;i++) e[i]=$i}
    /^(summary|totals):/ {for (i=2;i<=NF;i++) v[e[i]]=$i; printf " %.0f %.0f %.0f", v["I1mr"]/n, v["D1mr"]/n, v["D1mw"]/n; exit}' "$f")
  echo "$n $req $((ir / req)) $(code_pages "$f" "$exe" "$req") $(cut -d' ' -f1 /proc/loadavg)$misses"
  rm -f "$W"/cg.$pid*
done
