package jobs

import (
	"encoding/json"

	"github.com/sluice-gw/sluice/internal/openai"
)

// answerUsage is the usage object of an answer in either of the shapes
// the batch endpoints return: chat, completions and embeddings name it
// prompt/completion tokens, the Responses API input/output tokens.
type answerUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	InputTokens         int64 `json:"input_tokens"`
	OutputTokens        int64 `json:"output_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
	OutputTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

// resultUsage is the usage an answer reports, in the batch's terms; zero
// for an answer without one (an error, a body that is not JSON). A body
// that reports no total gets input + output.
func resultUsage(res *Result) BatchUsage {
	if res == nil || len(res.Body) == 0 {
		return BatchUsage{}
	}
	var a struct {
		Usage *answerUsage `json:"usage"`
	}
	if json.Unmarshal(res.Body, &a) != nil || a.Usage == nil {
		return BatchUsage{}
	}
	u := a.Usage
	if !u.plausible() {
		return BatchUsage{}
	}
	b := BatchUsage{
		InputTokens:  u.PromptTokens + u.InputTokens,
		OutputTokens: u.CompletionTokens + u.OutputTokens,
		TotalTokens:  u.TotalTokens,
	}
	b.InputTokensDetails.CachedTokens = u.PromptTokensDetails.CachedTokens + u.InputTokensDetails.CachedTokens
	b.OutputTokensDetails.ReasoningTokens = u.CompletionTokensDetails.ReasoningTokens + u.OutputTokensDetails.ReasoningTokens
	if b.TotalTokens == 0 {
		b.TotalTokens = b.InputTokens + b.OutputTokens
	}
	return b
}

// plausible reports whether every count is one an answer can hold: none
// negative, none over openai.MaxTokensLimit (the total: twice it), as the
// gateway's own usage readers take them (openai.FindUsage). One answer
// claiming 2^63 tokens was summed as it came: two such lines wrapped the
// batch's totals negative, and a negative count took tokens off the
// others'. Bounded, the sum of a batch's lines cannot overflow.
func (u *answerUsage) plausible() bool {
	for _, n := range []int64{u.PromptTokens, u.CompletionTokens, u.InputTokens, u.OutputTokens,
		u.PromptTokensDetails.CachedTokens, u.InputTokensDetails.CachedTokens,
		u.CompletionTokensDetails.ReasoningTokens, u.OutputTokensDetails.ReasoningTokens} {
		if n < 0 || n > openai.MaxTokensLimit {
			return false
		}
	}
	return u.TotalTokens >= 0 && u.TotalTokens <= 2*openai.MaxTokensLimit
}

// add sums o into u.
func (u *BatchUsage) add(o BatchUsage) {
	u.InputTokens += o.InputTokens
	u.InputTokensDetails.CachedTokens += o.InputTokensDetails.CachedTokens
	u.OutputTokens += o.OutputTokens
	u.OutputTokensDetails.ReasoningTokens += o.OutputTokensDetails.ReasoningTokens
	u.TotalTokens += o.TotalTokens
}
