#!/usr/bin/env bash
# Streaming relay overhead, side by side in one run: SSE streams of TOKENS
# tokens (one event each, then the finish event and data: [DONE]) from
# `sluice sim` (the engine, every slot free: --slots 2048, a KV budget no
# stream reaches, step-per-seq 1ns, so a step is --step) measured
# directly, through nginx (keepalive upstream, proxy_buffering off) and
# through each Sluice build on its defaults (flag mode, one backend).
# bench/bareproxy is left out: it copies without flushing, so a stream
# reaches the client only when net/http's 4 KiB buffer fills or the
# stream ends (it measures no relay of events).
#
# Three measurements, targets in an order that rotates each round so a
# shared machine's drift falls on every side alike:
#   1. CPU per relayed event: bench/streamclient --mode load, M streams
#      (each of CONCS) in a closed loop for DUR against an engine with a
#      1 us step (tokens as fast as the engine makes them, one write and
#      flush each); server CPU (utime+stime from /proc/PID/stat, children
#      included) / data events the client read; ratio to nginx's same round.
#   2. added inter-token latency: --mode gaps, GAPCONNS streams for DUR
#      against an engine with a GAP step; per stream, the gap between
#      consecutive token events as the client reads them and the time to
#      the first event; p50/p99/p99.9 per target, added = target - direct
#      of the same round.
#   3. memory per open stream: HOLD streams opened against an engine with
#      a 1 s step (an event a second), held; RSS (VmRSS, the process and
#      its children) with them open minus RSS before, / streams open. A
#      fresh process each round (nginx: a fresh worker by reload) so what
#      an earlier round left in the heap is not counted as idle. Here
#      Sluice runs from a config with the backend's max_concurrency: 2000,
#      its only change from the defaults: the default adaptive limit
#      starts at 4 and grows only on first-token samples (10 a window),
#      which streams that stay open never give, so on defaults it admits
#      about 12 such streams (and about 100 at a 100 ms step) and sheds
#      the rest with 503.
#
# Same conditions for every server: with PIN=1 (default on >= 2 cores) the
# client and the simulators run on CPU 0 and the server under test on
# CPU 1 (taskset), nginx worker_processes 1, Sluice GOMAXPROCS=1; PIN=0
# nothing pinned, nginx worker_processes = Sluice GOMAXPROCS = nproc.
# Access logs off on both sides (nginx access_log off, Sluice --log-level
# error). Sluice for 1 and 2 is one process per build for the whole run,
# warmed for WARM at the largest M, and for WARM with the gap load, before
# the first round (all targets alike): its adaptive admission starts at slow-start limits and sheds
# (503) while it learns; refusals in measured rounds are counted.
#
# Installs nginx and curl with apt-get when missing (as root, else sudo).
# Usage: [PIN=1] [PORT_BASE=19201] [ROUNDS=3] [DUR=10s] [CONCS="64 512"] [TOKENS=64]
#        [GAP=20ms] [GAPCONNS=64] [HOLD=1000] [WARM=5s] [PROFILE=secs]
#        bench/stream-overhead.sh [name=SLUICE_BIN ...]   (default: sluice=a build of this tree)
# PROFILE=secs: after the rounds, a CPU profile of the first build under
# phase 1's largest M, written to ./stream-<name>.pprof.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10s}
CONCS=${CONCS:-64 512}
TOKENS=${TOKENS:-64}
GAP=${GAP:-20ms}
GAPCONNS=${GAPCONNS:-64}
HOLD=${HOLD:-1000}
WARM=${WARM:-5s}
NCPU=$(nproc)
PIN=${PIN:-$([ "$NCPU" -ge 2 ] && echo 1 || echo 0)}

bench/install-tools.sh nginx curl
. bench/lib.sh
pin_cpus
ulimit -n "$(ulimit -Hn)"

W=$(mktemp -d)
PIDS=()
cleanup() {
  set +e
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.2
  rm -rf "$W"
}
trap cleanup EXIT

