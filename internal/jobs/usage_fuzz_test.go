package jobs

import (
	"encoding/json"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
)

// FuzzResultUsage: whatever a backend answered a batch line (any JSON,
// any counts), the usage it adds to the batch is whole and bounded: no
// count negative, none past what a line can hold, a total whenever there
// are counts; so the sum over a batch of maxBatchRequests lines cannot
// overflow. A body that is not JSON adds nothing.
func FuzzResultUsage(f *testing.F) {
	f.Add([]byte(`{"id":"x","usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":4}}}`))
	f.Add([]byte(`{"usage":{"input_tokens":5,"output_tokens":7,"output_tokens_details":{"reasoning_tokens":3}}}`))
	f.Add([]byte(`{"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":-1}}`))
	f.Add([]byte(`{"usage":{"prompt_tokens":1e3,"total_tokens":"5"}}`))
	f.Add([]byte(`{"usage":null,"usage":{"prompt_tokens":1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		u := resultUsage(&Result{StatusCode: 200, Body: body})
		if !json.Valid(body) && u != (BatchUsage{}) {
			t.Fatalf("usage %+v from a body that is not JSON", u)
		}
		const line = 2 * openai.MaxTokensLimit // input is prompt + input tokens, each bounded
		for _, n := range []int64{u.InputTokens, u.OutputTokens, u.InputTokensDetails.CachedTokens, u.OutputTokensDetails.ReasoningTokens} {
			if n < 0 || n > line {
				t.Fatalf("usage %+v out of [0, %d]", u, line)
			}
		}
		if u.TotalTokens < 0 || u.TotalTokens > 2*line {
			t.Fatalf("usage %+v: total out of bounds", u)
		}
		if u != (BatchUsage{}) && u.TotalTokens == 0 && u.InputTokens+u.OutputTokens != 0 {
			t.Fatalf("usage %+v: no total although it has counts", u)
		}
		var sum BatchUsage
		sum.add(u)
		for range 19 { // doubling 19 times: 2^20 > maxBatchRequests lines of this usage
			sum.add(sum)
		}
		if sum.InputTokens < 0 || sum.OutputTokens < 0 || sum.TotalTokens < 0 || sum.InputTokensDetails.CachedTokens < 0 || sum.OutputTokensDetails.ReasoningTokens < 0 {
			t.Fatalf("a batch of lines of %+v overflows: %+v", u, sum)
		}
	})
}
