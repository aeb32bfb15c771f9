package openai

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseResponsesRequest(t *testing.T) {
	p, rp, err := ParseResponsesRequest([]byte(`{"model":"m","input":[{"role":"user","content":"hi"}],"instructions":"be brief",` +
		`"stream":true,"max_output_tokens":64,"previous_response_id":"resp_1","store":false,"background":false,"temperature":0}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Model != "m" || !p.Stream || p.MaxTokens != 64 || p.API != APIResponses || p.Deterministic {
		t.Fatalf("peek %+v", p)
	}
	if rp.PreviousResponseID != "resp_1" || rp.Store || rp.Background {
		t.Fatalf("responses peek %+v", rp)
	}
	if _, rp, _ := ParseResponsesRequest([]byte(`{"model":"m","input":"x"}`)); !rp.Store {
		t.Fatal("store defaults to true, as the API's")
	}
	// max_tokens is chat's: here it is forwarded unread, not the bound.
	if p, _, _ := ParseResponsesRequest([]byte(`{"model":"m","input":"x","max_tokens":9}`)); p.MaxTokens != 0 {
		t.Fatalf("max_tokens read as the bound: %+v", p)
	}
}

func TestParseResponsesRequestRefusals(t *testing.T) {
	for body, param := range map[string]string{
		`{"model":"m","input":5}`:                                   "input",
		`{"model":"m","input":{}}`:                                  "input",
		`{"model":"m","instructions":[1]}`:                          "instructions",
		`{"model":"m","max_output_tokens":1.5}`:                     "max_output_tokens",
		`{"model":"m","max_output_tokens":-1}`:                      "max_output_tokens",
		`{"model":"m","stream":"yes"}`:                              "stream",
		`{"model":"m","previous_response_id":7}`:                    "previous_response_id",
		`{"model":"m","store":1}`:                                   "store",
		`{"model":"m","background":"true"}`:                         "background",
		`{"model":"m","temperature":"0"}`:                           "temperature",
		`{"model":"m","Input":"x"}`:                                 "Input",
		`{"model":"m","input":"x","input":"y"}`:                     "input",
		`{"model":"m","max_output_tokens":1,"max_output_tokens":2}`: "max_output_tokens",
		`{"model":7}`: "model",
	} {
		_, _, err := ParseResponsesRequest([]byte(body))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Param != param {
			t.Errorf("%s: %v (want 400 naming %q)", body, err, param)
		}
	}
	for _, body := range []string{``, `[`, `[1]`} {
		var e *Error
		if _, _, err := ParseResponsesRequest([]byte(body)); !errors.As(err, &e) || e.Status != 400 {
			t.Errorf("%q: %v", body, err)
		}
	}
}

func TestReadResponse(t *testing.T) {
	body := `{"id":"resp_abc","object":"response","status":"failed","error":{"code":"server_error","message":"x"},` +
		`"output":[{"type":"message","content":[{"type":"output_text","text":"{\"usage\":{\"input_tokens\":99}}"}]}],` +
		`"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":3},"output_tokens":34,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":46},` +
		`"metadata":{"usage":"x"}}`
	f := ReadResponse([]byte(body))
	if f.ID != "resp_abc" || !f.IsResponse || !f.UsageKnown || f.Usage != (Usage{PromptTokens: 12, CompletionTokens: 34}) {
		t.Fatalf("%+v", f)
	}
	if u, ok := FindResponseUsage([]byte(body)); !ok || u != f.Usage {
		t.Fatalf("tail: %+v %v", u, ok)
	}
	if u, ok := FindUsage([]byte(body)); ok && u.CompletionTokens == 34 {
		t.Log("chat's FindUsage happens to read it too")
	}
}

func TestResponseEvent(t *testing.T) {
	for data, want := range map[string]EventKind{
		`{"type":"response.created","sequence_number":0,"response":{"id":"resp_1"}}`:  EventLifecycle,
		`{"type":"response.in_progress","response":{"id":"resp_1"}}`:                  EventLifecycle,
		`{"type":"response.output_item.added","item":{"type":"message"}}`:             EventOutput,
		`{"type":"response.output_text.delta","delta":"hi"}`:                          EventOutput,
		`{"response":{"id":"resp_1","usage":null},"type":"response.completed"}`:       EventFinal,
		`{"type":"response.incomplete","response":{}}`:                                EventFinal,
		`{"type":"response.failed","response":{"status":"failed"}}`:                   EventFinal,
		`{"type":"error","code":"server_error","message":"boom","sequence_number":3}`: EventError,
		`{"delta":"untyped"}`: EventOutput,
	} {
		kind, resp := ResponseEvent([]byte(data))
		if kind != want {
			t.Errorf("%s: kind %d, want %d", data, kind, want)
		}
		if (kind == EventLifecycle || kind == EventFinal) != (resp != nil) {
			t.Errorf("%s: response %q", data, resp)
		}
	}
}

func TestResponsesPrefixKeyMatchesChat(t *testing.T) {
	chat := PrefixKey([]byte(`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello"}]}`), 0)
	for _, body := range []string{
		`{"instructions":"be brief","input":"hello"}`,
		`{"instructions":"be brief","input":[{"role":"user","content":"hello"}]}`,
		`{"input":[{"type":"message","role":"system","content":"be brief"},{"role":"user","content":[{"type":"input_text","text":"hello"}]}]}`,
	} {
		if k := ResponsesPrefixKey([]byte(body), 0); k != chat || k == 0 {
			t.Errorf("%s: %x, chat's %x", body, k, chat)
		}
	}
	if ResponsesPrefixKey([]byte(`{"model":"m"}`), 0) != 0 {
		t.Error("no prompt, a key")
	}
}

func FuzzParseResponsesRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","input":"hi","stream":true,"max_output_tokens":7}`))
	f.Add([]byte(`{"model":"m","input":[{"role":"user","content":"a"}],"instructions":"s","previous_response_id":"resp_1","store":false}`))
	f.Add([]byte(`{"model":"m","Input":"x","background":true,"temperature":0.5}`))
	f.Add([]byte("{\"model\":\"m\",\"input\":\"\xff\"}"))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, rp, err := ParseResponsesRequest(body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is not an API error: %T %v", err, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("invalid JSON accepted: %q", body)
		}
		if p.MaxTokens < 0 || p.MaxTokens > MaxTokensLimit || p.API != APIResponses || p.Deterministic {
			t.Fatalf("peek out of range accepted: %+v", p)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted body is not an object: %v", err)
		}
		for k := range m {
			for _, f := range responsesActedOn {
				if k != f && strings.EqualFold(k, f) {
					t.Fatalf("ambiguous key %q accepted", k)
				}
			}
		}
		var want struct {
			Model              *string         `json:"model"`
			PreviousResponseID *string         `json:"previous_response_id"`
			Input              json.RawMessage `json:"input"`
		}
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("accepted body does not decode: %v", err)
		}
		if !utf8.Valid(body) {
			t.Fatalf("a body that is not UTF-8 accepted: %q", body)
		}
		if want.Model != nil && *want.Model != p.Model {
			t.Fatalf("model %q, decoder %q", p.Model, *want.Model)
		}
		if want.PreviousResponseID != nil && *want.PreviousResponseID != rp.PreviousResponseID {
			t.Fatalf("previous_response_id %q, decoder %q", rp.PreviousResponseID, *want.PreviousResponseID)
		}
		ResponsesPrefixKey(body, 64)
	})
}

