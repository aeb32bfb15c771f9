package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// A client whose base URL lacks /v1 is told where to send: the 404 said
// only "Unknown request URL: POST /chat/completions". Other unknown paths
// get no hint, and nothing reaches the backend.
func TestUnknownURLWithoutV1SaysWhere(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	for path, hint := range map[string]string{
		"/chat/completions":  "(did you mean /v1/chat/completions? An OpenAI client's base URL ends in /v1)",
		"/embeddings":        "(did you mean /v1/embeddings?",
		"/models/m1":         "(did you mean /v1/models/m1?",
		"/files/file-1/x":    "(did you mean /v1/files/file-1/x?",
		"/chat/completions/": "",
		"/v1/nothing":        "",
		"/nothing":           "",
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(`{"model":"m1"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		_, code, msg := apiErr(t, body)
		want := "Unknown request URL: POST " + path
		if hint != "" {
			want += " " + hint
		}
		if resp.StatusCode != http.StatusNotFound || code != "unknown_url" || !strings.HasPrefix(msg, want) ||
			(hint == "" && msg != want) {
			t.Errorf("POST %s: %d %s, want 404 %q", path, resp.StatusCode, body, want)
		}
	}
	select {
	case b := <-be.bodies:
		t.Fatalf("an unknown URL reached the backend: %s", b)
	default:
	}
}
