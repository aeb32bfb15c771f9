package gateway

import (
	"fmt"
	"testing"
)

// A usage no answer can hold (2^63 tokens, a negative count, 1e300) is
// unknown, so the request keeps its estimate. Believed, the parse read
// 9.2e12 of each count and owed it to every token limit the request was
// charged to: the next request (any key's, for the gateway's own limit)
// was refused with a Retry-After of days.
func TestAbsurdUsageIsNotCharged(t *testing.T) {
	const chunk = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
	for name, usage := range map[string]string{
		"2^63":      `{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775807,"total_tokens":9223372036854775807}`,
		"over 2^24": `{"prompt_tokens":5,"completion_tokens":16777217,"total_tokens":16777222}`,
		"negative":  `{"prompt_tokens":-1000000,"completion_tokens":5,"total_tokens":-999995}`,
		"exponent":  `{"prompt_tokens":5,"completion_tokens":1e300,"total_tokens":1e300}`,
	} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s stream %v", name, stream), func(t *testing.T) {
				ct, answer := "application/json", `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":`+usage+`}`
				body := `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
				if stream {
					ct, answer = "text/event-stream", chunk+`data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":`+usage+"}\n\ndata: [DONE]\n\n"
					body = `{"model":"m1","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
				}
				be, _ := rawBackend(t, ct, answer)
				const limit = 100000
				url := tokenGateway(t, testConfig(be.URL), limit)
				status, before, _ := remaining(t, url, body)
				if status != 200 {
					t.Fatalf("status %d", status)
				}
				probe := `{"model":"m1","messages":[{"role":"user","content":"x"}],"max_tokens":1}`
				status, after, b := remaining(t, url, probe)
				if status != 200 || before-after > 1000 {
					t.Fatalf("after the answer: status %d, %d tokens left of %d before (%.200s); want the estimate charged", status, after, before, b)
				}
			})
		}
	}
}
