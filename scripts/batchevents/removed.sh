#!/usr/bin/env bash
# An endpoint removed by a reload, black-box through the binary with a
# real receiver (receiver.py): queue.batch_webhooks is /gone and /kept,
# both answering 503 when a batch of acme's ends (their first rounds
# fail: pending, retried 1 min after the batch ended); then the file
# keeps /kept only, SIGHUP, the receiver answers 200, and the script waits
# for /kept's retry. Prints the POSTs each endpoint got after the reload
# and the gateway's lines about it.
# Usage: scripts/batchevents/removed.sh BINARY PORTBASE (three ports from PORTBASE)
set -euo pipefail
BIN=$1 BASE=$2
mkdir -p /tmp/jobsfix-demo
W=$(mktemp -d /tmp/jobsfix-demo/run.XXXX)
here=$(cd "$(dirname "$0")" && pwd)
GW=$BASE SIM=$((BASE + 1)) HOOK=$((BASE + 2))
SECRET="whsec_$(head -c 24 /dev/urandom | base64)"
R="http://127.0.0.1:$HOOK"
write() { # HOOKS
  cat >"$W/sluice.yaml" <<YAML
listen: 127.0.0.1:$GW
admin: {listen: "off"}
log: {level: info, access: false}
auth: {require_key: true, keys: [{key: sk-acme, tenant: acme}]}
models:
  - name: m
    backends: [{url: "http://127.0.0.1:$SIM"}]
queue:
  webhook_secret: "$SECRET"
  allow_private_webhooks: true
  batch_webhooks: $1
YAML
}
write "[\"$R/gone\", \"$R/kept\"]"
. "$here/common.sh"
start_sim_and_receiver down
"$BIN" serve --config "$W/sluice.yaml" --data-dir "$W/data" >>"$W/gateway.log" 2>&1 & GWPID=$!; pids+=($GWPID)
for _ in $(seq 300); do
  curl -fs -H 'Authorization: Bearer sk-acme' http://127.0.0.1:$GW/v1/models >/dev/null 2>&1 && break
  sleep 0.1
done
printf '{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n' >"$W/in.jsonl"
f=$(curl -fs -H "Authorization: Bearer sk-acme" -F purpose=batch -F file=@"$W/in.jsonl" http://127.0.0.1:$GW/v1/files | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
b=$(curl -fs -H "Authorization: Bearer sk-acme" -H 'Content-Type: application/json' http://127.0.0.1:$GW/v1/batches \
  -d "{\"input_file_id\":\"$f\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
posts() { # PATH [SINCE] -> POSTs of the batch's event
  python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) for e in [json.loads(l)] if e["path"]==sys.argv[2] and e["batch"]==sys.argv[3] and e["t"]>=float(sys.argv[4])))' "$W/events.jsonl" "$1" "$b" "${2:-0}"
}
# Both first rounds: wait until each endpoint was refused once, then for
# the rounds to end (their attempts are seconds apart within the round).
for _ in $(seq 600); do [ "$(posts /gone)" -ge 1 ] && [ "$(posts /kept)" -ge 1 ] && break; sleep 0.1; done
for _ in $(seq 900); do [ "$(grep -c '"last_of_round":true' "$W/gateway.log")" -ge 2 ] && break; sleep 0.1; done
echo "== first rounds: /gone $(posts /gone), /kept $(posts /kept) refused"
write "[\"$R/kept\"]"
kill -HUP $GWPID
for _ in $(seq 100); do grep -q "config reload" "$W/gateway.log" && break; sleep 0.1; done
since=$(python3 -c 'import time; print(time.time())')
echo up >"$W/mode"
start=$(date +%s)
for _ in $(seq 2400); do [ "$(posts /kept "$since")" -ge 1 ] && break; sleep 0.1; done
sleep 25 # two more sweeps: a retry of /gone would come with /kept's or soon after
echo "== after the reload ($(( $(date +%s) - start )) s): /gone $(posts /gone "$since") POSTs, /kept $(posts /kept "$since")"
echo "== gateway log"
grep -E 'config reload|batch event|endpoint list' "$W/gateway.log" | sed "s|$W/||g" | cut -c1-300 | sed 's/^/  /'
echo "(work dir $W)"