func FuzzResponseEvent(f *testing.F) {
	f.Add([]byte(`{"type":"response.completed","response":{"id":"r","object":"response","usage":{"input_tokens":1,"output_tokens":2}}}`))
	f.Add([]byte(`{"type":"error","message":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !ValidObject(data) {
			FindResponseUsage(data) // any tail: must not panic
			new(IDScan).Write(data)
			return
		}
		_, resp := ResponseEvent(data)
		if resp != nil && !json.Valid(resp) {
			t.Fatalf("response member %q is not a value", resp)
		}
		ReadResponse(data)
		FindResponseUsage(data)
		if seq, ok := EventSequence(data); ok {
			var ev struct {
				Seq json.Number `json:"sequence_number"`
			}
			if err := json.Unmarshal(data, &ev); err != nil || ev.Seq.String() != strconv.FormatInt(seq, 10) {
				t.Fatalf("sequence %d of %q", seq, data)
			}
		}
	})
}

func TestResponseFromStream(t *testing.T) {
	stream := "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"status\":\"in_progress\"}}\n\n" +
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n" +
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\"}}\n\n"
	got, err := ResponseFromStream([]byte(stream))
	if err != nil || string(got) != `{"id":"r","status":"completed"}` {
		t.Fatalf("%s %v", got, err)
	}
	if _, err := ResponseFromStream([]byte(stream[:strings.Index(stream, "event: response.completed")])); !errors.Is(err, ErrStreamIncomplete) {
		t.Fatalf("no final event: %v", err)
	}
}
