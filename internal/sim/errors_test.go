package sim

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBadRequestsNameTheFieldNotGo: a refused request is answered like a
// vLLM server answers it: an OpenAI error object whose param names the
// field, and a message that is about the API, never Go's decoder text
// ("cannot unmarshal string into Go struct field wireRequest.messages of
// type []sim.wireMessage"), which the gateway relays to its clients as is.
func TestBadRequestsNameTheFieldNotGo(t *testing.T) {
	_, url := startSim(t, fastConfig())
	cases := []struct{ path, body, param string }{
		{"/v1/chat/completions", `{"messages":`, ""},
		{"/v1/chat/completions", `{"messages":"hi"}`, "messages"},
		{"/v1/chat/completions", `{"messages":[7]}`, "messages[0]"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"},{"role":5}]}`, "messages[1].role"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":7}]}`, "messages[0].content"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"text","text":5}]}]}`, "messages[0].content"},
		{"/v1/chat/completions", `{"model":"sim-model"}`, "messages"},
		{"/v1/chat/completions", `{"messages":[],"max_tokens":"9"}`, "max_tokens"},
		{"/v1/chat/completions", `{"messages":[],"max_tokens":0}`, "max_tokens"},
		{"/v1/chat/completions", `{"messages":[],"stream":"yes"}`, "stream"},
		{"/v1/chat/completions", `{"messages":[],"stream_options":{"include_usage":1}}`, "stream_options.include_usage"},
		{"/v1/completions", `{"prompt":5}`, "prompt"},
		{"/v1/completions", `{"prompt":{"a":1}}`, "prompt"},
		{"/v1/completions", `{"prompt":[{"a":1}]}`, "prompt[0]"},
		{"/v1/completions", `{"prompt":[[1,"x"]]}`, "prompt[0]"},
		{"/v1/completions", `{"max_tokens":1}`, "prompt"},
		{"/v1/embeddings", `{"input":{"a":1}}`, "input"},
		{"/v1/embeddings", `{"input":[]}`, "input"},
		{"/v1/embeddings", `{}`, "input"},
		{"/v1/embeddings", `[`, ""},
	}
	for _, c := range cases {
		status, body := postRead(t, url+c.path, c.body)
		var e struct {
			Error *struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
				Code    string  `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || status != 400 {
			t.Errorf("%s %s: status %d, body %s", c.path, c.body, status, body)
			continue
		}
		if !strings.Contains(string(body), `"param":`) {
			t.Errorf("%s %s: no param key: %s", c.path, c.body, body)
		}
		param := ""
		if e.Error.Param != nil {
			param = *e.Error.Param
		}
		if param != c.param {
			t.Errorf("%s %s: param %q, want %q (%s)", c.path, c.body, param, c.param, e.Error.Message)
		}
		for _, s := range []string{"Go ", "json:", "[]", "RawMessage", "unmarshal", "struct", "wire", "int64", "http:"} {
			if strings.Contains(e.Error.Message, s) {
				t.Errorf("%s %s: message has Go's text %q: %s", c.path, c.body, s, e.Error.Message)
			}
		}
	}
}

// A value of the wrong JSON type is refused saying what it must be, as
// vLLM's validation does ("Input should be a valid list"): a new user of
// `sluice serve` meets the simulator's words first. Before, the message
// said only "messages has the wrong type (a JSON number)". A message of
// the wrong type is named by its element's path, as OpenAI names it
// ("Invalid type for 'messages[1].content'"): before, the simulator said
// "messages" and "messages.role", with no index (Go's decoder path).
func TestWrongTypeSaysWhatIsAllowed(t *testing.T) {
	_, url := startSim(t, fastConfig())
	for _, c := range []struct{ path, body, want string }{
		{"/v1/chat/completions", `{"messages":3}`, "messages must be an array (got a JSON number)"},
		{"/v1/chat/completions", `{"messages":"hi"}`, "messages must be an array (got a JSON string)"},
		{"/v1/chat/completions", `{"messages":[{"role":5,"content":"x"}]}`, "messages[0].role must be a string (got a JSON number)"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"},{"role":[]}]}`, "messages[1].role must be a string (got a JSON array)"},
		{"/v1/chat/completions", `{"messages":[],"max_tokens":"9"}`, "max_tokens must be an integer (got a JSON string)"},
		{"/v1/chat/completions", `{"messages":[],"stream":"yes"}`, "stream must be true or false (got a JSON string)"},
		{"/v1/chat/completions", `{"messages":[7]}`, "messages[0] must be an object (got a JSON number)"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"},"hi"]}`, "messages[1] must be an object (got a JSON string)"},
	} {
		status, body := postRead(t, url+c.path, c.body)
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || status != 400 || e.Error.Message != c.want {
			t.Errorf("%s %s: status %d, message %q; want 400 and %q", c.path, c.body, status, e.Error.Message, c.want)
		}
	}
}

// What a wrong-typed value must be is said only when it is true: a map's
// value has the map's path (Go's path has no key), so {"metadata":{"a":5}}
// was answered "metadata must be a string", and a client that then sent a
// string was told "metadata has the wrong type"; and a number too large
// for a double was "temperature must be a number (got a JSON number)".
func TestWrongTypeNeverMisstatesWhatIsAllowed(t *testing.T) {
	_, url := startSim(t, fastConfig())
	for _, c := range []struct{ body, want string }{
		{`{"model":"sim-model","input":"x","metadata":{"a":5}}`, "metadata has the wrong type (a JSON number)"},
		{`{"model":"sim-model","input":"x","temperature":1e999}`, "temperature is out of range (a JSON number too large for a double)"},
		{`{"model":"sim-model","input":"x","temperature":"hot"}`, "temperature must be a number (got a JSON string)"},
		{`{"model":"sim-model","input":"x","metadata":"x"}`, "metadata has the wrong type (a JSON string)"},
	} {
		status, body := postRead(t, url+"/v1/responses", c.body)
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || status != 400 || e.Error.Message != c.want {
			t.Errorf("%s: status %d, message %q; want 400 and %q", c.body, status, e.Error.Message, c.want)
		}
	}
}
