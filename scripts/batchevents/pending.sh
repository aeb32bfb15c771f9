#!/usr/bin/env bash
# Batch webhook events, black-box through the binary with a real receiver
# (receiver.py): (A) a receiver down for the first round gets the event
# later; (B) the gateway killed with -9 while the event is in flight, then
# restarted on the same data dir, delivers it; (C) two tenants: each
# endpoint gets only its tenants' events.
# Usage: scripts/batchevents/pending.sh [BINARY] [scoped: 1 | 0]
#   scoped 0 writes queue.batch_webhooks as plain URLs (every endpoint,
#   every tenant), the only form a binary from before 2026-12-06 reads.
set -euo pipefail
BIN=${1:-/tmp/batchev2-sluice} SCOPED=${2:-1}
W=$(mktemp -d /tmp/batchev2-demo/run.XXXX)
here=$(cd "$(dirname "$0")" && pwd)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW=$(free_port) SIM=$(free_port) HOOK=$(free_port)
SECRET="whsec_$(head -c 24 /dev/urandom | base64)"
R="http://127.0.0.1:$HOOK"
if [ "$SCOPED" = 1 ]; then
  HOOKS="[{url: \"$R/acme\", tenants: [acme]}, {url: \"$R/globex\", tenants: [globex]}, \"$R/all\"]"
else
  HOOKS="[\"$R/acme\", \"$R/globex\", \"$R/all\"]"
fi
cat >"$W/sluice.yaml" <<YAML
listen: 127.0.0.1:$GW
admin: {listen: "off"}
log: {level: warn}
auth: {keys: [{key: sk-acme, tenant: acme}, {key: sk-globex, tenant: globex}]}
models:
  - name: m
    backends: [{url: "http://127.0.0.1:$SIM"}]
queue:
  webhook_secret: "$SECRET"
  allow_private_webhooks: true
  batch_webhooks: $HOOKS
YAML
. "$here/common.sh"
start_sim_and_receiver up
start_gw() {
  "$BIN" serve --config "$W/sluice.yaml" --data-dir "$W/data" >>"$W/gateway.log" 2>&1 & GWPID=$!; pids+=($GWPID)
  for _ in $(seq 300); do
    curl -fs -H 'Authorization: Bearer sk-acme' http://127.0.0.1:$GW/v1/models >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "gateway not up"; exit 1
}
batch() { # KEY -> batch id
  local f
  printf '{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n' >"$W/in.jsonl"
  f=$(curl -fs -H "Authorization: Bearer $1" -F purpose=batch -F file=@"$W/in.jsonl" http://127.0.0.1:$GW/v1/files | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -fs -H "Authorization: Bearer $1" -H 'Content-Type: application/json' http://127.0.0.1:$GW/v1/batches \
    -d "{\"input_file_id\":\"$f\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
ended() { # KEY ID -> completed_at once completed
  local a
  for _ in $(seq 600); do
    a=$(curl -fs -H "Authorization: Bearer $1" http://127.0.0.1:$GW/v1/batches/$2 | python3 -c 'import json,sys; b=json.load(sys.stdin); print(b.get("completed_at") or "")')
    [ -n "$a" ] && { echo "$a"; return; }
    sleep 0.1
  done
  echo "batch $2 did not complete"; exit 1
}
hits() { # PATH BATCH [MODE] -> deliveries logged
  python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) for e in [json.loads(l)] if e["path"]==sys.argv[2] and e["batch"]==sys.argv[3] and e["verified"] and (len(sys.argv)<5 or e["mode"]==sys.argv[4])))' "$W/events.jsonl" "$@"
}
wait_delivered() { # PATH BATCH SECONDS -> seconds waited, or "never"
  local t0=$(date +%s.%N) deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt $deadline ]; do
    [ "$(hits "$1" "$2" up)" -ge 1 ] && { python3 -c "import time; print(round(time.time()-$t0,1))"; return; }
    sleep 0.2
  done
  echo never
}
start_gw
echo "== A: receiver down (503) for the first round"
echo down >"$W/mode"
a=$(batch sk-acme); end=$(ended sk-acme "$a")
for _ in $(seq 300); do [ "$(hits /acme "$a")" -ge 1 ] && break; sleep 0.1; done
sleep 12 # the first round (5 attempts, ~8 s of backoff) is over
echo "  first round: $(hits /acme "$a" down) attempts answered 503"
echo up >"$W/mode"
w=$(wait_delivered /acme "$a" 100)
echo "  delivered after the receiver came back: $w s later ($(( $(date +%s) - end )) s after the batch ended; schedule: 1 min + jitter)"
echo "== B: gateway killed -9 with the event in flight, restarted on the same data dir"
echo hang >"$W/mode"
b=$(batch sk-acme); ended sk-acme "$b" >/dev/null
for _ in $(seq 300); do [ "$(hits /acme "$b")" -ge 1 ] && break; sleep 0.1; done
kill -9 $GWPID; wait $GWPID 2>/dev/null || true
echo up >"$W/mode"
t0=$(date +%s.%N); start_gw
w=$(wait_delivered /acme "$b" 60)
echo "  after the restart: delivered $w s after the gateway was started again"
echo "== C: two tenants"
ca=$(batch sk-acme); cg=$(batch sk-globex); ended sk-acme "$ca" >/dev/null; ended sk-globex "$cg" >/dev/null
wait_delivered /all "$cg" 30 >/dev/null; wait_delivered /all "$ca" 30 >/dev/null
wait_delivered /acme "$ca" 10 >/dev/null || true; sleep 2
python3 - "$W/events.jsonl" "$a" "$b" "$ca" "$cg" <<'PY'
import json, sys, collections
log, acme, globex = sys.argv[1], set(sys.argv[2:5]), {sys.argv[5]}
got = collections.defaultdict(collections.Counter)
for l in open(log):
    e = json.loads(l)
    if e["verified"] and e["mode"] == "up":
        got[e["path"]][e["batch"]] += 1
for p in ("/acme", "/globex", "/all"):
    c = got[p]
    print(f"  {p:8} acme batches {sum(1 for b in c if b in acme)}/3, globex batches {sum(1 for b in c if b in globex)}/1, "
          f"deliveries {sum(c.values())}, max per batch {max(c.values(), default=0)}")
PY
echo "(work dir $W)"
