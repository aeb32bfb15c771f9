package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
)

// An error message quotes what the client sent cut to openai.MaxEcho
// bytes, with the count left out: a 1 MiB model name is a 404 of a few
// hundred bytes, not of 1 MiB (before, the whole name came back), and so
// are a long unknown path, a long model id in /v1/models/{id}, and a 405's path.
func TestErrorMessagesClipClientInput(t *testing.T) {
	srv, _ := startGateway(t, testConfig(newOKBackend(t).URL))
	long := strings.Repeat("x", 1<<20)
	path := "/" + strings.Repeat("p", 16<<10)
	cases := []struct {
		name, method, url, body string
		status                  int
		code                    string
	}{
		{"model", http.MethodPost, "/v1/chat/completions", `{"model":"` + long + `","messages":[{"role":"user","content":"hi"}]}`, 404, "model_not_found"},
		{"models id", http.MethodGet, "/v1/models/" + strings.Repeat("m", 16<<10), "", 404, "model_not_found"},
		{"unknown url", http.MethodGet, path, "", 404, "unknown_url"},
		{"method", http.MethodDelete, "/v1/models/" + strings.Repeat("f", 16<<10), "", 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, tc.method, srv.URL+tc.url, tc.body)
			got := readAll(t, resp)
			_, code, msg := apiErr(t, got)
			if resp.StatusCode != tc.status || code != tc.code {
				t.Fatalf("%d %q: %.300s", resp.StatusCode, code, got)
			}
			if len(msg) > openai.MaxEcho+200 {
				t.Fatalf("message of %d bytes: %.400s", len(msg), msg)
			}
			if len(tc.url)+len(tc.body) > 8<<10 && !strings.Contains(msg, " bytes]") {
				t.Fatalf("no marker of the cut: %.400s", msg)
			}
		})
	}
}
