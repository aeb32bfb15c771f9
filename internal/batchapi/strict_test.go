package batchapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestBatchLinesReadStrictly: a batch line whose body the backend would
// read differently from Go's decoder ("model" and "Model"), or whose own
// keys are ambiguous, is refused on its line when the file is uploaded or
// used, naming the line and the key; a create-batch type error names the
// JSON type, not a Go one.
func TestBatchLinesReadStrictly(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct{ line, want string }{
		{`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m1","Model":"m2","messages":[]}}`, `"Model" differs only in case from "model"`},
		{`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m1","max_tokens":"9"}}`, "max_tokens must be an integer"},
		{`{"custom_id":"a","Custom_ID":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m1"}}`, `"Custom_ID" differs only in case`},
		{`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m1"},"body":{"model":"m2"}}`, `"body" appears more than once`},
	} {
		r := e.upload([]byte(tc.line + "\n"))
		if r.status == http.StatusOK {
			var f struct {
				ID string `json:"id"`
			}
			r.json(t, &f)
			r = e.postJSON("/v1/batches", map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
		}
		er := r.wantError(t, http.StatusBadRequest)
		if !strings.Contains(er.Error.Message, tc.want) || !strings.Contains(er.Error.Message, "line 1") {
			t.Errorf("%s: %q, want the line and %q", tc.line, er.Error.Message, tc.want)
		}
	}
	er := e.postJSON("/v1/batches", map[string]any{"input_file_id": 7, "endpoint": "/v1/chat/completions"}).wantError(t, http.StatusBadRequest)
	if msg := er.Error.Message; !strings.Contains(msg, "expected a string") || strings.Contains(msg, "*string") {
		t.Errorf("type error %q", msg)
	}
	er = e.postJSON("/v1/batches", map[string]any{"metadata": []int{1}}).wantError(t, http.StatusBadRequest)
	if msg := er.Error.Message; !strings.Contains(msg, "an object of strings") || strings.Contains(msg, "map[") {
		t.Errorf("type error %q", msg)
	}
	er = e.do(e.tenant, http.MethodPost, "/v1/batches", "application/json", strings.NewReader(`{"endpoint": tru}`)).wantError(t, http.StatusBadRequest)
	if msg := er.Error.Message; strings.Contains(msg, "invalid character") || !strings.Contains(msg, "byte") {
		t.Errorf("syntax error %q", msg)
	}
}
