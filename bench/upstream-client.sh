#!/usr/bin/env bash
# The upstream client alone: the bare Go reverse proxy (bench/bareproxy)
# with net/http's Transport (--client nethttp) against the same proxy with
# the inline HTTP/1.1 client (--client lean, internal/h1client), nginx
# beside them, alternating in one run. Same conditions as
# proxy-overhead.sh: wrk and the backend (sluice sim --instant) on CPU 0,
# the proxy under test on CPU 1 with GOMAXPROCS=1 / one nginx worker.
# Two Sluice rows from the same binary, on its defaults, differing only in
# upstream_client (net/http vs lean), long-lived (warm) processes pinned
# like the rest.
# Per round and target: req/s, and from `perf stat -p` over the wrk run
# the server's CPU time (task-clock; nginx: master and worker) and its
# (kernel) context switches per request.
#
# Usage: [ROUNDS=3] [PORT_BASE=19411] [SLUICE_BIN=prebuilt] bench/upstream-client.sh [duration=10s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-3}
NCPU=$(nproc)
PIN=1
bench/install-tools.sh nginx wrk curl
command -v perf >/dev/null || { echo "needs perf (linux-tools)"; exit 1; }
. bench/lib.sh
pin_cpus

WORK=$(mktemp -d)
cleanup() {
  set +e
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null
  for p in $(jobs -p); do kill "$p" 2>/dev/null; done
  sleep 0.2
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -n "${SLUICE_BIN:-}" ]; then cp "$SLUICE_BIN" "$WORK/sluice"; else go build -o "$WORK/sluice" ./cmd/sluice; fi
go build -o "$WORK/bareproxy" ./bench/bareproxy

P=${PORT_BASE:-19411}
BACK=127.0.0.1:$P NGINX=127.0.0.1:$((P + 1)) NET=127.0.0.1:$((P + 2)) LEAN=127.0.0.1:$((P + 3))
SNET=127.0.0.1:$((P + 4)) SLEAN=127.0.0.1:$((P + 5))
BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}'
"${LOADCPU[@]}" "$WORK/sluice" sim --listen $BACK --instant --model m >/dev/null 2>&1 &
cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server $BACK; keepalive 128; }
  server {
    listen $NGINX;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
NGX
"${SRVCPU[@]}" nginx -c "$WORK/nginx.conf" -p "$WORK"
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA
wait_up $BACK health
GOMAXPROCS=1 "${SRVCPU[@]}" "$WORK/bareproxy" --listen $NET --backend $BACK --client nethttp 2>"$WORK/net.log" &
NET_PID=$!
GOMAXPROCS=1 "${SRVCPU[@]}" "$WORK/bareproxy" --listen $LEAN --backend $BACK --client lean 2>"$WORK/lean.log" &
LEAN_PID=$!
start_sluice() { # addr client; sets SLUICE_PID
  printf 'upstream_client: %s\nmodels:\n  - name: m\n    backends:\n      - url: http://%s\n' "$2" "$BACK" > "$WORK/sluice-${2//\//}.yaml"
  GOMAXPROCS=1 "${SRVCPU[@]}" "$WORK/sluice" serve --config "$WORK/sluice-${2//\//}.yaml" --listen "$1" --admin-listen off --data-dir "$WORK/data-${2//\//}" \
    --log-level error >/dev/null 2>>"$WORK/sluice.log" &
  SLUICE_PID=$!
}
start_sluice $SNET net/http
SNET_PID=$SLUICE_PID
start_sluice $SLEAN lean
SLEAN_PID=$SLUICE_PID
wait_up $NET health
wait_up $LEAN health
wait_up $SNET healthz
wait_up $SLEAN healthz

run() { # name addr pid -> "round name rps ms_per_req cs_per_req non2xx errors"
  local name=$1 addr=$2 pid=$3 out="$WORK/$1.$ROUND"
  perf stat -x, -e task-clock,context-switches -p "$pid" -o "$out.perf" &
  local perf_pid=$!
  sleep 0.2
  "${LOADCPU[@]}" wrk -t1 -c"$CONNS" -d"$DUR" -s "$WORK/post.lua" "http://$addr/v1/chat/completions" > "$out.wrk"
  kill -INT $perf_pid; wait $perf_pid 2>/dev/null || true
  awk -F, -v round="$ROUND" -v name="$name" '
    FNR==NR { if (/requests in/) n=$1+0; if (/Requests\/sec/) {split($0,a," "); rps=a[2]}
              if (/Non-2xx/) {split($0,a," "); bad+=a[5]} if (/Socket errors/) {gsub(/[^0-9 ]/,""); split($0,a," "); err+=a[1]+a[2]+a[3]+a[4]} next }
    $3=="task-clock" {ms=$1} $3=="context-switches" {cs=$1}
    END {printf "%d %s %.0f %.1f %.3f %d %d\n", round, name, rps, 1000*ms/n, cs/n, bad, err}' "$out.wrk" "$out.perf"
}
: > "$WORK/results.txt"
for ROUND in $(seq "$ROUNDS"); do
  order=(nginx nethttp lean snet slean)
  [ $((ROUND % 2)) = 0 ] && order=(slean snet lean nethttp nginx)
  for t in "${order[@]}"; do
    case $t in
    nginx) run nginx $NGINX "$(cat "$WORK/nginx.pid"),$(pgrep -d, -P "$(cat "$WORK/nginx.pid")")" >> "$WORK/results.txt" ;;
    nethttp) run bare-nethttp $NET $NET_PID >> "$WORK/results.txt" ;;
    lean) run bare-lean $LEAN $LEAN_PID >> "$WORK/results.txt" ;;
    snet) run sluice-nethttp $SNET $SNET_PID >> "$WORK/results.txt" ;;
    slean) run sluice-lean $SLEAN $SLEAN_PID >> "$WORK/results.txt" ;;
    esac
  done
done
echo "machine: $NCPU cores, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg) at the end; wrk -t1 -c$CONNS -d$DUR; pinned: wrk + backend CPU 0, server CPU 1, GOMAXPROCS=1 / 1 nginx worker"
echo "vs nethttp: the bare rows over bare-nethttp, the Sluice rows over sluice-nethttp (same round)"
awk '{rows[NR]=$0} $2=="nginx" {ng[$1]=$3} $2=="bare-nethttp" {bn[$1]=$3; bnus[$1]=$4} $2=="sluice-nethttp" {sn[$1]=$3; snus[$1]=$4}
  END { printf "%-5s %-15s %8s %11s %10s %8s %7s %9s %12s %13s\n", "round", "target", "req/s", "us CPU/req", "ctxsw/req", "non-2xx", "errors", "vs nginx", "vs nethttp", "CPU/req vs nethttp"
    for (i=1;i<=NR;i++) { split(rows[i], f, " "); s = f[2] ~ /^sluice/
      printf "%-5d %-15s %8d %11.1f %10.3f %8d %7d %8.2fx %11.2fx %12.2fx\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[3]/ng[f[1]], f[3]/(s ? sn[f[1]] : bn[f[1]]), f[4]/(s ? snus[f[1]] : bnus[f[1]]) } }' "$WORK/results.txt"
