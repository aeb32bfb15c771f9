#!/usr/bin/env bash
# Proxy overhead, side by side in one run: the fast simulated backend
# (sluice sim --instant) measured directly, through nginx (keepalive
# upstream), through HAProxy (when installed), through a bare Go
# net/http proxy (bench/bareproxy: the floor of a net/http proxy, no
# policy) and through Sluice on its
# defaults (flag mode with one backend: adaptive admission, fair queue,
# circuit breaker, passive health, retry budget, metrics; no rate limit and
# no cache: the request is not cacheable without temperature 0).
#
# Two measurements:
#   1. throughput: wrk -t1 -cCONNS for DUR, closed loop, ROUNDS rounds whose
#      order rotates (so drift on a shared machine does not always favour
#      the same side); non-2xx and socket errors counted from the first
#      request on (no warm-up beyond one health probe);
#   2. latency added at a fixed rate: bench/fixedrate sends RATE req/s
#      (open loop, latency from each request's scheduled time) to the
#      backend directly, nginx, the bare Go proxy and Sluice in alternating
#      slices of SLICE, REPEATS times (order rotated each time); added = the
#      median over repeats of (target p99 - direct p99 of the same repeat),
#      so a shared machine's drift falls on every target alike.
#
# Same conditions for every server: with PIN=1 (default on >= 2 cores) the
# load generator and the backend run on CPU 0 and the server under test on
# CPU 1 (taskset), nginx with worker_processes 1, HAProxy nbthread 1,
# Sluice and the bare Go proxy with GOMAXPROCS=1. With PIN=0 nothing is pinned, nginx runs
# worker_processes = nproc, HAProxy nbthread = nproc and Sluice
# GOMAXPROCS = nproc. Access logging off on every side (nginx access_log
# off, Sluice --log-level error filters its access log).
#
# Installs nginx and wrk with apt-get when missing (as root, else sudo).
# RAW=FILE keeps every fixed-rate request (bench/fixedrate --raw) for
# statistics beyond the medians printed (e.g. one target against another).
# Usage: [PIN=1] [PORT_BASE=19101] [ROUNDS=2] [RATE=1000] [SLICE=1s] [REPEATS=20] [POLICIES="default"] [RAW=file]
#        [SLUICE_BIN=prebuilt] bench/proxy-overhead.sh [duration=10s] [connections=64]
# POLICIES: space-separated balancing policies ("default" = no --policy flag).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-2}
RATE=${RATE:-1000}
SLICE=${SLICE:-1s}
REPEATS=${REPEATS:-20}
POLICIES=${POLICIES:-default}
NCPU=$(nproc)
PIN=${PIN:-$([ "$NCPU" -ge 2 ] && echo 1 || echo 0)}

bench/install-tools.sh nginx wrk curl
. bench/lib.sh
pin_cpus
SLUICE_ENV=(GOMAXPROCS=$WORKERS)

WORK=$(mktemp -d)
SLUICE_PID=
cleanup() {
  set +e
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null
  [ -f "$WORK/haproxy.pid" ] && kill "$(cat "$WORK/haproxy.pid")" 2>/dev/null
  for p in $SLUICE_PID $(jobs -p); do kill "$p" 2>/dev/null; done
  sleep 0.2
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${SLUICE_BIN:-}" ]; then cp "$SLUICE_BIN" "$WORK/sluice"; else go build -o "$WORK/sluice" ./cmd/sluice; fi
go build -o "$WORK/fixedrate" ./bench/fixedrate
go build -o "$WORK/bareproxy" ./bench/bareproxy

P=${PORT_BASE:-19101}   # five ports from here; another PORT_BASE lets two runs share a machine
BACK=127.0.0.1:$P NGINX=127.0.0.1:$((P + 1)) HAPROXY=127.0.0.1:$((P + 2)) SLUICE=127.0.0.1:$((P + 3)) BARE=127.0.0.1:$((P + 4))
BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}'
"${LOADCPU[@]}" "$WORK/sluice" sim --listen $BACK --instant --model m >/dev/null 2>&1 &

