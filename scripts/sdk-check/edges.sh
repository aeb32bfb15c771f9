#!/usr/bin/env bash
# The official OpenAI Node SDK, unmodified, at the gateway's edges
# (edges.mjs): each refusal (401, 404, 400s naming their field, 413, the
# token limit's 400, 503 no healthy backend with Retry-After and
# retry-after-ms agreeing, a 429 whose sub-second retry-after-ms the SDK
# waits and is then served) with the requests the SDK sends; X-Request-Id
# in its errors; chat, completions and Responses streams cut mid-way (the
# in-band error event raised as an APIError naming the request id); a
# stream aborted by the client (the backend's sequence freed, the token
# limit charged only what was relayed); embeddings as the SDK asks for
# them (base64); models; Files and Batches auto-paged. Needs node + npm.
# The gateway logs at error level: the refusals here are on purpose.
# Usage: scripts/sdk-check/edges.sh   (starts three simulators and a gateway itself)
set -euo pipefail
source "$(dirname "$0")/common.sh"
cat >"$WORK/sluice.yaml" <<YAML
listen: 127.0.0.1:19220
admin: {listen: "off"}
max_body_bytes: 64KiB
auth:
  keys: [{key: sk-a}, {key: sk-rl}, {key: sk-tok}, {key: sk-b}]
rate_limits:
  keys:
    sk-rl: {requests: "rate=3r/s"}
    sk-tok: {tokens_per_minute: 600}
models:
  - name: m
    backends: [{url: "http://127.0.0.1:19221"}]
  - name: cut
    backends: [{url: "http://127.0.0.1:19222"}]
  - name: slow
    backends: [{url: "http://127.0.0.1:19223"}]
  - name: dead
    backends: [{url: "http://127.0.0.1:19224"}]   # nothing listens there
YAML
"$WORK/sluice" sim --listen 127.0.0.1:19221 --model m >/dev/null 2>&1 &
"$WORK/sluice" sim --listen 127.0.0.1:19222 --model cut --disconnect-rate 1 >/dev/null 2>&1 &
"$WORK/sluice" sim --listen 127.0.0.1:19223 --model slow --step 200ms >/dev/null 2>&1 &
"$WORK/sluice" serve --config "$WORK/sluice.yaml" --data-dir "$WORK/data" --log-level error &
node_sdk edges.mjs 127.0.0.1:19220
node "$WORK/edges.mjs" 127.0.0.1:19220 127.0.0.1:19223
