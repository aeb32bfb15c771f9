package openai

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestErrorEventOf(t *testing.T) {
	ev, ok := ErrorEventOf([]byte("{\n  \"error\": {\"message\": \"busy\", \"type\": \"server_error\", \"code\": null}\n}\n"))
	if want := `data: {"error":{"message":"busy","type":"server_error","code":null}}` + "\n\n"; !ok || string(ev) != want {
		t.Fatalf("got %q, %v; want %q", ev, ok, want)
	}
	for _, body := range []string{"", "busy", `{"error":"busy"}`, `{"detail":"x"}`, `[{"error":{}}]`, `{"error":{}} trailing`} {
		if ev, ok := ErrorEventOf([]byte(body)); ok {
			t.Errorf("%q converted to %q", body, ev)
		}
	}
}

func TestSSECommentIsOneLine(t *testing.T) {
	if got := string(SSEComment("a\r\nb")); got != ": a  b\n\n" {
		t.Fatalf("%q", got)
	}
}

// FuzzErrorEventOf: whatever a backend sends, a converted event is one
// data line holding a JSON object with an error object.
func FuzzErrorEventOf(f *testing.F) {
	for _, s := range []string{`{"error":{"message":"x"}}`, "{\"error\":\n{}}", `{"error":[]}`, `null`, "", `{"error":{"message":"a\nb"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, ok := ErrorEventOf(body)
		if !ok {
			return
		}
		line, found := bytes.CutPrefix(ev, []byte("data: "))
		line, end := bytes.CutSuffix(line, []byte("\n\n"))
		if !found || !end || bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("not one data line: %q", ev)
		}
		var v struct {
			Error map[string]json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(line, &v); err != nil || v.Error == nil {
			t.Fatalf("event %q: %v", ev, err)
		}
	})
}