builds=("$@")
[ ${#builds[@]} -gt 0 ] || { go build -o "$W/sluice" ./cmd/sluice; builds=("sluice=$W/sluice"); }
go build -o "$W/sc" ./bench/streamclient
SIM=${builds[0]#*=}

P=${PORT_BASE:-19201}
# Per phase (fast, gap, hold): the backend on P+10k, nginx on P+10k+1, build i on P+10k+2+2i.
FAST=0 SLOW=10 IDLE=20
simflags=(--model m --slots 2048 --max-waiting 8192 --kv-tokens 1000000000 --prefill-tps 1e9 --step-per-seq 1ns)
"${LOADCPU[@]}" "$SIM" sim --listen 127.0.0.1:$((P + FAST)) "${simflags[@]}" --step 1us >/dev/null 2>&1 & PIDS+=($!)
"${LOADCPU[@]}" "$SIM" sim --listen 127.0.0.1:$((P + SLOW)) "${simflags[@]}" --step "$GAP" >/dev/null 2>&1 & PIDS+=($!)
"${LOADCPU[@]}" "$SIM" sim --listen 127.0.0.1:$((P + IDLE)) "${simflags[@]}" --step 1s >/dev/null 2>&1 & PIDS+=($!)

srv() { echo "  upstream b$1 { server 127.0.0.1:$((P + $1)); keepalive 128; }
  server { listen 127.0.0.1:$((P + $1 + 1)); location / { proxy_pass http://b$1; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_buffering off; proxy_read_timeout 600s; } }"; }
cat > "$W/nginx.conf" <<NGX
worker_processes $WORKERS;
worker_rlimit_nofile 20000;
pid $W/nginx.pid;
error_log $W/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
$(srv $FAST)
$(srv $SLOW)
$(srv $IDLE)
}
NGX
"${SRVCPU[@]}" nginx -c "$W/nginx.conf" -p "$W"

declare -A SPID
printf 'models:\n  - name: m\n    backends:\n      - url: http://127.0.0.1:%d\n        max_concurrency: 2000\n' $((P + IDLE)) > "$W/mem.yaml"
start_sluice() { # phase index(0..) bin
  local off=$1 i=$2 bin=$3 cfg=()
  [ "$off" = "$IDLE" ] && cfg=(--config "$W/mem.yaml")
  env GOMAXPROCS=$WORKERS "${SRVCPU[@]}" "$bin" serve "${cfg[@]}" --listen 127.0.0.1:$((P + off + 2 + 2 * i)) --admin-listen off \
    $([ "$off" = "$IDLE" ] || echo --model m --backend "http://127.0.0.1:$((P + off))") --log-level error --data-dir "$W/dd-$off-$i" 2>>"$W/sluice-$off-$i.log" &
  SPID[$off.$i]=$!
  PIDS+=($!)
  wait_up 127.0.0.1:$((P + off + 2 + 2 * i)) healthz
}
for off in $FAST $SLOW $IDLE; do wait_up 127.0.0.1:$((P + off)) health; done
names=()
for i in "${!builds[@]}"; do
  names+=("${builds[$i]%%=*}")
  start_sluice $FAST "$i" "${builds[$i]#*=}"
  start_sluice $SLOW "$i" "${builds[$i]#*=}"
done

body() { printf '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":%d,"stream":true}' "$1"; }
addr() { # phase target -> URL
  case $2 in
  direct) echo "http://127.0.0.1:$((P + $1))/v1/chat/completions" ;;
  nginx) echo "http://127.0.0.1:$((P + $1 + 1))/v1/chat/completions" ;;
  *) for i in "${!names[@]}"; do [ "${names[$i]}" = "$2" ] && echo "http://127.0.0.1:$((P + $1 + 2 + 2 * i))/v1/chat/completions"; done ;;
  esac
  return 0 # the loop's last test may be false (set -e)
}
pids_of() { # phase target -> the server's pid(s)
  case $2 in
  direct) echo "${PIDS[0]}" ;;
  nginx) cat "$W/nginx.pid" ;;
  *) for i in "${!names[@]}"; do [ "${names[$i]}" = "$2" ] && echo "${SPID[$1.$i]}"; done ;;
  esac
  return 0
}
rss_kib() { local t=0 p; for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
  t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $t; }

# Each check: one stream through every target has TOKENS+2 data events and ends with [DONE].
for t in direct nginx "${names[@]}"; do
  n=$(curl -sfN -d "$(body "$TOKENS")" "$(addr $FAST "$t")" | grep -c '^data: ')
  [ "$n" = $((TOKENS + 2)) ] || { echo "$t: $n data events, want $((TOKENS + 2))"; exit 1; }
