#!/usr/bin/env bash
# Queue progress (X-Sluice-Progress) through the official OpenAI Node SDK:
# one slot, a slow simulator, a second streamed request that queues and
# gets progress comments before its answer. Needs node + npm.
# Usage: scripts/sdk-check/progress.sh   (starts a simulator and a gateway itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
go build -o "$WORK/sluice" ./cmd/sluice
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
(cd "$WORK" && npm init -y >/dev/null && npm install --silent openai@latest >/dev/null)
cp scripts/sdk-check/progress.mjs "$WORK/"
for _ in $(seq 50); do curl -sf http://127.0.0.1:19210/readyz >/dev/null && break; sleep 0.1; done
echo "openai SDK $(node -p "require('$WORK/node_modules/openai/package.json').version")"
node "$WORK/progress.mjs"
