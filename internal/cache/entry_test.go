package cache

import (
	"errors"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

const chatJSON = `{"id":"c1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`

// TestEntryReplaysThroughOpenAI: an entry converts with the openai wire
// functions (tested there), in both directions.
func TestEntryReplaysThroughOpenAI(t *testing.T) {
	plain := &Entry{Status: 200, ContentType: "application/json", Body: []byte(chatJSON)}
	if j, err := plain.ToJSON(); err != nil || string(j) != chatJSON {
		t.Fatalf("a JSON entry as JSON: %s %v", j, err)
	}
	sse, err := plain.ToSSE(true)
	want, _ := openai.JSONToSSE([]byte(chatJSON), true)
	if err != nil || string(sse) != string(want) {
		t.Fatalf("a JSON entry as SSE: %s %v", sse, err)
	}
	stream := &Entry{Status: 200, ContentType: "text/event-stream", Events: openai.ParseSSE(sse)}
	if got, err := stream.ToSSE(false); err != nil || string(got) != string(openai.EventsToSSE(stream.Events, false)) {
		t.Fatalf("a stream entry as SSE: %s %v", got, err)
	}
	j, err := stream.ToJSON()
	if want, _ := openai.StreamToJSON(stream.Events); err != nil || string(j) != string(want) {
		t.Fatalf("a stream entry as JSON: %s %v", j, err)
	}
	if _, err := (&Entry{Status: 200, Body: []byte(`{"error":{}}`)}).ToSSE(false); !errors.Is(err, openai.ErrNotConvertible) {
		t.Fatalf("an error body as SSE: %v, want ErrNotConvertible", err)
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
