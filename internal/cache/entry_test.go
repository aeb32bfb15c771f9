package cache

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

const chatJSON = `{"id":"c1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`

func TestJSONToSSEExact(t *testing.T) {
	e := &Entry{Status: 200, ContentType: "application/json", Body: []byte(chatJSON)}
	got, err := e.ToSSE(true)
	if err != nil {
		t.Fatal(err)
	}
	want := `data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"Hello there"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}

data: [DONE]

`
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}

	// And back: the stream assembles into the same completion.
	s := &Entry{Status: 200, Events: ParseSSE(got)}
	if len(s.Events) != 4 {
		t.Fatalf("events: %d", len(s.Events))
	}
	back, err := s.ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	assertSameJSON(t, back, []byte(chatJSON))

	noUsage, _ := s.ToSSE(false)
	if ev := ParseSSE(noUsage); len(ev) != 3 {
		t.Fatalf("usage chunk not dropped: %d events", len(ev))
	}
}

func TestStreamToJSONToSSE(t *testing.T) {
	stream := "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n" +
		": keepalive\n\n" +
		"data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\r\n\r\n" +
		"data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\n\n" +
		"data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n" +
		"data: [DONE]\n\n"
	e := &Entry{Status: 200, Events: ParseSSE([]byte(stream))}
	j, err := e.ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`
	if string(j) != want {
		t.Fatalf("got %s", j)
	}
	sse, _ := (&Entry{Body: j}).ToSSE(true)
	back, err := (&Entry{Events: ParseSSE(sse)}).ToJSON()
	if err != nil || string(back) != want {
		t.Fatalf("round trip: %s %v", back, err)
	}
}

func TestTextCompletionAndToolCalls(t *testing.T) {
	text := `{"id":"t","object":"text_completion","created":2,"model":"m","choices":[{"index":0,"text":"abc","logprobs":null,"finish_reason":"stop"}]}`
	sse, err := (&Entry{Body: []byte(text)}).ToSSE(false)
	if err != nil {
		t.Fatal(err)
	}
	back, err := (&Entry{Events: ParseSSE(sse)}).ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	assertSameJSON(t, back, []byte(text))

	tools := `{"id":"c","object":"chat.completion","created":2,"model":"m","choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]}`
	sse, err = (&Entry{Body: []byte(tools)}).ToSSE(false)
	if err != nil {
		t.Fatal(err)
	}
	back, err = (&Entry{Events: ParseSSE(sse)}).ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	assertSameJSON(t, back, []byte(tools))

	if _, err := (&Entry{Body: []byte(`{"error":{}}`)}).ToSSE(false); err == nil {
		t.Fatal("an error body must not become a stream")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, e := range []*Entry{
		{Status: 200, ContentType: "application/json", Stored: time.Unix(5, 6), Fresh: time.Unix(65, 6), Body: []byte(chatJSON)},
		{Status: 200, ContentType: "text/event-stream", Events: [][]byte{[]byte("a"), {}, []byte("ccc")}},
		{Status: 404, Body: []byte{}},
	} {
		got, err := unmarshalEntry(marshalEntry(e))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Stored.Equal(e.Stored) || !got.Fresh.Equal(e.Fresh) || got.Status != e.Status || got.ContentType != e.ContentType ||
			string(got.Body) != string(e.Body) || len(got.Events) != len(e.Events) || got.IsStream() != e.IsStream() {
			t.Fatalf("round trip: %+v -> %+v", e, got)
		}
	}
	b := marshalEntry(&Entry{Status: 200, Body: []byte("xyz")})
	for i := range len(b) {
		if _, err := unmarshalEntry(b[:i]); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
}

func assertSameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// FuzzParseSSE: any backend stream parses and converts without panicking,
// and a converted answer is JSON.
func FuzzParseSSE(f *testing.F) {
	f.Add([]byte("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("event: x\r\ndata: a\r\ndata: b\r\n\r\n: comment\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		e := &Entry{Status: 200, Events: ParseSSE(stream)}
		if b, err := e.ToJSON(); err == nil && !json.Valid(b) {
			t.Fatalf("ToJSON gave invalid JSON %q for %q", b, stream)
		}
		if _, err := e.ToSSE(true); err != nil {
			return
		}
	})
}
