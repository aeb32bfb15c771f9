#!/usr/bin/env bash
# Drives a Sluice with an API key of tenant acme and bearer JWTs (auth.jwt,
# HMAC) with the official OpenAI Node SDK, unmodified: the key uploads 3
# files and makes a batch; a token whose claim is sub=acme lists, reads,
# downloads, deletes and cancels them. Tokens are a namespace of their own
# (jwt:acme): every call raises the SDK's NotFoundError and the key keeps
# its 3 files (before 2026-12-06: 3 of 3 listed, 10 of 11 calls served,
# the key left with 0 files).
# Needs node + npm (the SDK is installed into a temp dir from npm).
# Usage: scripts/sdk-check/tenants.sh   (starts a simulator and a gateway itself)
set -euo pipefail
export SLUICE_JWT_SECRET=sdk-check-secret-0123456789abcdef0123
echo "building (first time: a few minutes)"
source "$(dirname "$0")/common.sh"
cat > "$WORK/sluice.yaml" <<YAML
listen: 127.0.0.1:19230
admin: {listen: 127.0.0.1:19232}
log: {level: warn}
queue: {data_dir: $WORK/data}
auth:
  keys: [{key: sk-acme, tenant: acme}]
  jwt:
    hmac_secret: \${SLUICE_JWT_SECRET}
    algorithms: [HS256]
    issuer: sdk-check
    audience: sluice
models:
  - name: m
    backends: [{url: "http://127.0.0.1:19231"}]
YAML
"$WORK/sluice" sim --listen 127.0.0.1:19231 --model m --instant >/dev/null 2>&1 &
"$WORK/sluice" serve --config "$WORK/sluice.yaml" &
node_sdk tenants.mjs 127.0.0.1:19230
node "$WORK/tenants.mjs"
