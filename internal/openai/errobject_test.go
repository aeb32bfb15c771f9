package openai

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestErrorObject(t *testing.T) {
	for in, want := range map[string]bool{
		`{"error":{"message":"oom","type":"server_error"}}`:                                 true,
		` { "error" : "overloaded" } `:                                                      true,
		`{"object":"error","message":"CUDA out of memory","code":500}`:                      true,
		`{"id":"x","object":"chat.completion","choices":[],"error":null}`:                   false,
		`{"id":"x","object":"chat.completion","choices":[{"message":{"content":"error"}}]}`: false,
		`{"id":"x","choices":[{"delta":{"content":"\"error\": 1"}}]}`:                       false,
		`{"data":[{"object":"error"}]}`:                                                     false,
		`{}`:                                                                                false,
	} {
		if got := ErrorObject([]byte(in)); got != want {
			t.Errorf("ErrorObject(%s) = %v, want %v", in, got, want)
		}
	}
}

func TestEmptyObject(t *testing.T) {
	for in, want := range map[string]bool{
		`{}`:               true,
		" {\n\t} ":         true,
		`{"id":"x"}`:       false,
		`{ "choices":[] }`: false,
		`[]`:               false,
		``:                 false,
		`{`:                false,
	} {
		if got := EmptyObject([]byte(in)); got != want {
			t.Errorf("EmptyObject(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzErrorObject: on any valid JSON object, ErrorObject agrees with a
// full decode: a top-level "error" member that is not null, or "object"
// equal to "error". Left out: duplicate or case-variant "error"/"object"
// keys (which one a decoder keeps is its own choice) and escapes (matched
// as written, ErrorObject's stated rule).
func FuzzErrorObject(f *testing.F) {
	for _, s := range []string{`{"error":{"message":"x"}}`, `{"object":"error"}`, `{"error":null}`,
		`{"object":"chat.completion","choices":[{"message":{"content":"error\""}}]}`, `{"a":"error\"","b":{"error":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		var m map[string]json.RawMessage
		if bytes.IndexByte(obj, '\\') >= 0 || !ValidObject(obj) || json.Unmarshal(obj, &m) != nil || CheckKeys(obj, "error", "object") != nil {
			return
		}
		var object string
		json.Unmarshal(m["object"], &object)
		errVal, hasErr := m["error"]
		want := hasErr && string(errVal) != "null" || object == "error"
		if got := ErrorObject(obj); got != want {
			t.Fatalf("ErrorObject(%s) = %v, decoded says %v", obj, got, want)
		}
	})
}

// TestCheckAnswer: CheckAnswer says what ValidObject and ErrorObject say,
// on ErrorObject's table and on bodies that are not one object.
func TestCheckAnswer(t *testing.T) {
	for _, in := range []string{
		`{"error":{"message":"oom","type":"server_error"}}`, ` { "error" : "overloaded" } `,
		`{"object":"error","message":"CUDA out of memory","code":500}`, `{"object" : "error"}`,
		`{"id":"x","object":"chat.completion","choices":[],"error":null}`, `{"error" :null, "object":"errors"}`,
		`{"id":"x","object":"chat.completion","choices":[{"message":{"content":"error"}}]}`,
		`{"id":"x","choices":[{"delta":{"content":"\"error\": 1"}}]}`, `{"data":[{"object":"error"}]}`,
		`{"errors":1,"objects":"error","error_":2}`, `{"a":{"error":1},"b":[{"error":2}]}`, `{}`,
		`{"error":1`, `{"error":nul}`, `[{"error":1}]`, `"error"`, ``, `{"error":1} x`,
	} {
		valid, errObj := CheckAnswer([]byte(in))
		wantValid := ValidObject([]byte(in))
		if valid != wantValid || valid && errObj != ErrorObject([]byte(in)) {
			t.Errorf("CheckAnswer(%s) = %v, %v; ValidObject %v, ErrorObject %v", in, valid, errObj, wantValid, wantValid && ErrorObject([]byte(in)))
		}
	}
}

// FuzzCheckAnswer: on any bytes, CheckAnswer agrees with ValidObject, and
// on a valid object with ErrorObject.
func FuzzCheckAnswer(f *testing.F) {
	for _, s := range []string{`{"error":{"message":"x"}}`, `{"object":"error"}`, `{"error":null}`, `{"a":"error\"","b":{"error":1}}`,
		`{"object":"chat.completion","choices":[{"message":{"content":"error\""}}]}`, `{"e\u0072ror":1}`, `[1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		valid, errObj := CheckAnswer(b)
		if valid != ValidObject(b) {
			t.Fatalf("CheckAnswer(%q) valid = %v, ValidObject says %v", b, valid, !valid)
		}
		if valid && errObj != ErrorObject(b) {
			t.Fatalf("CheckAnswer(%q) errorObject = %v, ErrorObject says %v", b, errObj, !errObj)
		}
	})
}
