#!/usr/bin/env bash
# Drives a Sluice with the official OpenAI Go SDK (openai-go/v3, the
# version pinned in go/go.mod), unmodified: chat (plain; streamed with
# usage, accumulated by the SDK's ChatCompletionAccumulator), the response
# cache answering in the other shape (a stream read back as JSON, a JSON
# answer replayed as a stream: equal as the SDK reads them), completions,
# embeddings, models; moderations (string, array); audio transcriptions
# (json, verbose_json) and translations with a generated WAV through the
# SDK's multipart encoder, a streamed transcription (vLLM's chunks through
# the SDK's stream), and the 400s for response_format text (plain) and
# verbose_json (streamed) (*openai.Error naming the param); rerank and
# tokenize via Client.Post;
# the Responses API over two simulators (create,
# stream, previous_response_id, get, input items, delete, 404s); Files and
# Batches (upload, batch to completion, output file parsed); errors as
# *openai.Error (a 400 naming its param, a 404); the requests the SDK sends
# for 429s with Retry-After 600 s (once: x-should-retry: false) and 2 s
# (retried, served), counted through its HTTP client; X-Request-Id; chat
# and Responses streams cut mid-way by a third simulator that drops every
# answer half-way (the chat stream's *ssestream.StreamError naming the
# request id, the Responses stream's ResponseErrorEvent).
# One line per check; exit 0 only if every check passes. Needs Go and the
# Go module proxy only (the SDK is a dependency of go/, its own module).
# Usage: scripts/sdk-check/go.sh   (starts two simulators and a gateway itself)
set -euo pipefail
echo "building sluice and the check (first time: a few minutes)"
source "$(dirname "$0")/common.sh"
(cd scripts/sdk-check/go && go build -o "$WORK/sdkcheck" .)
read -r GW SIM1 SIM2 SIM3 < <("$WORK/sdkcheck" -ports 4)
cat >"$WORK/sluice.yaml" <<YAML
listen: 127.0.0.1:$GW
admin: {listen: "off"}
auth:
  keys: [{key: sk-test}, {key: sk-slow}, {key: sk-fast}]
rate_limits:
  keys:
    sk-slow: {requests: "rate=0.1r/m"}
    sk-fast: {requests: "rate=30r/m"}
models:
  - name: m
    backends:
      - url: http://127.0.0.1:$SIM1
      - url: http://127.0.0.1:$SIM2
  - name: cut
    backends:
      - url: http://127.0.0.1:$SIM3
YAML
"$WORK/sluice" sim --listen "127.0.0.1:$SIM1" --model m >/dev/null 2>&1 &
"$WORK/sluice" sim --listen "127.0.0.1:$SIM2" --model m >/dev/null 2>&1 &
"$WORK/sluice" sim --listen "127.0.0.1:$SIM3" --model cut --disconnect-rate 1 >/dev/null 2>&1 &
"$WORK/sluice" serve --config "$WORK/sluice.yaml" --data-dir "$WORK/data" --log-level warn &
echo "openai-go $(sed -n 's/^require github.com\/openai\/openai-go\/v3 //p' scripts/sdk-check/go/go.mod), gateway 127.0.0.1:$GW, simulators :$SIM1 :$SIM2, cutting :$SIM3"
# The SDK reads OPENAI_* from the environment; the check passes its own.
env -u OPENAI_BASE_URL -u OPENAI_API_KEY -u OPENAI_ORG_ID -u OPENAI_PROJECT_ID \
  "$WORK/sdkcheck" -ready "http://127.0.0.1:$GW/readyz" -base "http://127.0.0.1:$GW/v1" \
  -key sk-test -slow-key sk-slow -fast-key sk-fast -cut-model cut
