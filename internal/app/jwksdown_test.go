package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
)

// An issuer whose key set is down when the gateway starts: the gateway
// cannot judge any token. It answered every valid token 401 "Invalid
// bearer token." (which an SDK takes for a wrong key and never retries)
// while /readyz said 200, so a load balancer sent it the clients it
// refused. Now such a token is a 503 auth_keys_unavailable with
// Retry-After and no challenge, and /readyz is 503 with "jwks":
// "unavailable" until the key set is fetched (the periodic refresh asks
// again every jwks_min_refresh while it fails); then 200 and served. A key
// set a reload makes does not hold readiness (every replica takes a reload
// at once), though its tokens are answered 503 alike.
func TestIssuerDownAtStartIsA503AndNotReady(t *testing.T) {
	is, issuer, down := switchableIssuer(t)
	down.Store(true)
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(url string) {
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
			"auth:\n  require_key: true\n  jwt:\n    jwks_url: " + url + "\n    jwks_min_refresh: 200ms\n    jwks_timeout: 2s\n" +
			"    issuer: https://idp.test/\n    audience: sluice\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	write(issuer.URL + "/jwks.json")
	a := newApp(t, path)
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	token := is.RS256(t, jwt.MapClaims{"iss": "https://idp.test/", "aud": "sluice", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	send := func() (*http.Response, map[string]any) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m1","messages":[]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}
	ready := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			JWKS string `json:"jwks"`
		}
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &body)
		return resp.StatusCode, body.JWKS
	}

	if code, state := ready(); code != 503 || state != "unavailable" {
		t.Fatalf("issuer down at start: /readyz %d jwks %q, want 503 unavailable", code, state)
	}
	resp, body := send()
	e, _ := body["error"].(map[string]any)
	if resp.StatusCode != 503 || e["code"] != "auth_keys_unavailable" || e["type"] != "server_error" ||
		resp.Header.Get("Retry-After") == "" || resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("valid token, issuer never reached: %d %v Retry-After %q WWW-Authenticate %q, want 503 auth_keys_unavailable, Retry-After, no challenge",
			resp.StatusCode, body, resp.Header.Get("Retry-After"), resp.Header.Get("WWW-Authenticate"))
	}

	down.Store(false) // the periodic refresh finds it within jwks_min_refresh
	eventually(t, "/readyz 200 once the key set is fetched", func() bool {
		code, state := ready()
		return code == 200 && state == "ok"
	})
	if resp, body := send(); resp.StatusCode != 200 {
		t.Fatalf("issuer back: %d %v", resp.StatusCode, body)
	}

	// A reload to a key set that cannot be fetched: its tokens are 503,
	// the replica stays ready.
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) }))
	defer gone.Close()
	write(gone.URL + "/jwks.json")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, state := ready(); code != 200 || state != "unavailable" {
		t.Fatalf("after a reload to a key set never fetched: /readyz %d jwks %q, want 200 unavailable", code, state)
	}
	if resp, body := send(); resp.StatusCode != 503 {
		t.Fatalf("after the reload: %d %v, want 503", resp.StatusCode, body)
	}
}

// switchableIssuer is a test issuer's key set behind a server that
// answers 503 while down is set; both close when the test ends.
func switchableIssuer(t *testing.T) (is *jwttest.Issuer, issuer *httptest.Server, down *atomic.Bool) {
	is, down = jwttest.New(t), new(atomic.Bool)
	issuer = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		is.Server.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(issuer.Close)
	return is, issuer, down
}
