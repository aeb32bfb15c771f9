package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// Every 401 carries WWW-Authenticate (RFC 9110 11.6.1 requires one), with
// RFC 6750's error code: none for a request with no credential,
// invalid_token for a key that is not listed (as for a refused JWT),
// invalid_request for two Authorization headers. Before, only refused JWTs
// had one; refused API keys, on the inference routes and the Responses follow-ups,
// had none. The body is unchanged.
func TestRefusedKeysCarryABearerChallenge(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Auth = config.Auth{RequireKey: true, Keys: []config.Tenant{{Key: "sk-good", Tenant: "team"}}}
	srv, _ := startGateway(t, cfg)
	for _, path := range []string{"/v1/chat/completions", "/v1/responses/resp_x"} {
		for _, c := range []struct {
			name  string
			auth  []string
			want  string
			inMsg string
		}{
			{"none", nil, `Bearer`, "Incorrect or missing API key"},
			{"unlisted", []string{"Bearer sk-bad"}, `Bearer error="invalid_token"`, "Incorrect or missing API key"},
			{"basic", []string{"Basic c2stZ29vZA=="}, `Bearer error="invalid_token"`, "Incorrect or missing API key"},
			{"two", []string{"Bearer sk-good", "Bearer sk-good"}, `Bearer error="invalid_request"`, "more than one Authorization"},
		} {
			method := http.MethodPost
			if strings.HasPrefix(path, "/v1/responses/") {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(chatBody))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			for _, a := range c.auth {
				req.Header.Add("Authorization", a)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s %s: status %d", path, c.name, resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != c.want {
				t.Errorf("%s %s: WWW-Authenticate %q, want %q", path, c.name, got, c.want)
			}
			_, code, msg := apiErr(t, body)
			if code != "invalid_api_key" || !strings.Contains(msg, c.inMsg) {
				t.Errorf("%s %s: code %q message %q", path, c.name, code, msg)
			}
		}
	}
}
