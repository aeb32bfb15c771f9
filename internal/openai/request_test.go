package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseRequestStrict(t *testing.T) {
	cases := []struct {
		body, code, param string
	}{
		{`{"model":"a","Model":"b"}`, "ambiguous_parameter", "Model"},
		{`{"MODEL":"b","model":"a"}`, "ambiguous_parameter", "MODEL"},
		{`{"model":"a","model":"b"}`, "duplicate_parameter", "model"},
		{`{"model":"a","mod\u0065l":"b"}`, "duplicate_parameter", "model"},
		{`{"model":"a","Max_Tokens":5}`, "ambiguous_parameter", "Max_Tokens"},
		{`{"model":"a","\u017ftream":true}`, "ambiguous_parameter", "\u017ftream"}, // ſ folds to s in Go
		{`{"model":"a","stream":true,"stream":false}`, "duplicate_parameter", "stream"},
		{`{"model":"a","n":1,"N":2}`, "ambiguous_parameter", "N"},
		{`{"model":"a","messages":[],"Messages":[]}`, "ambiguous_parameter", "Messages"},
		{`{"model":"a","stream_options":{"include_usage":true,"Include_Usage":false}}`, "ambiguous_parameter", "stream_options.Include_Usage"},
		{`{"model":"a","stream_options":{"include_usage":true,"include_usage":false}}`, "duplicate_parameter", "stream_options.include_usage"},
		{`{"model":"a","max_tokens":"7"}`, "invalid_type", "max_tokens"},
		{`{"model":"a","max_tokens":7.5}`, "invalid_type", "max_tokens"},
		{`{"model":"a","max_tokens":1e3}`, "invalid_type", "max_tokens"},
		{`{"model":"a","max_tokens":-1}`, "invalid_value", "max_tokens"},
		{`{"model":"a","max_tokens":16777217}`, "invalid_value", "max_tokens"},
		{`{"model":"a","max_completion_tokens":99999999999999999999999}`, "invalid_value", "max_completion_tokens"},
		{`{"model":"a","n":0}`, "invalid_value", "n"},
		{`{"model":"a","n":129}`, "invalid_value", "n"},
		{`{"model":"a","best_of":129}`, "invalid_value", "best_of"},
		{`{"model":"a","best_of":2.5}`, "invalid_type", "best_of"},
		{`{"model":"a","best_of":2,"Best_Of":3}`, "ambiguous_parameter", "Best_Of"},
		{`{"model":1}`, "invalid_type", "model"},
		{`{"model":"a","stream":"yes"}`, "invalid_type", "stream"},
		{`{"model":"a","temperature":"0"}`, "invalid_type", "temperature"},
		{`{"model":"a","seed":"1"}`, "invalid_type", "seed"},
		{`{"model":"a","stream_options":true}`, "invalid_type", "stream_options"},
		{`{"model":"a","stream_options":{"include_usage":1}}`, "invalid_type", "stream_options.include_usage"},
		{`{"model":"a","store":"true"}`, "invalid_type", "store"},
		{`{"model":"a","store":true,"Store":false}`, "ambiguous_parameter", "Store"},
		{`[]`, "invalid_json", ""},
		{``, "invalid_json", ""},
		{`{"model":"m"`, "invalid_json", ""},
		{`{"model":"m"} {}`, "invalid_json", ""},
	}
	for _, c := range cases {
		_, err := ParseRequest([]byte(c.body))
		e, ok := err.(*Error)
		if !ok || e.Status != 400 || e.Code != c.code || e.Param != c.param {
			t.Errorf("ParseRequest(%s) = %#v, want 400 %s param %q", c.body, err, c.code, c.param)
			continue
		}
		if strings.Contains(e.Message, "peekFields") || strings.Contains(e.Message, "Go ") || strings.Contains(e.Message, "unmarshal") {
			t.Errorf("%s: message leaks decoder text: %q", c.body, e.Message)
		}
	}
}

