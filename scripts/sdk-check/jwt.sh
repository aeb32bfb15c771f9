#!/usr/bin/env bash
# Drives a Sluice that verifies bearer JWTs (auth.jwt with an HMAC secret)
# with the official OpenAI Node SDK, unmodified, the token passed as its
# apiKey: a valid token is served (plain and streamed); an expired one, a
# wrong audience, alg none and a tampered one each raise the SDK's
# AuthenticationError (401) with the same message; an API key still works.
# Needs node + npm (the SDK is installed into a temp dir from npm).
# Usage: scripts/sdk-check/jwt.sh   (starts a simulator and a gateway itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
export SLUICE_JWT_SECRET=sdk-check-secret-0123456789abcdef0123
echo "building (first time: a few minutes)"
go build -o "$WORK/sluice" ./cmd/sluice
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
(cd "$WORK" && npm init -y >/dev/null && npm install --silent openai@latest >/dev/null)
cp scripts/sdk-check/jwt.mjs "$WORK/"
for _ in $(seq 50); do curl -sf http://127.0.0.1:19210/readyz >/dev/null && break; sleep 0.1; done
echo "openai SDK $(node -p "require('$WORK/node_modules/openai/package.json').version")"
node "$WORK/jwt.mjs"
curl -s http://127.0.0.1:19212/metrics | grep '^sluice_auth_failures_total'
