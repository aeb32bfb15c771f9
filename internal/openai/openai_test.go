package openai

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	cases := []struct {
		body string
		want Peek
		err  bool
	}{
		{`{"model":"m","stream":true,"max_tokens":7,"stream_options":{"include_usage":true}}`, Peek{Model: "m", Stream: true, MaxTokens: 7, IncludeUsage: true}, false},
		{`{"model":"m","max_completion_tokens":9,"max_tokens":3}`, Peek{Model: "m", MaxTokens: 9}, false},
		{` {"messages":[{"role":"user","content":"x"}]}`, Peek{}, false},
		{`{"model":"m","max_tokens":-1}`, Peek{}, true},
		{`{"model":1}`, Peek{}, true},
		{`[]`, Peek{}, true},
		{``, Peek{}, true},
		{`{"model":"m"`, Peek{}, true},
	}
	for _, c := range cases {
		got, err := ParseRequest([]byte(c.body))
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("ParseRequest(%q) = %+v, %v", c.body, got, err)
		}
	}
}

func TestReplaceModel(t *testing.T) {
	out, err := ReplaceModel([]byte(`{"model":"a","max_tokens":3,"messages":[{"content":"x"}]}`), "b/c")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	if m["model"] != "b/c" || m["max_tokens"].(float64) != 3 {
		t.Fatalf("got %s", out)
	}
}

func TestErrorJSONShape(t *testing.T) {
	e := &Error{Status: 429, Type: TypeRateLimit, Code: "rate_limit_exceeded", Message: `too "many"`}
	var v struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(e.JSON(), &v); err != nil {
		t.Fatalf("%s: %v", e.JSON(), err)
	}
	if v.Error.Message != `too "many"` || v.Error.Type != TypeRateLimit || v.Error.Code != "rate_limit_exceeded" || v.Error.Param != nil {
		t.Fatalf("%+v", v)
	}
	if ev := string(e.SSEEvent()); !strings.HasPrefix(ev, "data: {") || !strings.HasSuffix(ev, "}\n\n") {
		t.Fatalf("SSE event %q", ev)
	}
}

func TestFindUsage(t *testing.T) {
	stream := "data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,\"total_tokens\":46}}\n\ndata: [DONE]\n\n"
	u, ok := FindUsage([]byte(stream))
	if !ok || u.PromptTokens != 12 || u.CompletionTokens != 34 {
		t.Fatalf("got %+v %v", u, ok)
	}
	if _, ok := FindUsage([]byte(`{"usage":null}`)); ok {
		t.Fatal("null usage reported as known")
	}
	if _, ok := FindUsage([]byte(`{"choices":[]}`)); ok {
		t.Fatal("no usage reported as known")
	}
}

func FuzzFindUsage(f *testing.F) {
	f.Add([]byte(`"usage":{"prompt_tokens":1,"completion_tokens":2}`))
	f.Add([]byte(`"usage": {`))
	f.Fuzz(func(t *testing.T, tail []byte) {
		FindUsage(tail) // must not panic on any input
	})
}

func TestFindUsageNested(t *testing.T) {
	body := `{"id":"x","usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":3}}}`
	u, ok := FindUsage([]byte(body))
	if !ok || u.PromptTokens != 5 || u.CompletionTokens != 7 {
		t.Fatalf("%+v %v", u, ok)
	}
	// Details before the counts: the counts inside the nested object must not be taken.
	odd := `{"usage":{"completion_tokens":2,"prompt_tokens":9}}`
	if u, ok := FindUsage([]byte(odd)); !ok || u.PromptTokens != 9 || u.CompletionTokens != 2 {
		t.Fatalf("%+v", u)
	}
}

func TestDeterministic(t *testing.T) {
	for body, want := range map[string]bool{
		`{"model":"m","temperature":0}`:         true,
		`{"model":"m","seed":42}`:               true,
		`{"model":"m","temperature":0.2}`:       false,
		`{"model":"m"}`:                         false,
		`{"model":"m","seed":null}`:             false,
		`{"model":"m","temperature":0,"n":2}`:   false,
		`{"model":"m","seed":7,"n":1}`:          true,
		`{"model":"m","temperature":0.0,"n":1}`: true,
	} {
		p, err := ParseRequest([]byte(body))
		if err != nil || p.Deterministic != want {
			t.Errorf("%s: deterministic %v (%v), want %v", body, p.Deterministic, err, want)
		}
	}
}

// FuzzLastUsageKey: lastUsageKey finds what bytes.LastIndex finds, on any
// bytes (seeds: several keys, a key at each end, colons without a key).
func FuzzLastUsageKey(f *testing.F) {
	for _, s := range []string{`"usage":`, `x"usage":{"a":1},"usage":null}`, `{"usage":{"prompt_tokens":1}}:`,
		`"usage"::`, `usage":"usage":`, `:::`, ``, `"usage" :`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, tail []byte) {
		if got, want := lastUsageKey(tail), bytes.LastIndex(tail, usageKey); got != want {
			t.Fatalf("lastUsageKey(%q) = %d, bytes.LastIndex says %d", tail, got, want)
		}
	})
}