func TestParseRequestAccepts(t *testing.T) {
	cases := []struct {
		body string
		want Peek
	}{
		{`{"model":"m","stream":true,"max_tokens":7,"stream_options":{"include_usage":true}}`, Peek{Model: "m", Stream: true, MaxTokens: 7, IncludeUsage: true}},
		{`{"model":"m","max_completion_tokens":9,"max_tokens":3}`, Peek{Model: "m", MaxTokens: 9}},
		{` {"messages":[{"role":"user","content":"x"}]}`, Peek{}},
		{`{"model":"m\u002fx","max_tokens":null,"n":null,"stream":null}`, Peek{Model: "m/x"}},
		{`{"mod\u0065l":"m","max_tokens":16777216}`, Peek{Model: "m", MaxTokens: MaxTokensLimit}},
		// Unknown fields, whatever their case, are the backend's business.
		{`{"model":"m","top_p":1,"Top_P":2,"top_p":3,"x":{"Model":"y","model":"z"}}`, Peek{Model: "m"}},
		{`{"model":"m","stream_options":{"include_usage":false,"continuous_usage_stats":true}}`, Peek{Model: "m"}},
		{`{"model":"m","messages":[{"role":"user","content":"a \"quoted\\\" } ] string"}],"seed":1}`, Peek{Model: "m", Deterministic: true}},
		{`{"model":"m","temperature":1e-400}`, Peek{Model: "m", Deterministic: true}},
		{`{"model":"m","temperature":1e400}`, Peek{Model: "m"}},
		{`{"model":"m","store":true}`, Peek{Model: "m", Store: true}},
		{`{"model":"m","store":false}`, Peek{Model: "m"}},
		{`{"model":"m","store":null}`, Peek{Model: "m"}},
		// n and best_of: the completions generated, each max_tokens long.
		{`{"model":"m","n":8,"max_tokens":500}`, Peek{Model: "m", MaxTokens: 500, Choices: 8}},
		{`{"model":"m","prompt":"p","best_of":4,"n":2}`, Peek{Model: "m", Choices: 4}},
		{`{"model":"m","n":3,"best_of":1}`, Peek{Model: "m", Choices: 3}},
		{`{"model":"m","n":1,"best_of":0,"seed":1}`, Peek{Model: "m", Deterministic: true}},
	}
	for _, c := range cases {
		got, err := ParseRequest([]byte(c.body))
		if err != nil || got != c.want {
			t.Errorf("ParseRequest(%s) = %+v, %v; want %+v", c.body, got, err, c.want)
		}
	}
}

