package admission

// bytesPerToken is the prompt-size heuristic: GPT-style BPE vocabularies
// average about four bytes of English text per token. The request body also
// holds JSON syntax and role names, so bytes/4 over-estimates the prompt a
// little, which errs toward caution when the estimate decides admission.
const bytesPerToken = 4

// EstimateCost is a request's cost in estimated tokens, the unit the queue is
// fair in: prompt tokens estimated as ceil(promptBytes/4), plus maxTokens, or
// defaultMaxTokens when the request sets none (maxTokens <= 0). The result is
// at least 1, so every request costs something.
func EstimateCost(promptBytes, maxTokens, defaultMaxTokens int) float64 {
	prompt := 0
	if promptBytes > 0 {
		prompt = (promptBytes + bytesPerToken - 1) / bytesPerToken
	}
	out := maxTokens
	if out <= 0 {
		out = defaultMaxTokens
	}
	if out < 0 {
		out = 0
	}
	return max(1, float64(prompt)+float64(out))
}
