package openai

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEndpointOf(t *testing.T) {
	for path, want := range map[string]ModelEndpoint{
		"/v1/rerank": EndpointRerank, "/rerank": EndpointRerank, "/v2/rerank": EndpointRerank,
		"/v1/score": EndpointScore, "/score": EndpointScore, "/classify": EndpointClassify,
		"/pooling": EndpointPooling, "/v1/moderations": EndpointModerations,
		"/tokenize": EndpointTokenize, "/detokenize": EndpointDetokenize,
		"/v1/chat/completions": EndpointNone, "/v1/embeddings": EndpointNone, "/v1/rerank/": EndpointNone,
		"/v1/tokenize": EndpointNone, "/RERANK": EndpointNone,
	} {
		if got := EndpointOf(path); got != want {
			t.Errorf("EndpointOf(%q) = %d, want %d", path, got, want)
		}
	}
	if !EndpointTokenize.CPUOnly() || !EndpointDetokenize.CPUOnly() || EndpointRerank.CPUOnly() {
		t.Fatal("CPUOnly: only the tokenizer endpoints")
	}
}

func TestParseEndpointRequest(t *testing.T) {
	for _, c := range []struct {
		e     ModelEndpoint
		body  string
		bytes int
	}{
		// The query (7 bytes quoted) once per document, then the documents.
		{EndpointRerank, `{"model":"m","query":"hello","documents":["ab","cde"],"top_n":1}`, 2*7 + 4 + 5},
		{EndpointRerank, `{"model":"m","query":"q","documents":{"content":[]}}`, 3 + 14},
		// One text_1 against each text_2; lists pair up.
		{EndpointScore, `{"model":"m","text_1":"abc","text_2":["x","y","z"]}`, 3*5 + 9},
		{EndpointScore, `{"model":"m","text_1":["ab","cd"],"text_2":["x","y"]}`, 8 + 6},
		{EndpointClassify, `{"model":"m","input":["a","b"]}`, 9},
		{EndpointClassify, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, 32},
		{EndpointPooling, `{"model":"m","input":[[1,2],[3]]}`, 11},
		{EndpointModerations, `{"model":"m","input":"text"}`, 6},
		{EndpointTokenize, `{"model":"m","prompt":"hi","add_special_tokens":false}`, 4},
		{EndpointTokenize, `{"model":"m","messages":[],"prompt":null}`, 2},
		{EndpointDetokenize, `{"model":"m","tokens":[1, 2 ,3]}`, 9},
	} {
		p, n, err := ParseEndpointRequest(c.e, []byte(c.body))
		if err != nil {
			t.Errorf("%s: %v", c.body, err)
			continue
		}
		if p.Model != "m" || p.Stream || p.Deterministic || p.MaxTokens != 0 || n != c.bytes {
			t.Errorf("%s: peek %+v, input bytes %d, want %d", c.body, p, n, c.bytes)
		}
	}
	// No model: the gateway's parse stage refuses it, as for every endpoint.
	if p, _, err := ParseEndpointRequest(EndpointModerations, []byte(`{"input":"x"}`)); err != nil || p.Model != "" {
		t.Fatalf("no model: %+v %v", p, err)
	}
}

