package openai

import "testing"

func TestCountText(t *testing.T) {
	cases := []struct {
		name, in    string
		want, bytes int
	}{
		{"openai role chunk, tokens, finish, usage null", `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}

data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}

data: {"id":"c","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":null}]}

data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]

`, 2, 11},
		{"role and first token together (simulator)", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"a\"}}]}\n\n", 1, 1},
		{"spaces after colons (Python json.dumps)", "data: {\"choices\": [{\"delta\": {\"content\": \"a\"}}]}\n\n", 1, 1},
		{"completions text, empty final", "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n", 1, 1},
		{"tool-call arguments", "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\"}}]}}]}\n\n", 1, 4},
		{"reasoning, content null", "data: {\"choices\":[{\"delta\":{\"content\":null,\"reasoning_content\":\"hm\"}}]}\n\n", 1, 2},
		{"an escaped quote first", "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"\"}}]}\n\n", 1, 2},
		{"a backslash last", "data: {\"choices\":[{\"delta\":{\"content\":\"a\\\\\"}}]}\n\n", 1, 3},
		{"several tokens an event (vLLM --stream-interval 4)", "data: {\"choices\":[{\"delta\":{\"content\":\" the quick brown fox\"}}]}\n\n", 1, 20},
		{"comments and keep-alives", ": ping\n\nevent: x\ndata: {\"choices\":[]}\n\n", 0, 0},
		{"CRLF lines", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n", 1, 1},
	}
	for _, tc := range cases {
		if got, bytes := CountText([]byte(tc.in)); got != tc.want || bytes != tc.bytes {
			t.Errorf("%s: %d events, %d bytes; want %d, %d", tc.name, got, bytes, tc.want, tc.bytes)
		}
	}
}

// BenchmarkCountText is the per-event cost of counting a stream
// whose client asked for no usage: one simulator-shaped token event.
func BenchmarkCountText(b *testing.B) {
	ev := []byte(`data: {"id":"chatcmpl-sim1-1","object":"chat.completion.chunk","created":1796501284,"model":"sim-model","choices":[{"index":0,"delta":{"content":"steady "},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(ev)))
	for b.Loop() {
		if n, _ := CountText(ev); n != 1 {
			b.Fatal("miscounted")
		}
	}
}

func TestCompletionTokens(t *testing.T) {
	for _, tc := range []struct {
		events, bytes int
		want          int64
	}{{16, 40, 16}, {16, 90, 23}, {2, 80, 20}, {0, 0, 0}} {
		if got := CompletionTokens(tc.events, tc.bytes); got != tc.want {
			t.Errorf("%d events, %d bytes: %d tokens, want %d", tc.events, tc.bytes, got, tc.want)
		}
	}
}

func TestTextWithin(t *testing.T) {
	ev := func(c string) string { return "data: {\"choices\":[{\"delta\":{\"content\":\"" + c + "\"}}]}\n\n" }
	p := ev("ab") + ": ping\n\n" + ev("cd") + ev("this is long text") + ev("x")
	for _, tc := range []struct {
		events, bytes int
		limit         int64
		want          int
	}{
		{0, 0, 100, len(p)}, // all within
		{0, 0, 2, len(ev("ab") + ": ping\n\n" + ev("cd"))}, // two events, the third passes
		{0, 0, 0, 0},                             // nothing granted
		{9, 0, 10, len(ev("ab") + ": ping\n\n")}, // 9 counted before: one more fits, and the comment after it
	} {
		if got := TextWithin([]byte(p), tc.events, tc.bytes, tc.limit); got != tc.want {
			t.Errorf("after %d events, limit %d: %d bytes, want %d", tc.events, tc.limit, got, tc.want)
		}
	}
}
