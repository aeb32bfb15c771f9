#!/usr/bin/env bash
# Drives a running Sluice with the official OpenAI Node SDK, unmodified, and
# counts the requests it sends for answers that carry x-should-retry: false
# (a rate limit refilling in 10 minutes, a 409 from the Batch API) and for
# one that does not (a limit refilling in 2 s). Needs node + npm.
# Usage: scripts/sdk-check/shouldretry.sh   (starts a simulator and a gateway itself)
set -euo pipefail
source "$(dirname "$0")/common.sh"
cat >"$WORK/sluice.yaml" <<YAML
listen: 127.0.0.1:19210
admin: {listen: "off"}
auth:
  keys: [{key: sk-slow}, {key: sk-fast}, {key: sk-batch}]
rate_limits:
  per_key: {requests: "rate=30r/m"}
  keys:
    sk-slow: {requests: "rate=0.1r/m"}
    sk-batch: {requests: "off"}
models:
  - name: m
    backends:
      - url: http://127.0.0.1:19211
YAML
"$WORK/sluice" sim --listen 127.0.0.1:19211 --model m >/dev/null 2>&1 &
"$WORK/sluice" serve --config "$WORK/sluice.yaml" --data-dir "$WORK/data" --log-level warn &
node_sdk shouldretry.mjs 127.0.0.1:19210
node "$WORK/shouldretry.mjs"
