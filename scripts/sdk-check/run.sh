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
source "$(dirname "$0")/common.sh"
"$WORK/sluice" sim --listen 127.0.0.1:19201 --model m >/dev/null 2>&1 &
"$WORK/sluice" sim --listen 127.0.0.1:19202 --model m >/dev/null 2>&1 &
"$WORK/sluice" serve --listen 127.0.0.1:19200 --model m --backend http://127.0.0.1:19201 --backend http://127.0.0.1:19202 \
  --data-dir "$WORK/data" --log-level warn &
node_sdk check.mjs 127.0.0.1:19200
node "$WORK/check.mjs"
