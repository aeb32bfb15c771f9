package batchapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// A wrong method on a Batch API route reads as on every other route: the
// method, the path, what to use (openai.MethodNotAllowed), with Allow.
func TestBatchAPIWrongMethodWording(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do(e.tenant, http.MethodPost, "/v1/files/file-x", "", nil)
	r.wantError(t, http.StatusMethodNotAllowed)
	want := `{"error":{"message":"POST is not allowed for /v1/files/file-x; use GET or DELETE","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}`
	if got := strings.TrimSpace(string(r.body)); got != want || r.header.Get("Allow") != "GET, DELETE" {
		t.Errorf("got %s (Allow %q)\nwant %s (Allow \"GET, DELETE\")", got, r.header.Get("Allow"), want)
	}
}
