package gateway

import (
	"net/http"
	"testing"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// getModels asks path with the Authorization value authz ("" for none)
// and returns the answer's status, WWW-Authenticate, Cache-Control and
// error code.
func getModels(t *testing.T, url, path, authz string) (int, string, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	code := ""
	if resp.StatusCode != http.StatusOK {
		_, code, _ = apiErr(t, body)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Cache-Control"), code
}

// With require_key (or a JWT required) the model list and a model's
// entry are refused without a valid credential, as OpenAI's are and as
// the inference routes are here: 401 invalid_api_key with the same
// challenge; a valid key or token gets them, not for a shared cache.
// Before, both answered 200 (Cache-Control: public) to anyone.
func TestModelsNeedTheKeyInferenceNeeds(t *testing.T) {
	is := jwttest.New(t)
	be := newOKBackend(t)
	cfg := jwtConfig(is, be.URL)
	cfg.Auth.RequireKey = true
	srv, _ := startGateway(t, cfg)
	token := is.RS256(t, validClaims(nil))
	for _, path := range []string{"/v1/models", "/v1/models/m1"} {
		for _, c := range []struct {
			name, authz, challenge string
			status                 int
		}{
			{"none", "", `Bearer`, http.StatusUnauthorized},
			{"unlisted", "Bearer sk-bad", `Bearer error="invalid_token"`, http.StatusUnauthorized},
			{"bad token", "Bearer a.b.c", `Bearer error="invalid_token"`, http.StatusUnauthorized},
			{"key", "Bearer sk-team", "", http.StatusOK},
			{"token", "Bearer " + token, "", http.StatusOK},
		} {
			status, challenge, cache, code := getModels(t, srv.URL, path, c.authz)
			if status != c.status || challenge != c.challenge {
				t.Errorf("%s %s: %d %q %s, want %d %q", path, c.name, status, challenge, code, c.status, c.challenge)
			}
			if status == http.StatusUnauthorized && code != "invalid_api_key" {
				t.Errorf("%s %s: code %q", path, c.name, code)
			}
			if path == "/v1/models" && status == http.StatusOK && cache != "private, max-age=60" {
				t.Errorf("%s %s: Cache-Control %q", path, c.name, cache)
			}
		}
	}
}

// Keys without require_key: an anonymous caller is served, as on the
// inference routes, but a key presented and not listed is refused. Open
// mode (no keys) stays open and cacheable.
func TestModelsFollowTheInferenceAuthMode(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Auth = config.Auth{Keys: []config.Tenant{{Key: "sk-good", Tenant: "team"}}}
	srv, _ := startGateway(t, cfg)
	if status, _, _, _ := getModels(t, srv.URL, "/v1/models", ""); status != http.StatusOK {
		t.Errorf("keys, anonymous: %d, want 200", status)
	}
	if status, challenge, _, _ := getModels(t, srv.URL, "/v1/models", "Bearer sk-bad"); status != http.StatusUnauthorized || challenge == "" {
		t.Errorf("keys, unlisted key: %d %q, want 401 with a challenge", status, challenge)
	}
	open, _ := startGateway(t, testConfig(be.URL))
	if status, _, cache, _ := getModels(t, open.URL, "/v1/models", "Bearer anything"); status != http.StatusOK || cache != "public, max-age=60" {
		t.Errorf("open mode: %d %q, want 200 public", status, cache)
	}
}
