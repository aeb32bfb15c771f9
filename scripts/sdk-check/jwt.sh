#!/usr/bin/env bash
# Drives a Sluice that verifies bearer JWTs (auth.jwt with an HMAC secret)
# with the official OpenAI Node SDK, unmodified, the token passed as its
# apiKey: a valid token is served (plain and streamed); an expired one, a
# wrong audience, alg none and a tampered one each raise the SDK's
# AuthenticationError (401) with the same message; an API key still works.
# Needs node + npm (the SDK is installed into a temp dir from npm).
# Usage: scripts/sdk-check/jwt.sh   (starts a simulator and a gateway itself)
set -euo pipefail
export SLUICE_JWT_SECRET=sdk-check-secret-0123456789abcdef0123
echo "building (first time: a few minutes)"
source "$(dirname "$0")/common.sh"
cat > "$WORK/sluice.yaml" <<YAML
listen: 127.0.0.1:19210
admin: {listen: 127.0.0.1:19212}
log: {level: warn}
queue: {enabled: false}
auth:
  keys: [{key: sk-ops, tenant: ops}]
  jwt:
    hmac_secret: \${SLUICE_JWT_SECRET}
    algorithms: [HS256]
    issuer: sdk-check
    audience: sluice
    claims: {tenant: org}
models:
  - name: m
    backends: [{url: "http://127.0.0.1:19211"}]
YAML
"$WORK/sluice" sim --listen 127.0.0.1:19211 --model m >/dev/null 2>&1 &
"$WORK/sluice" serve --config "$WORK/sluice.yaml" &
node_sdk jwt.mjs 127.0.0.1:19210
node "$WORK/jwt.mjs"
curl -s http://127.0.0.1:19212/metrics | grep '^sluice_auth_failures_total'
