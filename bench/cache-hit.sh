#!/usr/bin/env bash
# Cache hits, side by side in one run (issue 4): Sluice's response cache
# against nginx proxy_cache serving the same cached answer to the same POST.
#
# Both sit in front of `sluice sim --instant`; both caches are warmed with
# one request, then wrk sends that identical deterministic request
# (temperature 0) for DUR on CONNS connections. Every measured response must
# be a hit: the script checks that the backend received no request during
# the measured runs (its sluice_sim_requests_total), that Sluice counted a
# cache hit for every request wrk completed, that wrk saw no error or
# non-2xx, and samples X-Cache / X-Cache-Status before and after.
#
# Fairness: with PIN=1 (default on >= 2 cores) wrk and the backend run on
# CPU 0 and the server under test on CPU 1, the same for both: nginx with
# worker_processes 1, Sluice with GOMAXPROCS=1 (what Go picks itself under
# that affinity). With PIN=0 nothing is pinned, nginx runs
# worker_processes = nproc and Sluice GOMAXPROCS = nproc.
# Rounds rotate the order (nginx first, then Sluice first, ...) so drift
# on a shared machine does not always favour the same side.
#
# With FLOOR=1 (default) a third row measures a reference, not a
# competitor: a 20-line Go net/http handler that reads the body and writes
# the same cached bytes with the same headers (built from this script),
# i.e. what a Go server pays for this request before any Sluice code.
#
# Sluice runs on its defaults (flag mode: admission, breaker, passive
# health, retry budget, metrics, cache L1 256MiB/5m), no rate limit
# configured, access log filtered by --log-level error (as nginx's
# access_log off).
#
# Needs nginx, wrk, curl: installed with apt-get when missing.
# Usage: [PIN=1] [ROUNDS=2] [FLOOR=1] [SLUICE_BIN=prebuilt] [PORT_BASE=19111] bench/cache-hit.sh [duration=10s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-2}
FLOOR=${FLOOR:-1}
NCPU=$(nproc)
PIN=${PIN:-$([ "$NCPU" -ge 2 ] && echo 1 || echo 0)}

bench/install-tools.sh nginx wrk curl   # apt-get when missing (root, else sudo)
. bench/lib.sh
pin_cpus
NGX_WORKERS=$WORKERS SLUICE_ENV=(GOMAXPROCS=$WORKERS)

WORK=$(mktemp -d)
# nginx keeps cached answers in files: put them on tmpfs when there is one,
# so its hits are not disk reads (Sluice's are memory reads).
CACHEDIR=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
SLUICE_PID= FLOOR_PID=
cleanup() {
  set +e
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null
  for p in $SLUICE_PID $FLOOR_PID $(jobs -p); do kill "$p" 2>/dev/null; done
  sleep 0.2
  rm -rf "$WORK" "$CACHEDIR"
}
trap cleanup EXIT

if [ -n "${SLUICE_BIN:-}" ]; then cp "$SLUICE_BIN" "$WORK/sluice"; else go build -o "$WORK/sluice" ./cmd/sluice; fi

P=${PORT_BASE:-19111}   # ports P to P+5; another PORT_BASE lets two runs share a machine
BACK=127.0.0.1:$P NGINX=127.0.0.1:$((P + 1)) SLUICE=127.0.0.1:$((P + 3)) FLOORADDR=127.0.0.1:$((P + 4)) ADMIN=127.0.0.1:$((P + 5))
BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"temperature":0}'
OTHER='{"model":"m","messages":[{"role":"user","content":"another prompt"}],"max_tokens":4,"temperature":0}'

"${LOADCPU[@]}" "$WORK/sluice" sim --listen $BACK --instant --model m >/dev/null 2>&1 &

cat > "$WORK/nginx.conf" <<NGX
worker_processes $NGX_WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;   # Sluice never closes a keep-alive connection by count
  proxy_cache_path $CACHEDIR levels=1:2 keys_zone=hits:10m max_size=256m inactive=10m use_temp_path=off;
  upstream backend { server $BACK; keepalive 128; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      client_body_buffer_size 1m;        # the body must be in memory for \$request_body
      client_body_in_single_buffer on;
      proxy_cache hits;
      proxy_cache_methods POST;
      proxy_cache_key "\$request_uri|\$request_body";
      proxy_cache_valid 200 5m;
      add_header X-Cache-Status \$upstream_cache_status always;
    }
  }
}
NGX
"${SRVCPU[@]}" nginx -c "$WORK/nginx.conf" -p "$WORK"

cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA

