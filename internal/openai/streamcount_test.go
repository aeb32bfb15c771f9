package openai

import "testing"

func TestCountTextEvents(t *testing.T) {
	cases := []struct {
		name, in string
		want     int
	}{
		{"openai role chunk, tokens, finish, usage null", `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}

data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}

data: {"id":"c","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":null}]}

data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]

`, 2},
		{"role and first token together (simulator)", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"a\"}}]}\n\n", 1},
		{"spaces after colons (Python json.dumps)", "data: {\"choices\": [{\"delta\": {\"content\": \"a\"}}]}\n\n", 1},
		{"completions text, empty final", "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n", 1},
		{"tool-call arguments", "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\"}}]}}]}\n\n", 1},
		{"reasoning, content null", "data: {\"choices\":[{\"delta\":{\"content\":null,\"reasoning_content\":\"hm\"}}]}\n\n", 1},
		{"an escaped quote first", "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"\"}}]}\n\n", 1},
		{"comments and keep-alives", ": ping\n\nevent: x\ndata: {\"choices\":[]}\n\n", 0},
		{"CRLF lines", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n", 1},
	}
	for _, tc := range cases {
		if got := CountTextEvents([]byte(tc.in)); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// BenchmarkCountTextEvents is the per-event cost of counting a stream
// whose client asked for no usage: one simulator-shaped token event.
func BenchmarkCountTextEvents(b *testing.B) {
	ev := []byte(`data: {"id":"chatcmpl-sim1-1","object":"chat.completion.chunk","created":1796501284,"model":"sim-model","choices":[{"index":0,"delta":{"content":"steady "},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(ev)))
	for b.Loop() {
		if CountTextEvents(ev) != 1 {
			b.Fatal("miscounted")
		}
	}
}
