package gateway

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
)

// A usage under openai.MaxTokensLimit was believed whatever the request
// allowed: 16,000,000 completion tokens reported for a request of
// max_tokens 100 were owed to the key's limit (1,000,000 a minute: 16
// minutes of debt, the next request 429) and counted in
// sluice_tokens_total. A completion count past what the request let the
// backend generate (max_tokens, max_completion_tokens or
// max_output_tokens, times its choices) is now charged at that bound, in
// the settle, the metric and the access line alike; the prompt count,
// which the request does not bound, stays the backend's.
func TestCompletionPastTheRequestsBoundIsChargedTheBound(t *testing.T) {
	const (
		reported = 16000000
		chunk    = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
	)
	usage := fmt.Sprintf(`{"prompt_tokens":7,"completion_tokens":%d,"total_tokens":%d}`, reported, reported+7)
	chat := `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":` + usage + `}`
	resp := fmt.Sprintf(`{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":7,"output_tokens":%d,"total_tokens":%d}}`, reported, reported+7)
	cases := []struct {
		name, path, ct, answer, body string
		out                          int // completion tokens charged and counted
	}{
		{"max_tokens", "/v1/chat/completions", "application/json", chat,
			`{"model":"m1","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`, 100},
		{"max_completion_tokens, n 3", "/v1/chat/completions", "application/json", chat,
			`{"model":"m1","max_completion_tokens":100,"n":3,"messages":[{"role":"user","content":"hi"}]}`, 300},
		{"stream", "/v1/chat/completions", "text/event-stream", chunk + `data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":` + usage + "}\n\ndata: [DONE]\n\n",
			`{"model":"m1","max_tokens":100,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, 100},
		{"max_output_tokens", "/v1/responses", "application/json", resp,
			`{"model":"m1","max_output_tokens":100,"store":false,"input":"hi"}`, 100},
		// No bound in the request: the count is believed (under MaxTokensLimit).
		{"unbounded", "/v1/chat/completions", "application/json", chat,
			`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`, reported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be, _ := rawBackend(t, tc.ct, tc.answer)
			cfg := testConfig(be.URL)
			limit := int64(1000000)
			cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &limit}
			srv, reg, logs := usageGateway(t, cfg)
			r := post(t, srv.URL+tc.path, tc.body, "Authorization", "Bearer k")
			if readAll(t, r); r.StatusCode != http.StatusOK {
				t.Fatalf("status %d", r.StatusCode)
			}
			if got, _ := tokensTotal(t, reg, "out"); got != float64(tc.out) {
				t.Errorf("sluice_tokens_total out %v, want %d", got, tc.out)
			}
			if got, _ := tokensTotal(t, reg, "in"); got != 7 {
				t.Errorf("sluice_tokens_total in %v, want the backend's 7", got)
			}
			if in, out := accessTokens(t, logs.String(), tc.path); in != 7 || out != tc.out {
				t.Errorf("access line tokens %d in, %d out; want 7, %d", in, out, tc.out)
			}
			// The probe reserves its own estimate: what is left besides
			// says what the answer was charged.
			const probe = `{"model":"m1","messages":[{"role":"user","content":"x"}],"max_tokens":1}`
			status, left, b := remaining(t, srv.URL+"/v1/chat/completions", probe)
			want := int(limit) - 7 - tc.out - int(admission.EstimateCost(len(probe), 1, 0))
			if tc.out == reported {
				if status != http.StatusTooManyRequests {
					t.Fatalf("after an unbounded answer of %d tokens: status %d, want 429 (owed in full)", reported, status)
				}
				return
			}
			if status != http.StatusOK || left != want {
				t.Fatalf("after the answer: status %d, %d tokens left (%.200s); want 200, %d", status, left, b, want)
			}
		})
	}
}
