#!/usr/bin/env bash
# Drives a running Sluice with the official OpenAI Node SDK, unmodified:
# chat (plain, streamed with usage), a 404 error, Files, Batches (create,
# poll to completion, output content, list, cancel), file delete; the
# Responses API (create, streamed, a previous_response_id follow-up,
# retrieve, input_items, delete) over two simulators, so a follow-up sent
# to the wrong one would fail; moderations (string, array), audio
# transcriptions (an fs stream of a generated WAV; verbose_json via toFile)
# and translations, a streamed transcription (vLLM's chunks through the
# SDK's Stream), the 400s for response_format text (plain) and verbose_json
# (streamed) (BadRequestError naming the param), rerank and tokenize via client.post.
# The endpoint checks assert: node exits non-zero when one fails.
# Needs node + npm (the SDK is installed into a temp dir from npm).
# Usage: scripts/sdk-check/run.sh   (starts a simulator and a gateway itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
go build -o "$WORK/sluice" ./cmd/sluice
"$WORK/sluice" sim --listen 127.0.0.1:19201 --model m >/dev/null 2>&1 &
"$WORK/sluice" sim --listen 127.0.0.1:19202 --model m >/dev/null 2>&1 &
"$WORK/sluice" serve --listen 127.0.0.1:19200 --model m --backend http://127.0.0.1:19201 --backend http://127.0.0.1:19202 \
  --data-dir "$WORK/data" --log-level warn &
(cd "$WORK" && npm init -y >/dev/null && npm install --silent openai@latest >/dev/null)
cp scripts/sdk-check/check.mjs "$WORK/"
for _ in $(seq 50); do curl -sf http://127.0.0.1:19200/readyz >/dev/null && break; sleep 0.1; done
echo "openai SDK $(node -p "require('$WORK/node_modules/openai/package.json').version")"
node "$WORK/check.mjs"
