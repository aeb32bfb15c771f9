#!/usr/bin/env bash
# Phase 1 of bench/stream-overhead.sh alone (CPU per relayed event: the same
# simulator, client, pinning and nginx config), for two Sluice builds and
# nginx, more rounds of shorter legs with the order rotated: for a machine
# whose load swamps the full script's three rounds. Prints one line per
# leg ("M round target streams events errors secs ticks load1") and the
# ratios per round: each build to nginx, and B to A.
# Usage: [ROUNDS=6] [DUR=5s] [CONCS="64 256"] [P=19701] bench/stream-ab.sh A_BIN B_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-6} DUR=${DUR:-5s} CONCS=${CONCS:-"64 256"} P=${P:-19701}
A=$1 B=$2
PIN=1 NCPU=2; . bench/lib.sh; pin_cpus
W=$(mktemp -d); PIDS=()
go build -o $W/sc ./bench/streamclient
SC=$W/sc
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; [ -f $W/nginx.pid ] && kill $(cat $W/nginx.pid); sleep 0.3; rm -rf $W' EXIT
simflags=(--model m --slots 2048 --max-waiting 8192 --kv-tokens 1000000000 --prefill-tps 1e9 --step-per-seq 1ns)
"${LOADCPU[@]}" $A sim --listen 127.0.0.1:$P "${simflags[@]}" --step 1us >/dev/null 2>&1 & PIDS+=($!)
cat > $W/nginx.conf <<NGX
worker_processes 1; worker_rlimit_nofile 20000; pid $W/nginx.pid; error_log $W/err.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  upstream b { server 127.0.0.1:$P; keepalive 128; }
  server { listen 127.0.0.1:$((P+1)); location / { proxy_pass http://b; proxy_http_version 1.1;
    proxy_set_header Connection ""; proxy_buffering off; proxy_read_timeout 600s; } } }
NGX
"${SRVCPU[@]}" nginx -c $W/nginx.conf -p $W
declare -A SP PORT
i=0
for nb in base=$A new=$B; do
  n=${nb%%=*} b=${nb#*=}; port=$((P+2+2*i)); i=$((i+1))
  env GOMAXPROCS=1 "${SRVCPU[@]}" $b serve --listen 127.0.0.1:$port --admin-listen off --model m --backend http://127.0.0.1:$P --log-level error --data-dir $W/dd-$n 2>>$W/$n.log & SP[$n]=$!; PIDS+=($!)
  PORT[$n]=$port
done
PORT[nginx]=$((P+1)); SP[nginx]=$(sleep 0.5; cat $W/nginx.pid)
for t in base new; do wait_up 127.0.0.1:${PORT[$t]} healthz; done
body='{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":64,"stream":true}'
maxc=$(echo $CONCS | tr ' ' '\n' | sort -n | tail -1)
for t in nginx base new; do "${LOADCPU[@]}" $SC --url http://127.0.0.1:${PORT[$t]}/v1/chat/completions --body "$body" --conns $maxc --dur 5s >/dev/null 2>&1; done
targets=(nginx base new)
HZ=$(getconf CLK_TCK)
for r in $(seq $ROUNDS); do
  k=$(( (r-1) % 3 )); order=("${targets[@]:k}" "${targets[@]:0:k}")
  for M in $CONCS; do for t in "${order[@]}"; do
    c0=$(cpu_ticks ${SP[$t]})
    out=$("${LOADCPU[@]}" $SC --url http://127.0.0.1:${PORT[$t]}/v1/chat/completions --body "$body" --conns $M --dur $DUR 2>/dev/null)
    c1=$(cpu_ticks ${SP[$t]})
    echo "$M $r $t $out $((c1-c0)) $(cut -d' ' -f1 /proc/loadavg)"
  done; done
done > $W/res.txt
cat $W/res.txt
awk -v hz=$HZ '$5 > 0 {us=1e6*($8/hz)/$5; key=$1" "$2; u[key" "$3]=us; rows[NR]=$0}
 END { for (i=1;i<=NR;i++){split(rows[i],f," "); k=f[1]" "f[2]; if (f[3]!="nginx"){r=u[k" "f[3]]/u[k" nginx"]; s[f[1]" "f[3]]+=r; c[f[1]" "f[3]]++; v[f[1]" "f[3]]=v[f[1]" "f[3]]" "sprintf("%.2f",r)}
   if (f[3]=="new") {nb[f[1]]=nb[f[1]]" "sprintf("%.3f", u[k" new"]/u[k" base"]); sb[f[1]]+=u[k" new"]/u[k" base"]; cb[f[1]]++} }
   for (x in s) printf "M=%s: %.2fx nginx (rounds:%s)\n", x, s[x]/c[x], v[x]
   for (m in nb) printf "M=%s new/base us/event:%s mean %.3f\n", m, nb[m], sb[m]/cb[m] }' $W/res.txt