func TestParseEndpointRequestRefusals(t *testing.T) {
	for _, c := range []struct {
		e           ModelEndpoint
		body, param string
	}{
		{EndpointRerank, `{"model":"m","documents":["a"]}`, "query"},
		{EndpointRerank, `{"model":"m","query":"q"}`, "documents"},
		{EndpointRerank, `{"model":"m","query":"q","documents":null}`, "documents"},
		{EndpointRerank, `{"model":"m","query":1,"documents":["a"]}`, "query"},
		{EndpointRerank, `{"model":"m","query":"q","documents":["a",2]}`, "documents"},
		{EndpointRerank, `{"model":"m","query":"q","documents":"a"}`, "documents"},
		{EndpointRerank, `{"model":"m","query":"q","Documents":["a"]}`, "Documents"},
		{EndpointRerank, `{"model":"m","query":"q","query":"r","documents":[]}`, "query"},
		{EndpointScore, `{"model":"m","text_1":"a"}`, "text_2"},
		{EndpointScore, `{"model":"m","text_1":"a","text_2":[1]}`, "text_2"},
		{EndpointClassify, `{"model":"m"}`, "input"},
		{EndpointClassify, `{"model":"m","input":"a","messages":[]}`, "messages"},
		{EndpointClassify, `{"model":"m","input":{}}`, "input"},
		{EndpointPooling, `{"model":"m","messages":"hi"}`, "messages"},
		{EndpointModerations, `{"model":"m"}`, "input"},
		{EndpointModerations, `{"model":5,"input":"x"}`, "model"},
		{EndpointModerations, `{"MODEL":"m","input":"x"}`, "MODEL"},
		{EndpointModerations, `{"model":null,"model":"m","input":"x"}`, "model"},
		{EndpointTokenize, `{"model":"m","prompt":["a"]}`, "prompt"},
		{EndpointTokenize, `{"model":"m","prompt":"a","messages":[]}`, "messages"},
		{EndpointDetokenize, `{"model":"m","tokens":[1.5]}`, "tokens"},
		{EndpointDetokenize, `{"model":"m","tokens":["1"]}`, "tokens"},
		{EndpointDetokenize, `{"model":"m"}`, "tokens"},
	} {
		_, _, err := ParseEndpointRequest(c.e, []byte(c.body))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Param != c.param {
			t.Errorf("%s: %v, want a 400 naming %q", c.body, err, c.param)
		}
	}
	for _, body := range []string{``, `[]`, `{"model":"m",}`, `"x"`} {
		if _, _, err := ParseEndpointRequest(EndpointRerank, []byte(body)); err == nil {
			t.Errorf("%q accepted", body)
		}
	}
}

// FuzzParseEndpointRequest: whatever the body, the parser answers an API
// error or a peek that a JSON decoder agrees with, for every endpoint.
func FuzzParseEndpointRequest(f *testing.F) {
	f.Add(uint8(EndpointRerank), []byte(`{"model":"m","query":"q","documents":["a","b"],"top_n":1}`))
	f.Add(uint8(EndpointScore), []byte(`{"model":"m","text_1":["a"],"text_2":{"content":[]}}`))
	f.Add(uint8(EndpointClassify), []byte(`{"model":"m","messages":[{"role":"user"}]}`))
	f.Add(uint8(EndpointPooling), []byte(`{"model":"m","input":[[1,2]]}`))
	f.Add(uint8(EndpointModerations), []byte(`{"Model":"m","input":"x"}`))
	f.Add(uint8(EndpointTokenize), []byte(`{"model":"m","prompt":"x","messages":null}`))
	f.Add(uint8(EndpointDetokenize), []byte(`{"model":"m","tokens":[1,-2,3e1]}`))
	f.Add(uint8(EndpointRerank), []byte("{\"model\":\"m\",\"query\":\"\xc3\",\"documents\":[\"a\"]}"))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		e := ModelEndpoint(which%uint8(EndpointDetokenize) + 1)
		p, n, err := ParseEndpointRequest(e, body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is not an API error: %T %v", err, err)
			}
			return
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("invalid JSON or UTF-8 accepted: %q", body)
		}
		if p.Stream || p.Deterministic || p.MaxTokens != 0 || n < 0 || n > 2*maxInputBytes+len(body) {
			t.Fatalf("peek out of range accepted: %+v, %d bytes", p, n)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted body is not an object: %v", err)
		}
		spec := endpointSpecs[e]
		present := 0
		for k, v := range m {
			if k != "model" && strings.EqualFold(k, "model") {
				t.Fatalf("ambiguous key %q accepted", k)
			}
			for _, f := range spec.fields {
				if k != f.name && strings.EqualFold(k, f.name) {
					t.Fatalf("ambiguous key %q accepted", k)
				}
				if k == f.name && string(v) != "null" {
					present++
				}
			}
		}
		if spec.either && present != 1 || !spec.either && present != len(spec.fields) {
			t.Fatalf("%d of the input fields accepted: %q", present, body)
		}
		var want struct {
			Model *string `json:"model"`
		}
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("accepted body does not decode: %v", err)
		}
		if utf8.Valid(body) && want.Model != nil && *want.Model != p.Model {
			t.Fatalf("model %q, decoder %q", p.Model, *want.Model)
		}
	})
}
