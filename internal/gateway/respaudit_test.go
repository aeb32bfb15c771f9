package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// Found by the black-box audit of the Responses API (docs/RELIABILITY.md).

// A follow-up path that names no response — a dot segment, which the
// backend would resolve to another of its URLs (/v1/responses/.. is /v1),
// or a trailing slash, which its router answers in its own words — is the
// gateway's 404 unknown_url, and reaches no backend.
func TestResponsesFollowUpPathsThatNameNoResponse(t *testing.T) {
	b := newRespBackend(t, "a")
	b.held["resp_1"] = true
	srv, _ := respGateway(t, nil, b)
	if resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_1", ""); readAll(t, resp) == "" || resp.StatusCode != 200 {
		t.Fatalf("GET resp_1: %d", resp.StatusCode)
	}
	_, before := b.counts()
	for _, path := range []string{"/v1/responses/..", "/v1/responses/%2E%2E", "/v1/responses/.", "/v1/responses/../input_items",
		"/v1/responses/resp_1/", "/v1/responses/resp_1/input_items/"} {
		resp := do(t, http.MethodGet, srv.URL+path, "")
		got := readAll(t, resp)
		if resp.StatusCode != 404 || !strings.Contains(got, `"code":"unknown_url"`) || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, got)
		}
	}
	if _, asked := b.counts(); asked != before {
		t.Fatalf("the backend was asked %d times about paths that name no response", asked-before)
	}
}
