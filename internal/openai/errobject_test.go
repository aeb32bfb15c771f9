package openai

import "testing"

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
