package admission

import "math"

// bytesPerToken is the prompt-size heuristic: GPT-style BPE vocabularies
// average about four bytes of English text per token. The request body also
// holds JSON syntax and role names, so bytes/4 over-estimates the prompt a
// little, which errs toward caution when the estimate decides admission.
const bytesPerToken = 4

// MaxCost bounds EstimateCost. Real requests stay far below it (the
// gateway caps max_tokens at 2^24 and bodies at max_body_bytes); the bound
// keeps every sum of costs, the fair queue's tags and the int64 token
// reservations of the rate limiter exact whatever the inputs.
const MaxCost = 1 << 32

// EstimateCost is a request's cost in estimated tokens, the unit the queue is
// fair in: prompt tokens estimated as ceil(promptBytes/4), plus maxTokens, or
// defaultMaxTokens when the request sets none (maxTokens <= 0). The result is
// at least 1 and at most MaxCost: it saturates, it never overflows.
func EstimateCost(promptBytes, maxTokens, defaultMaxTokens int) float64 {
	prompt := 0.0
	if promptBytes > 0 {
		prompt = math.Ceil(float64(promptBytes) / bytesPerToken)
	}
	out := maxTokens
	if out <= 0 {
		out = defaultMaxTokens
	}
	out = max(out, 0)
	return min(max(1, prompt+float64(out)), MaxCost)
}

// KVAnswerClip is the most of a request's answer its KV need counts
// (EstimateKVNeed), per choice. No engine holds a whole max_tokens for a
// request it starts: vLLM allocates the answer's blocks as it writes them,
// SGLang counts max_new_tokens clipped at 4,096
// (CLIP_MAX_NEW_TOKENS_ESTIMATION) times a ratio below one. Counted whole,
// a client that sends max_tokens of the model's context (32k, 128k) had
// no room in an idle cache and its tenant's ramp was held at what it had
// in flight (docs/RELIABILITY.md, branch review22).
const KVAnswerClip = 4096

// EstimateKVNeed is the tokens a request takes of an engine's KV cache to
// start and run, for the tenant ramp's reported room (Request.KVNeed): its
// prompt (bytes/4) plus, for each of choices, its answer's bound clipped
// at KVAnswerClip (maxTokens, or defaultMaxTokens when it sets none).
func EstimateKVNeed(promptBytes, maxTokens, defaultMaxTokens, choices int) float64 {
	choices = max(choices, 1)
	clip := func(n int) int { return choices * min(max(n, 0), KVAnswerClip) }
	return EstimateCost(promptBytes, clip(maxTokens), clip(defaultMaxTokens))
}
