#!/usr/bin/env bash
# Proxy overhead, side by side in one run: the fast simulated backend
# (sluice sim --instant) measured directly, through nginx (keepalive
# upstream), through HAProxy, and through Sluice with each policy.
# Needs: nginx, haproxy, wrk (Debian: apt-get install nginx-light haproxy wrk).
# Usage: bench/proxy-overhead.sh [duration=10s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
CONNS=${2:-64}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; rm -rf "$WORK"' EXIT

for tool in nginx haproxy wrk; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install nginx-light haproxy wrk"; exit 1; }
done
go build -o "$WORK/sluice" ./cmd/sluice

BACK=127.0.0.1:19101 NGINX=127.0.0.1:19102 HAPROXY=127.0.0.1:19103 SLUICE=127.0.0.1:19104
"$WORK/sluice" sim --listen $BACK --instant --model m >/dev/null 2>&1 &

cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
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
nginx -c "$WORK/nginx.conf" -p "$WORK"

cat > "$WORK/haproxy.cfg" <<HAP
global
  nbthread 1
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
haproxy -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid"

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}'
wrk.headers["Content-Type"] = "application/json"
LUA

wait_up() { for _ in $(seq 100); do curl -sf -o /dev/null "http://$1/$2" && return 0; sleep 0.1; done; echo "not up: $1"; exit 1; }
wait_up $BACK health

run() { # name url -> "rps p50 p99"
  wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$WORK/post.lua" "http://$2/v1/chat/completions" > "$WORK/${1//\//_}.txt"
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/${1//\//_}.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/${1//\//_}.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/${1//\//_}.txt")
  non2xx=$(awk '/Non-2xx/ {print $4}' "$WORK/${1//\//_}.txt")
  echo "$1 $rps $p50 $p99 ${non2xx:-0}"
}

{
  run direct $BACK
  run nginx $NGINX
  run haproxy $HAPROXY
  for policy in round_robin least_conn p2c_ewma least_load; do
    "$WORK/sluice" serve --listen $SLUICE --admin-listen off --model m --backend http://$BACK --policy $policy --log-level error 2>"$WORK/sluice-$policy.log" &
    pid=$!
    wait_up $SLUICE healthz
    run "sluice/$policy" $SLUICE
    kill $pid; wait $pid 2>/dev/null || true
  done
} > "$WORK/results.txt"

echo "machine: $(nproc) cores, $(uname -srm); wrk -t1 -c$CONNS -d$DUR; backend: sluice sim --instant"
awk -v OFS='\t' '
  NR==1 {direct=$2} $1=="nginx" {nginx=$2}
  {rows[NR]=$0}
  END {
    printf "%-22s %10s %8s %8s %8s %10s %10s\n", "target", "req/s", "p50", "p99", "non-2xx", "vs direct", "vs nginx"
    for (i=1;i<=NR;i++) { split(rows[i], f, " ");
      printf "%-22s %10.0f %8s %8s %8s %9.2fx %9.2fx\n", f[1], f[2], f[3], f[4], f[5], f[2]/direct, (nginx>0? f[2]/nginx : 0) }
  }' "$WORK/results.txt"
