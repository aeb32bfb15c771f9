package openai

import (
	"strings"
	"testing"
)

func TestFindEndpointUsage(t *testing.T) {
	results := `"results":[{"index":0,"document":{"text":"a \"usage\": {\"total_tokens\": 9}"},"relevance_score":0.5}]`
	for _, c := range []struct {
		name, body string
		ok         bool
		in, out    int
	}{
		{"vLLM <= 0.10 rerank: total only", `{"id":"r","model":"m","usage":{"total_tokens":37},` + results + `}`, true, 37, 0},
		{"vLLM rerank: prompt and total", `{"id":"r","model":"m","usage":{"prompt_tokens":41,"total_tokens":41},` + results + `}`, true, 41, 0},
		{"vLLM UsageInfo", `{"data":[],"usage":{"prompt_tokens":21,"total_tokens":21,"completion_tokens":0,"prompt_tokens_details":null}}`, true, 21, 0},
		{"UsageInfo, completion null", `{"usage":{"prompt_tokens":3,"total_tokens":3,"completion_tokens":null}}`, true, 3, 0},
		{"OpenAI audio tokens, details before output", `{"text":"x","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":2,"audio_tokens":12},"output_tokens":45,"total_tokens":59}}`, true, 14, 45},
		{"spaces", "{\"usage\" :{ \"total_tokens\" : 8 }}", false, 0, 0}, // a space before the colon: not the key FindUsage reads either
		{"spaces inside", "{\"usage\":\n { \"prompt_tokens\" : 8 , \"total_tokens\" : 8 }\n}", true, 8, 0},
		{"zero reported", `{"usage":{"prompt_tokens":0,"total_tokens":0}}`, true, 0, 0},
		{"duration", `{"text":"x","usage":{"type":"duration","seconds":9}}`, false, 0, 0},
		{"duration, tokens too", `{"usage":{"type":"duration","seconds":9,"total_tokens":4}}`, false, 0, 0},
		{"none", `{"id":"modr","results":[{"flagged":false}]}`, false, 0, 0},
		{"null", `{"usage":null}`, false, 0, 0},
		{"empty", `{"usage":{}}`, false, 0, 0},
		{"a fraction", `{"usage":{"total_tokens":1.5}}`, false, 0, 0},
		{"cut off", `{"usage":{"total_tokens":37`, false, 0, 0},
		{"cut off after a count", `{"usage":{"prompt_tokens":4,"total_tokens":4`, false, 0, 0},
		{"cut off in details", `{"usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":2`, false, 0, 0},
		{"an event stream's last usage", "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: {\"type\":\"transcript.text.done\",\"text\":\"x\",\"usage\":{\"type\":\"tokens\",\"input_tokens\":7,\"output_tokens\":3,\"total_tokens\":10}}\n\ndata: [DONE]\n\n", true, 7, 3},
	} {
		u, ok := FindEndpointUsage([]byte(c.body))
		if ok != c.ok || u.PromptTokens != c.in || u.CompletionTokens != c.out {
			t.Errorf("%s: %+v %v, want %d %d %v", c.name, u, ok, c.in, c.out, c.ok)
		}
	}
}

func FuzzFindEndpointUsage(f *testing.F) {
	f.Add([]byte(`{"usage":{"total_tokens":37},"results":[]}`))
	f.Add([]byte(`{"usage":{"type":"tokens","input_tokens":14,"input_token_details":{"audio_tokens":12},"output_tokens":45}}`))
	f.Add([]byte(`{"usage":{"type":"duration","seconds":9}}`))
	f.Add([]byte(`"usage": {"a":"\"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, ok := FindEndpointUsage(b) // must not panic on any input
		if !ok && u != (Usage{}) {
			t.Fatalf("unknown usage with counts %+v", u)
		}
		if u.PromptTokens < 0 || u.CompletionTokens < 0 {
			t.Fatalf("negative counts %+v", u)
		}
	})
}

// The endpoints' parser reads a whole answer: a rerank's usage comes
// before its results. (FindUsage, the chat family's, is not on this path.)
func BenchmarkFindEndpointUsage(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"id":"rerank-1","model":"m","usage":{"prompt_tokens":523,"total_tokens":523},"results":[`)
	for i := 0; i < 60; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"index":1,"document":{"text":"a document a document a document"},"relevance_score":0.5}`)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		if _, ok := FindEndpointUsage(body); !ok {
			b.Fatal("no usage")
		}
	}
}

// FindUsage on a chat completion's end, for comparison: the chat family's
// path, which FindEndpointUsage stays off.
func BenchmarkFindUsageChatTail(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("a sluice gate ", 40) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":160,"total_tokens":172}}`)
	for _, c := range []struct {
		name string
		find func([]byte) (Usage, bool)
	}{{"FindUsage", FindUsage}, {"FindEndpointUsage", FindEndpointUsage}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, ok := c.find(body); !ok {
					b.Fatal("no usage")
				}
			}
		})
	}
}
