#!/usr/bin/env bash
# Queue progress (X-Sluice-Progress) through the official OpenAI Node SDK:
# one slot, a slow simulator, a second streamed request that queues and
# gets progress comments before its answer. Needs node + npm.
# Usage: scripts/sdk-check/progress.sh   (starts a simulator and a gateway itself)
set -euo pipefail
source "$(dirname "$0")/common.sh"
cat >"$WORK/sluice.yaml" <<YAML
listen: 127.0.0.1:19210
admin: {listen: "off"}
models:
  - name: m
    max_wait: 30s
    backends: [{url: "http://127.0.0.1:19211", max_concurrency: 1}]
YAML
"$WORK/sluice" sim --listen 127.0.0.1:19211 --model m --step 150ms >/dev/null 2>&1 &
"$WORK/sluice" serve --config "$WORK/sluice.yaml" --data-dir "$WORK/data" --log-level warn &
node_sdk progress.mjs 127.0.0.1:19210
node "$WORK/progress.mjs"