cat > "$WORK/nginx.conf" <<NGX
worker_processes $WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;   # Sluice never closes a keep-alive connection by count
  upstream backend { server $BACK; keepalive 128; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGX
"${SRVCPU[@]}" nginx -c "$WORK/nginx.conf" -p "$WORK"

HAVE_HAPROXY=0
if command -v haproxy >/dev/null; then
  HAVE_HAPROXY=1
  cat > "$WORK/haproxy.cfg" <<HAP
global
  nbthread $WORKERS
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind $HAPROXY
  default_backend be
backend be
  http-reuse always
  server s1 $BACK
HAP
  "${SRVCPU[@]}" haproxy -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid"
fi

cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA

wait_up $BACK health
env "${SLUICE_ENV[@]}" "${SRVCPU[@]}" "$WORK/bareproxy" --listen $BARE --backend $BACK 2>"$WORK/bareproxy.log" &
BARE_PID=$!
wait_up $BARE health

run() { # name addr pids... -> "round name rps p50 p99 non2xx errors cpu% cpu_us_per_req"
  local name=$1 addr=$2; shift 2
  local out="$WORK/${name//\//_}.$ROUND.txt" c0 c1 n
  c0=$(cpu_ticks "$@")
  "${LOADCPU[@]}" wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$WORK/post.lua" "http://$addr/v1/chat/completions" > "$out"
  c1=$(cpu_ticks "$@")
  n=$(awk '/requests in/ {print $1}' "$out")
  awk -v round="$ROUND" -v name="$name" -v n="$n" -v ticks=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v pids="$#" '
    /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
    /Non-2xx/ {non2xx+=$5} /Socket errors/ {gsub(/,/,""); err+=$4+$6+$8+$10}
    /requests in/ {secs=$4; sub(/s,?$/,"",secs)}
    END {cpu=ticks/hz; printf "%d %s %.0f %s %s %d %d %s %s\n", round, name, rps, p50, p99, non2xx, err,
      (pids? sprintf("%.0f", 100*cpu/secs) : "-"), (pids? sprintf("%.1f", 1e6*cpu/n) : "-")}' "$out"
}

start_sluice() { # policy
  local flag=()
  [ "$1" = default ] || flag=(--policy "$1")
  env "${SLUICE_ENV[@]}" "${SRVCPU[@]}" "$WORK/sluice" serve --listen $SLUICE --admin-listen off --model m \
    --backend "http://$BACK" "${flag[@]}" --log-level error 2>>"$WORK/sluice-$1.log" &
  SLUICE_PID=$!
  wait_up $SLUICE healthz
}
stop_sluice() { kill "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null || true; SLUICE_PID=; }

targets=(nginx bare-go)
[ "$HAVE_HAPROXY" = 1 ] && targets+=(haproxy)
for p in $POLICIES; do targets+=("sluice/$p"); done
: > "$WORK/results.txt"
for ROUND in $(seq "$ROUNDS"); do
  run direct $BACK >> "$WORK/results.txt"
  k=$(( (ROUND - 1) % ${#targets[@]} ))
  for t in "${targets[@]:k}" "${targets[@]:0:k}"; do
    case $t in
    nginx) run nginx $NGINX "$(cat "$WORK/nginx.pid")" >> "$WORK/results.txt" ;;
    haproxy) run haproxy $HAPROXY "$(cat "$WORK/haproxy.pid")" >> "$WORK/results.txt" ;;
    bare-go) run bare-go $BARE "$BARE_PID" >> "$WORK/results.txt" ;;
    sluice/*)
      start_sluice "${t#sluice/}"   # a fresh process each round: its warm-up is measured too
      run "$t" $SLUICE "$SLUICE_PID" >> "$WORK/results.txt"
      stop_sluice ;;
    esac
  done
done

# Latency added at a fixed rate (default policy only), alternating slices.
start_sluice "$(echo "$POLICIES" | awk '{print $1}')"
"${LOADCPU[@]}" "$WORK/fixedrate" --rate "$RATE" --slice "$SLICE" --repeats "$REPEATS" --body "$BODY" ${RAW:+--raw "$RAW"} \
  --targets "direct=http://$BACK/v1/chat/completions,nginx=http://$NGINX/v1/chat/completions,bare-go=http://$BARE/v1/chat/completions,sluice=http://$SLUICE/v1/chat/completions" \
  > "$WORK/fixed.txt"
stop_sluice

echo "machine: $NCPU cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg); shared with other jobs"
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///'); backend: sluice sim --instant; wrk -t1 -c$CONNS -d$DUR, $ROUNDS rounds (order rotated)"
echo "pinned: $([ "$PIN" = 1 ] && echo "wrk/fixedrate + backend on CPU 0, server under test on CPU 1" || echo "no"); nginx worker_processes $WORKERS, HAProxy nbthread $WORKERS, Sluice and bare Go GOMAXPROCS=$WORKERS; access logs off on every side"
echo "Sluice: flag mode defaults (admission, breaker, passive health, retry budget, metrics), a fresh process per round; CPU = server CPU time / wall time (pinned: < 90% = other jobs took part of its core)"
awk '
  $2=="direct" {d[$1]=$3} $2=="nginx" {ng[$1]=$3} $2=="bare-go" {bg[$1]=$3}
  {rows[NR]=$0}
  END {
    printf "%-6s %-22s %9s %9s %9s %7s %7s %5s %8s %9s %9s %9s\n", "round", "target", "req/s", "p50", "p99", "non-2xx", "errors", "CPU", "us/req", "vs direct", "vs nginx", "vs bareGo"
    for (i=1;i<=NR;i++) { split(rows[i], f, " ")
      printf "%-6d %-22s %9d %9s %9s %7d %7d %4s%% %8s %8.2fx %8.2fx %8.2fx\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[3]/d[f[1]], f[3]/ng[f[1]], f[3]/bg[f[1]]
      if (f[2] ~ /^sluice|^bare-go/) { s[f[2]]+=f[3]/ng[f[1]]; sb[f[2]]+=f[3]/bg[f[1]]; c[f[2]]++ } }
    for (k in s) printf "mean %s req/s: %.2fx nginx, %.2fx bare Go, over %d rounds\n", k, s[k]/c[k], sb[k]/c[k], c[k]
  }' "$WORK/results.txt"
echo
echo "fixed rate: bench/fixedrate --rate $RATE, targets alternating in $SLICE slices, $REPEATS repeats (order rotated; 1 s warm-up each first), latency from the scheduled send time"
echo "p50/p99 = median over slices; p99 added = median over repeats of (target p99 - direct p99 in the same repeat), with quartiles"
cat "$WORK/fixed.txt"