post() { # addr body header-name -> value of that response header ("" if absent); fails on non-200
  curl -sf -D - -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "$2" \
    "http://$1/v1/chat/completions" | tr -d '\r' | awk -v h="$(echo "$3" | tr 'A-Z' 'a-z')" \
    'tolower($1)==h":" {print $2}'
}
expect() { # name want got
  [ "$2" = "$3" ] || { echo "FAIL $1: want $2, got '${3}'" >&2; exit 1; }
}
backend_requests() { curl -sf "http://$BACK/metrics" | awk '$1 ~ /^sluice_sim_requests_total/ {print $2}'; }
sluice_hits() { curl -sf "http://$ADMIN/metrics" | awk '$1 ~ /^sluice_cache_lookups_total/ && /level="l1"/ && /result="hit"/ {print $2+0}'; }

if [ "$FLOOR" = 1 ]; then
  # Reference, not a competitor: the least a Go net/http server can do for
  # this request (read the body, set the same headers as a Sluice hit,
  # write the same cached bytes), under the same pinning.
  mkdir -p "$WORK/floor"
  printf 'module floor\ngo 1.22\n' > "$WORK/floor/go.mod"
  cat > "$WORK/floor/main.go" <<'GO'
package main

import (
	"io"
	"net/http"
	"os"
)

func main() {
	body, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	http.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("X-Request-Id", "0123456789abcdef0123456789abcdef")
		h.Set("Content-Type", "application/json")
		h.Set("X-Cache", "HIT")
		h.Set("Age", "1")
		h.Set("Cache-Control", "private, max-age=300")
		h.Set("X-Sluice-Model", "m") // the scripts' model: hits name theirs (a09a7a8)
		w.Write(body)
	}))
}
GO
  (cd "$WORK/floor" && GOWORK=off go build -o floor .)
fi

wait_up $BACK health
wait_up $NGINX health   # proxied (GET: not cached)
NGINX_MASTER=$(cat "$WORK/nginx.pid")

start_sluice() {
  env "${SLUICE_ENV[@]}" "${SRVCPU[@]}" "$WORK/sluice" serve --listen $SLUICE --admin-listen $ADMIN --model m \
    --backend "http://$BACK" --log-level error --data-dir "$WORK/data" 2>>"$WORK/sluice.log" & # its own: another sluice may hold the default's lock
  SLUICE_PID=$!
  wait_up $SLUICE healthz
}
start_sluice

# Warm both caches and check they hit, and that a different body misses
# (the key includes the body: nginx is not answering every POST alike).
expect "nginx first request" MISS "$(post $NGINX "$BODY" X-Cache-Status)"
expect "nginx warm request" HIT "$(post $NGINX "$BODY" X-Cache-Status)"
expect "nginx other body" MISS "$(post $NGINX "$OTHER" X-Cache-Status)"
expect "sluice first request" MISS "$(post $SLUICE "$BODY" X-Cache)"
expect "sluice warm request" HIT "$(post $SLUICE "$BODY" X-Cache)"
expect "sluice other body" MISS "$(post $SLUICE "$OTHER" X-Cache)"
# Same answer bytes from both caches and the backend.
b0=$(curl -sf -X POST --data-binary "$BODY" "http://$BACK/v1/chat/completions")
b1=$(curl -sf -X POST --data-binary "$BODY" "http://$NGINX/v1/chat/completions")
b2=$(curl -sf -X POST --data-binary "$BODY" "http://$SLUICE/v1/chat/completions")
[ "$b1" = "$b0" ] && [ "$b2" = "$b0" ] || { echo "FAIL: cached bodies differ from the backend's"; exit 1; }
if [ "$FLOOR" = 1 ]; then
  printf '%s' "$b0" > "$WORK/answer.json"
  env "${SLUICE_ENV[@]}" "${SRVCPU[@]}" "$WORK/floor/floor" $FLOORADDR "$WORK/answer.json" &
  FLOOR_PID=$!
  for _ in $(seq 100); do curl -sf -o /dev/null -X POST -d '{}' "http://$FLOORADDR/" && break; sleep 0.1; done
  # "The same headers" is checked, not assumed (a header Sluice gained on
  # hits was once missing here): the floor answers with a Sluice hit's
  # header names (its body is the backend's answer, as the hits').
  expect "the floor's header names" "$(header_names $SLUICE "$BODY")" "$(header_names $FLOORADDR "$BODY")"
fi

