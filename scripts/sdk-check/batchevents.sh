#!/usr/bin/env bash
# OpenAI webhook events for batches (queue.batch_webhooks) through the
# official OpenAI Node SDK: a batch created with the SDK ends and its
# client.webhooks.unwrap verifies the event Sluice sends. Needs node + npm.
# Usage: scripts/sdk-check/batchevents.sh   (starts a simulator and a gateway itself, on free ports)
set -euo pipefail
source "$(dirname "$0")/common.sh"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW=$(free_port) SIM=$(free_port) HOOK=$(free_port)
SECRET="whsec_$(head -c 24 /dev/urandom | base64)"
cat >"$WORK/sluice.yaml" <<YAML
listen: 127.0.0.1:$GW
admin: {listen: "off"}
models:
  - name: m
    backends: [{url: "http://127.0.0.1:$SIM"}]
queue:
  webhook_secret: "$SECRET"
  allow_private_webhooks: true   # the receiver is on loopback
  batch_webhooks: ["http://127.0.0.1:$HOOK/openai-events"]
YAML
"$WORK/sluice" sim --listen 127.0.0.1:$SIM --model m >/dev/null 2>&1 &
"$WORK/sluice" serve --config "$WORK/sluice.yaml" --data-dir "$WORK/data" --log-level warn &
node_sdk batchevents.mjs 127.0.0.1:$GW
node "$WORK/batchevents.mjs" 127.0.0.1:$GW "$HOOK" "$SECRET"