func TestReplaceModelKeepsEveryOtherByte(t *testing.T) {
	for in, want := range map[string]string{
		`{"model":"a","max_tokens":3,"x":"<&>"}`:  `{"model":"b/c","max_tokens":3,"x":"<&>"}`,
		` { "x" : 1 , "model" : "a" , "y":[1] } `: ` { "x" : 1 , "model" : "b/c" , "y":[1] } `,
		`{"x":1}`:            `{"model":"b/c","x":1}`,
		`{}`:                 `{"model":"b/c"}`,
		`{"mod\u0065l":"a"}`: `{"mod\u0065l":"b/c"}`,
	} {
		got, err := ReplaceModel([]byte(in), "b/c")
		if err != nil || string(got) != want {
			t.Errorf("ReplaceModel(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := ReplaceModel([]byte(`[1]`), "b"); err == nil {
		t.Error("array accepted")
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","stream":true,"max_tokens":7}`))
	f.Add([]byte(`{"model":"m","stream_options":{"include_usage":true},"messages":[]}`))
	f.Add([]byte(`{"model":"m","Model":"x","n":1,"seed":3,"temperature":0}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"a\\\"}"}],"max_completion_tokens":2}`))
	f.Add([]byte(`[`))
	f.Add([]byte("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}"))
	f.Add([]byte("{\"model\":\"m\",\"prompt\":\"\xed\xa0\x80 \xf4\x90\x80\x80\"}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseRequest(body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is not an API error: %T %v", err, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("invalid JSON accepted: %q", body)
		}
		if !utf8.Valid(body) {
			t.Fatalf("a body that is not UTF-8 accepted: %q", body)
		}
		if p.MaxTokens < 0 || p.MaxTokens > MaxTokensLimit {
			t.Fatalf("max_tokens out of range accepted: %+v", p)
		}
		// Accepted: a case-sensitive reader (what Python does) sees exactly
		// what we saw, and no key the gateway acts on is ambiguous.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted body is not an object: %v", err)
		}
		for k := range m {
			for _, f := range actedOn {
				if k != f && strings.EqualFold(k, f) {
					t.Fatalf("ambiguous key %q accepted", k)
				}
			}
		}
		var model string
		if raw, ok := m["model"]; ok && string(raw) != "null" {
			if json.Unmarshal(raw, &model) != nil {
				t.Fatalf("non-string model accepted: %s", raw)
			}
		}
		if model != p.Model {
			t.Fatalf("model %q, a case-sensitive reader sees %q", p.Model, model)
		}
		var stream bool
		json.Unmarshal(m["stream"], &stream)
		if stream != p.Stream {
			t.Fatalf("stream %v, a case-sensitive reader sees %v", p.Stream, stream)
		}
		// Round trip: rewriting the model changes only the model.
		out, err := ReplaceModel(body, "other/model")
		if err != nil {
			t.Fatalf("ReplaceModel of an accepted body: %v", err)
		}
		q, err := ParseRequest(out)
		if err != nil || q.Model != "other/model" {
			t.Fatalf("rewritten body %q: %+v %v", out, q, err)
		}
		q.Model = p.Model
		if q != p {
			t.Fatalf("rewrite changed other fields: %+v vs %+v", q, p)
		}
		var m2 map[string]json.RawMessage
		json.Unmarshal(out, &m2)
		delete(m, "model")
		delete(m2, "model")
		for k, v := range m {
			if !bytes.Equal(v, m2[k]) {
				t.Fatalf("rewrite changed %q: %s -> %s", k, v, m2[k])
			}
		}
	})
}

// FuzzReplaceModel: rewriting the model of an accepted body to any name
// yields a body the strict parser accepts, with that model and every
// other peeked field unchanged.
func FuzzReplaceModel(f *testing.F) {
	f.Add([]byte(`{"model":"a","max_tokens":3,"stream":true}`), "org/b")
	f.Add([]byte(`{"messages":[]}`), "x\"\\\u2028<>&")
	f.Add([]byte(` {"mod\u0065l" : null} `), "")
	f.Fuzz(func(t *testing.T, body []byte, model string) {
		p, err := ParseRequest(body)
		if err != nil {
			return
		}
		out, err := ReplaceModel(body, model)
		if err != nil {
			t.Fatalf("ReplaceModel: %v", err)
		}
		q, err := ParseRequest(out)
		if err != nil {
			t.Fatalf("rewritten body %q refused: %v", out, err)
		}
		// Invalid UTF-8 is sent as U+FFFD, byte by byte, as json.Marshal does.
		var want string
		quoted, _ := json.Marshal(model)
		json.Unmarshal(quoted, &want)
		if q.Model != want {
			t.Fatalf("model %q, want %q", q.Model, want)
		}
		q.Model = p.Model
		if q != p {
			t.Fatalf("rewrite changed other fields: %+v vs %+v", q, p)
		}
	})
}

// FuzzParseRequestNoted: reading the members the validating scan noted
// gives what walking them again gives, the same peek or the same error,
// on any body (seeds: more members than the scan notes, nesting, escapes,
// whitespace, arrays at the top).
func FuzzParseRequestNoted(f *testing.F) {
	many := `{"model":"m"`
	for i := range 20 {
		many += `,"k` + strconv.Itoa(i) + `":[1,{"a":2}]`
	}
	for _, s := range []string{many + `,"max_tokens":3}`, `{"model":"m","stream":true,"max_tokens":7}`,
		` { "model" : "m" , "messages" : [ {"role":"user","content":"a\"}"} ] , "n" : 1 } `,
		`{"stream_options":{"include_usage":true},"temperature":0,"seed":1}`, `{"model":"a","model":"b"}`,
		`{"Model":"x"}`, `{"m\u006fdel":"x"}`, `[{"model":"m"}]`, `{}`, `{"a":{},"b":[],"model":"m"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parseRequest(body, true)
		q, werr := parseRequest(body, false)
		if p != q || fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Fatalf("%q: noted %+v %v, walked %+v %v", body, p, err, q, werr)
		}
	})
}