run() { # name addr pids... -> "round name rps p50 p99 errors cpu% cpu_us_per_req"
  local name=$1 addr=$2; shift 2
  local out="$WORK/$name.$ROUND.txt" c0 c1 n
  c0=$(cpu_ticks "$@")
  "${LOADCPU[@]}" wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$WORK/post.lua" "http://$addr/v1/chat/completions" > "$out"
  c1=$(cpu_ticks "$@")
  n=$(awk '/requests in/ {print $1}' "$out")
  awk -v round="$ROUND" -v name="$name" -v n="$n" -v ticks=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
    /Non-2xx/ {err+=$5} /Socket errors/ {gsub(/,/,""); err+=$4+$6+$8+$10}
    /requests in/ {secs=$4; sub(/s,?$/,"",secs)}
    END {cpu=ticks/hz; printf "%d %s %.0f %s %s %d %.0f %.1f\n", round, name, rps, p50, p99, err, 100*cpu/secs, 1e6*cpu/n}' "$out"
}

b_start=$(backend_requests)
: > "$WORK/results.txt"
targets=(nginx sluice); [ "$FLOOR" = 1 ] && targets+=(floor)
for ROUND in $(seq "$ROUNDS"); do
  # rotate the order each round: nginx sluice floor, sluice floor nginx, ...
  k=$(( (ROUND - 1) % ${#targets[@]} ))
  for t in "${targets[@]:k}" "${targets[@]:0:k}"; do
    case $t in
    nginx)
      run nginx $NGINX "$NGINX_MASTER" >> "$WORK/results.txt"
      expect "nginx after run $ROUND" HIT "$(post $NGINX "$BODY" X-Cache-Status)" ;;
    sluice)
      h0=$(sluice_hits)
      run sluice $SLUICE "$SLUICE_PID" >> "$WORK/results.txt"
      h1=$(sluice_hits)
      n=$(awk '/requests in/ {print $1}' "$WORK/sluice.$ROUND.txt")
      [ "$(awk -v a="$h0" -v b="$h1" 'BEGIN{printf "%.0f", b-a}')" -ge "$n" ] ||
        { echo "FAIL: Sluice counted $h0 -> $h1 cache hits for $n requests"; exit 1; }
      expect "sluice after run $ROUND" HIT "$(post $SLUICE "$BODY" X-Cache)" ;;
    floor)
      run floor $FLOORADDR "$FLOOR_PID" >> "$WORK/results.txt" ;;
    esac
  done
done
b_end=$(backend_requests)
# The post-run probes are hits too, so the backend count must not move at all.
[ "$b_start" = "$b_end" ] || { echo "FAIL: the backend got $((b_end - b_start)) requests during the measured runs"; exit 1; }

echo "machine: $NCPU cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t1 -c$CONNS -d$DUR, $ROUNDS rounds; pinned: $([ "$PIN" = 1 ] && echo "wrk+backend CPU 0, server CPU 1 (nginx worker_processes 1, Sluice GOMAXPROCS=1)" || echo "no (nginx worker_processes $NCPU, Sluice GOMAXPROCS=$NCPU)")"
echo "checked: backend requests during measured runs: $((b_end - b_start)); every Sluice request counted as an L1 hit; X-Cache(-Status) HIT before and after each run"
echo "CPU = the server's processes' CPU time / wall time (pinned: < ~95% means other jobs took part of its core); CPU us/req = that CPU time per request"
awk -v pin="$PIN" '
  {round[NR]=$1; name[NR]=$2; rps[NR]=$3; p50[NR]=$4; p99[NR]=$5; err[NR]=$6; cpu[NR]=$7; us[NR]=$8
   if ($2=="nginx") {ng[$1]=$3; ngus[$1]=$8} if ($2=="sluice") {sl[$1]=$3; slus[$1]=$8}}
  END {
    printf "%-6s %-7s %9s %9s %9s %7s %6s %11s %9s\n", "round", "target", "req/s", "p50", "p99", "errors", "CPU", "CPU us/req", "vs nginx"
    for (i=1;i<=NR;i++)
      printf "%-6d %-7s %9d %9s %9s %7d %5d%% %11.1f %8.2fx\n", round[i], name[i], rps[i], p50[i], p99[i], err[i], cpu[i], us[i], rps[i]/ng[round[i]]
    s=0; c=0; n=0; for (r in ng) { s+=sl[r]/ng[r]; c+=ngus[r]/slus[r]; n++ }
    for (i=1;i<=NR;i++) if (pin==1 && cpu[i] < 90) low++
    if (low) printf "WARNING: %d of %d runs got < 90%% of their core (other jobs on the machine): their req/s are not comparable; CPU us/req still is\n", low, NR
    printf "mean of %d rounds: Sluice req/s / nginx req/s = %.2fx; nginx CPU us/req / Sluice CPU us/req = %.2fx (1.00x = as efficient)\n", n, s/n, c/n
  }' "$WORK/results.txt"
