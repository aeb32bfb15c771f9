// Package sim is a simulated OpenAI-compatible inference server that models a
// continuous-batching engine such as vLLM. It is the `sluice sim` command and
// the backend every gateway test and benchmark runs against, so it is exact
// where clients can observe it and cheap everywhere else.
//
// # Endpoints
//
//	POST /v1/chat/completions, POST /v1/completions   through the engine (or Instant)
//	POST /v1/responses                                 through the engine (or Instant); see below
//	GET|DELETE /v1/responses/{id}                      a stored response; delete it
//	GET  /v1/responses/{id}/input_items                its input items, OpenAI's cursor paging
//	POST /v1/responses/{id}/cancel                     400: only background responses cancel
//	POST /v1/embeddings                                at once, deterministic unit vectors
//	GET  /v1/models, GET /health                       the served model; "ok"
//	GET  /metrics                                      Prometheus text, vLLM names
//	GET|POST /sim/faults                               read or replace the fault knobs at run time
//
// # Token model
//
// Prompt tokens are the whitespace-separated words of all message contents
// (string contents and the text of "text" parts) or of the prompt (a string,
// strings, or token ids, one token each). Output tokens are exactly
// max_completion_tokens, else max_tokens, else Config.DefaultMaxTokens — as if
// ignore_eos were set — and finish_reason is always "length". Each output
// token is one word of a fixed vocabulary followed by a space, drawn from a
// PRNG seeded with Seed ^ hash(prompt words), so the same prompt on a server
// with the same seed always gets the same text.
//
// # Engine
//
// One goroutine owns the scheduler state. A step admits waiting requests in
// FIFO order while a batch slot is free and the KV budget can hold the
// request's prompt plus its full output (reserved up front, so nothing is
// ever preempted). Newly admitted requests are prefilled in that step: their
// prompt tokens not found in the prefix cache cost 1/PrefillTokensPerSec
// each, and the whole batch waits for them. The step then decodes: it lasts
// DecodeStepBase + DecodeStepPerSeq × running and gives every running sequence
// one token. Finished sequences free their slot and KV at the end of the
// step. The prefix cache is an LRU of chained hashes of BlockSize-word prompt
// blocks; a prompt whose first k blocks are cached skips k×BlockSize tokens of
// prefill (always leaving at least one token to compute). When MaxWaiting
// requests are already waiting, a new one is answered 503 "server busy" at
// once, with no Retry-After. A client that goes away leaves the queue or the
// batch immediately and is counted in Stats.Cancelled.
//
// # Capacity
//
// For identical requests of p prompt and o output tokens, no cache hits:
//
//	B     = min(Slots, floor(KVTokens / (p + o)))
//	step  = DecodeStepBase + B × DecodeStepPerSeq
//	cycle = o × step + B × p / PrefillTokensPerSec
//	req/s = B / cycle,   output tokens/s = req/s × o
//
// With the defaults and p=512, o=128: B = 16, step = 14 ms,
// cycle = 1.792 s + 0.4096 s = 2.2016 s, so 7.27 req/s and 930 tokens/s.
// See Config.Capacity and docs/SIMULATOR.md.
//
// # Faults
//
// Each request draws its faults on arrival from Seed and its arrival number:
// ErrorRate answers 500, AddedLatency delays the request before it queues,
// HangRate holds the request until the client gives up, DisconnectRate cuts
// the connection after about half the output tokens (streams: no [DONE];
// non-streaming: no response at all).
//
// # Responses API
//
// POST /v1/responses counts tokens as chat does: instructions first, then
// the input (a string, or message items whose string content or
// input_text/output_text parts count; other items are accepted and not
// counted), so the same words give the same text as chat. Output tokens are
// max_output_tokens, else Config.DefaultMaxTokens. A response that used all
// of max_output_tokens is "incomplete" with incomplete_details
// {"reason":"max_output_tokens"} (its message item too), which is what vLLM
// and OpenAI report for a length stop; without max_output_tokens the answer
// counts as ending on its own and is "completed". Streams send OpenAI's event
// sequence (created, in_progress, output_item.added, content_part.added, one
// output_text.delta per token, the three .done events, then
// response.completed or response.incomplete, as OpenAI names it; vLLM sends
// response.completed either way), "event: T\ndata: JSON\n\n" each, with a
// sequence_number from 0 and no [DONE]. background:true is refused (400).
//
// With store (the default) the finished response is kept, before the client
// sees it, for GET, input_items and previous_response_id: at most 1024
// responses and 128 MiB, oldest evicted first. A follow-up's prompt is its
// instructions, then the stored chain's input and output words (earlier
// instructions do not carry over), then its input, so it hits the prefix
// cache like a real engine. An unknown or evicted previous_response_id is
// OpenAI's 400 previous_response_not_found; an unknown id on the other routes
// is its 404 with param and code null.
//
// # Instant mode
//
// Config.Instant skips the engine: every completion is a fixed four-token
// answer from precomputed bytes, for measuring the gateway's own overhead.
// A Responses answer is the same four tokens, "completed", its JSON built
// per request.
package sim
