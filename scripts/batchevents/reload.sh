#!/usr/bin/env bash
# Batch webhook endpoints on reload, black-box through the binary with a
# real receiver (receiver.py): the file names an endpoint for the tenant
# "acmee" (a typo of acme) and one for every tenant, /all; `sluice check`
# is run on it, the gateway started, a batch of acme's run; then the file
# is fixed (/acme for acme) and /all replaced by /ops, SIGHUP, and a second
# batch of acme's run. Prints where each batch's event went and what the
# log and `sluice check` said.
# Usage: scripts/batchevents/reload.sh [BINARY]
set -euo pipefail
BIN=${1:-/tmp/batchev3-sluice}
mkdir -p /tmp/batchev3-demo
W=$(mktemp -d /tmp/batchev3-demo/run.XXXX)
here=$(cd "$(dirname "$0")" && pwd)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW=$(free_port) SIM=$(free_port) HOOK=$(free_port)
SECRET="whsec_$(head -c 24 /dev/urandom | base64)"
R="http://127.0.0.1:$HOOK"
write() { # HOOKS
  cat >"$W/sluice.yaml" <<YAML
listen: 127.0.0.1:$GW
admin: {listen: "off"}
log: {level: info, access: false}
auth: {require_key: true, keys: [{key: sk-acme, tenant: acme}, {key: sk-globex, tenant: globex}]}
models:
  - name: m
    backends: [{url: "http://127.0.0.1:$SIM"}]
queue:
  webhook_secret: "$SECRET"
  allow_private_webhooks: true
  batch_webhooks: $1
YAML
}
write "[{url: \"$R/acme\", tenants: [acmee]}, \"$R/all\"]"
. "$here/common.sh"
start_sim_and_receiver up
echo "== sluice check"
"$BIN" check --config "$W/sluice.yaml" >"$W/check.out" 2>&1 || true
sed "s|$W/||g" "$W/check.out" | cut -c1-260 | sed 's/^/  /'
"$BIN" serve --config "$W/sluice.yaml" --data-dir "$W/data" >>"$W/gateway.log" 2>&1 & GWPID=$!; pids+=($GWPID)
for _ in $(seq 300); do
  curl -fs -H 'Authorization: Bearer sk-acme' http://127.0.0.1:$GW/v1/models >/dev/null 2>&1 && break
  sleep 0.1
done
batch() { # KEY -> batch id
  local f
  printf '{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n' >"$W/in.jsonl"
  f=$(curl -fs -H "Authorization: Bearer $1" -F purpose=batch -F file=@"$W/in.jsonl" http://127.0.0.1:$GW/v1/files | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -fs -H "Authorization: Bearer $1" -H 'Content-Type: application/json' http://127.0.0.1:$GW/v1/batches \
    -d "{\"input_file_id\":\"$f\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
hits() { # PATH BATCH -> verified deliveries
  python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) for e in [json.loads(l)] if e["path"]==sys.argv[2] and e["batch"]==sys.argv[3] and e["verified"]))' "$W/events.jsonl" "$@"
}
settle() { # BATCH PATH: wait for its event at PATH (at most ~20 s), then 3 s more for any other
  for _ in $(seq 100); do [ "$(hits "$2" "$1")" -ge 1 ] && break; sleep 0.1; done
  sleep 3
}
b1=$(batch sk-acme); settle "$b1" /all
write "[{url: \"$R/acme\", tenants: [acme]}, \"$R/ops\"]"
kill -HUP $GWPID
for _ in $(seq 100); do grep -q "config reload" "$W/gateway.log" && break; sleep 0.1; done
sleep 1
b2=$(batch sk-acme); settle "$b2" /acme
for b in "$b1" "$b2"; do
  echo "== $( [ "$b" = "$b1" ] && echo 'batch 1 (before the reload)' || echo 'batch 2 (after it)'): /acme $(hits /acme "$b"), /all $(hits /all "$b"), /ops $(hits /ops "$b")"
done
echo "== gateway log (warnings and reload lines)"
grep -E 'acmee|config reload|batch_webhooks' "$W/gateway.log" | sed "s|$W/||g" | cut -c1-300 | sed 's/^/  /'
echo "(work dir $W)"
