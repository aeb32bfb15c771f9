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

// An upload that is not a multipart form, or one that does not parse, is
// answered as the audio routes answer it (openai.NotMultipart,
// openai.BadMultipart): the same code and param on every form route.
func TestUploadNotAFormAnswers(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, c := range []struct{ contentType, body, want string }{
		{"application/json", "{}",
			`{"error":{"message":"the request must be multipart/form-data with a boundary, with the fields 'file' and 'purpose'","type":"invalid_request_error","param":"Content-Type","code":"invalid_content_type"}}`},
		{"multipart/form-data; boundary=XX", "--YY\r\n",
			`{"error":{"message":"We could not parse the multipart/form-data body of your request","type":"invalid_request_error","param":null,"code":"invalid_multipart"}}`},
	} {
		r := e.do(e.tenant, http.MethodPost, "/v1/files", c.contentType, strings.NewReader(c.body))
		r.wantError(t, http.StatusBadRequest)
		if got := strings.TrimSpace(string(r.body)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.contentType, got, c.want)
		}
	}
}
