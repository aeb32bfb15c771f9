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
