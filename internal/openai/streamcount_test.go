package openai

import (
	"strings"
	"testing"
)

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
		if got, bytes := CountText([]byte(tc.in), APIChat); got != tc.want || bytes != tc.bytes {
			t.Errorf("%s: %d events, %d bytes; want %d, %d", tc.name, got, bytes, tc.want, tc.bytes)
		}
	}
}

// A Responses API stream's text is its deltas; the "text" of
// output_text.done, content_part.done and the final response repeats
// them, and a chat chunk's "content" means nothing there.
func TestCountTextResponses(t *testing.T) {
	stream := "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"r\",\"output\":[]}}\n\n" +
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\",\"logprobs\":[]}\n\n" +
		"event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":2,\"item_id\":\"f\",\"output_index\":1,\"delta\":\"{\\\"a\"}\n\n" +
		"event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":3,\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"text\":\"Hello\",\"logprobs\":[]}\n\n" +
		"event: response.content_part.done\ndata: {\"type\":\"response.content_part.done\",\"sequence_number\":4,\"part\":{\"type\":\"output_text\",\"text\":\"Hello\"}}\n\n" +
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":5,\"response\":{\"output\":[{\"content\":[{\"type\":\"output_text\",\"text\":\"Hello\"}]}]}}\n\n"
	if n, b := CountText([]byte(stream), APIResponses); n != 2 || b != 9 {
		t.Errorf("Responses stream: %d events, %d bytes; want 2, 9 (the deltas only)", n, b)
	}
	if n, _ := CountText([]byte(stream), APIChat); n == 2 {
		t.Errorf("read as chat, the Responses stream counted as its deltas: the API must decide")
	}
	// TextWithin stops before the delta that passes the limit.
	if got, want := TextWithin([]byte(stream), APIResponses, 0, 0, 2), strings.Index(stream, "event: response.function_call"); got != want {
		t.Errorf("TextWithin: %d, want %d", got, want)
	}
}

// BenchmarkCountText is the per-event cost of counting a stream
// whose client asked for no usage: one simulator-shaped token event.
func BenchmarkCountText(b *testing.B) {
	ev := []byte(`data: {"id":"chatcmpl-sim1-1","object":"chat.completion.chunk","created":1796501284,"model":"sim-model","choices":[{"index":0,"delta":{"content":"steady "},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(ev)))
	for b.Loop() {
		if n, _ := CountText(ev, APIChat); n != 1 {
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
		if got := TextWithin([]byte(p), APIChat, tc.events, tc.bytes, tc.limit); got != tc.want {
			t.Errorf("after %d events, limit %d: %d bytes, want %d", tc.events, tc.limit, got, tc.want)
		}
	}
}