done
targets=(nginx "${names[@]}")
maxc=$(echo "$CONCS" | tr ' ' '\n' | sort -n | tail -1)
for t in direct "${targets[@]}"; do
  "${LOADCPU[@]}" "$W/sc" --url "$(addr $FAST "$t")" --body "$(body "$TOKENS")" --conns "$maxc" --dur "$WARM" >/dev/null 2>&1
  "${LOADCPU[@]}" "$W/sc" --url "$(addr $SLOW "$t")" --body "$(body "$TOKENS")" --conns "$GAPCONNS" --dur "$WARM" >/dev/null 2>&1
done

HZ=$(getconf CLK_TCK)
: > "$W/cpu.txt"; : > "$W/gaps.txt"; : > "$W/mem.txt"
for ROUND in $(seq "$ROUNDS"); do
  k=$(( (ROUND - 1) % ${#targets[@]} ))
  order=(direct "${targets[@]:k}" "${targets[@]:0:k}")
  for M in $CONCS; do
    for t in "${order[@]}"; do
      pids=$(pids_of $FAST "$t")
      c0=$(cpu_ticks $pids)
      out=$("${LOADCPU[@]}" "$W/sc" --url "$(addr $FAST "$t")" --body "$(body "$TOKENS")" --conns "$M" --dur "$DUR" 2>>"$W/client.log")
      c1=$(cpu_ticks $pids)
      echo "$M $ROUND $t $out $(( c1 - c0 ))" >> "$W/cpu.txt"
    done
  done
  for t in "${order[@]}"; do
    echo "$ROUND $t $("${LOADCPU[@]}" "$W/sc" --mode gaps --url "$(addr $SLOW "$t")" --body "$(body "$TOKENS")" --conns "$GAPCONNS" --dur "$DUR" 2>>"$W/client.log")" >> "$W/gaps.txt"
  done
  for t in "${targets[@]:k}" "${targets[@]:0:k}"; do
    if [ "$t" = nginx ]; then
      old=$(pgrep -P "$(cat "$W/nginx.pid")" | tr '\n' ' ')
      nginx -c "$W/nginx.conf" -p "$W" -s reload
      for _ in $(seq 100); do [ -z "$(for o in $old; do [ -e /proc/$o ] && echo x; done)" ] && break; sleep 0.1; done
    else
      for i in "${!names[@]}"; do [ "${names[$i]}" = "$t" ] && start_sluice $IDLE "$i" "${builds[$i]#*=}"; done
    fi
    curl -sf -m 5 -o /dev/null -d "$(body 1)" "$(addr $IDLE "$t")" || true
    pids=$(pids_of $IDLE "$t")
    sleep 1
    r0=$(rss_kib $pids)
    "${LOADCPU[@]}" "$W/sc" --mode hold --hold 4s --wait 30s --url "$(addr $IDLE "$t")" --body "$(body 1000)" --conns "$HOLD" > "$W/hold.out" 2>>"$W/client.log" &
    hc=$!
    for _ in $(seq 400); do grep -q open "$W/hold.out" && break; sleep 0.1; done
    sleep 1
    r1=$(rss_kib $pids)
    wait $hc || true
    echo "$ROUND $t $r0 $r1 $(awk '/^open/ {print $2}' "$W/hold.out")" >> "$W/mem.txt"
    if [ "$t" != nginx ]; then for i in "${!names[@]}"; do [ "${names[$i]}" = "$t" ] && kill "${SPID[$IDLE.$i]}"; done; fi
  done
done

if [ -n "${PROFILE:-}" ]; then
  env GOMAXPROCS=$WORKERS "${SRVCPU[@]}" "${builds[0]#*=}" serve --listen 127.0.0.1:$((P + 30)) --admin-listen off --pprof 127.0.0.1:$((P + 31)) \
    --model m --backend "http://127.0.0.1:$((P + FAST))" --log-level error --data-dir "$W/dd-prof" 2>>"$W/sluice-prof.log" & PIDS+=($!)
  wait_up 127.0.0.1:$((P + 30)) healthz
  pu="http://127.0.0.1:$((P + 30))/v1/chat/completions"
  "${LOADCPU[@]}" "$W/sc" --url "$pu" --body "$(body "$TOKENS")" --conns "$maxc" --dur "$WARM" >/dev/null 2>&1
  "${LOADCPU[@]}" "$W/sc" --url "$pu" --body "$(body "$TOKENS")" --conns "$maxc" --dur "$((PROFILE + 2))s" >/dev/null 2>&1 &
  curl -sf -o "stream-${names[0]}.pprof" "http://127.0.0.1:$((P + 31))/debug/pprof/profile?seconds=$PROFILE"
  wait $! || true
fi

echo "machine: $NCPU cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg); shared with other jobs"
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///'); backend: sluice sim (engine, every slot free), $TOKENS tokens per stream = $((TOKENS + 2)) data events; $ROUNDS rounds, order rotated"
echo "pinned: $([ "$PIN" = 1 ] && echo "client + simulators on CPU 0, server under test on CPU 1" || echo "no"); nginx worker_processes $WORKERS, Sluice GOMAXPROCS=$WORKERS; access logs off"
echo
echo "1. CPU per relayed event: M streams closed loop for $DUR, sim step 1us; us/event = server CPU / data events read"
awk -v hz="$HZ" '
  # div: a leg that read no event (a failed start) prints 0 and is left out
  # of the means, instead of ending the summary on a division by zero.
  function div(a, b) { return b > 0 ? a / b : 0 }
  {m=$1; r=$2; t=$3; ev=$5; err=$6; secs=$7; tk=$8; key=m" "r
   cpu=tk/hz; us[key" "t]=(t=="direct"?0:div(1e6*cpu, ev)); rows[NR]=$0; if (t=="nginx") ng[key]=us[key" "t]}
  END {
    printf "%-5s %-5s %-10s %9s %11s %9s %6s %9s %9s\n", "M", "round", "target", "streams", "events/s", "refused", "CPU%", "us/event", "vs nginx"
    for (i=1;i<=NR;i++) { split(rows[i], f, " "); key=f[1]" "f[2]; cpu=f[8]/hz
      printf "%-5s %-5s %-10s %9d %11.0f %9d %5.0f%% %9s %9s\n", f[1], f[2], f[3], f[4], div(f[5], f[7]), f[6], div(100*cpu, f[7]),
        (f[3]=="direct"?"-":sprintf("%.2f", us[key" "f[3]])), (f[3]=="direct"||f[3]=="nginx"?"-":sprintf("%.2fx", div(us[key" "f[3]], ng[key])))
      if (f[3]!="direct" && f[3]!="nginx" && us[key" "f[3]] > 0 && ng[key] > 0) { s[f[1]" "f[3]]+=us[key" "f[3]]/ng[key]; c[f[1]" "f[3]]++ } }
    for (k in s) printf "mean M=%s: %.2fx nginx CPU per event over %d rounds\n", k, s[k]/c[k], c[k]
  }' "$W/cpu.txt"
echo
echo "2. inter-token gaps (ms) at a $GAP engine step, $GAPCONNS streams for $DUR; added = target - direct, same round"
awk '
  {r=$1; t=$2; g50[r" "t]=$3; g99[r" "t]=$5; g999[r" "t]=$6; f50[r" "t]=$7; f99[r" "t]=$8; rows[NR]=$0}
  END {
    printf "%-5s %-10s %8s %8s %8s %8s %9s %9s %8s %8s %8s %7s %7s\n", "round", "target", "gap p50", "gap p90", "gap p99", "p99.9", "TTFE p50", "TTFE p99", "+p50", "+p99", "+TTFE50", "gaps", "errors"
    for (i=1;i<=NR;i++) { split(rows[i], f, " "); k=f[1]" direct"
      printf "%-5s %-10s %8.2f %8.2f %8.2f %8.2f %9.2f %9.2f %+8.2f %+8.2f %+8.2f %7d %7d\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8],
        f[3]-g50[k], f[5]-g99[k], f[7]-f50[k], f[9], f[10] }
  }' "$W/gaps.txt"
echo
echo "3. memory per open stream: $HOLD streams open (an event a second), Sluice with max_concurrency: 2000, RSS with them open - RSS before, fresh process each round"
awk '{printf "round %s %-10s RSS before %7d KiB, %5d streams open %8d KiB: %6.1f KiB per stream\n", $1, $2, $3, $5, $4, ($5 > 0 ? ($4-$3)/$5 : 0)}' "$W/mem.txt"
[ -s "$W/client.log" ] && { echo; echo "client errors (first lines):"; sort "$W/client.log" | cut -c21-200 | uniq -c | sort -rn | head -5; }
true
