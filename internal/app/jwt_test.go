package app

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
)

// A config file with auth.jwt serves tokens from the issuer's key set; a
// reload that keeps the key set's settings keeps its cache (no fetch), one
// that changes them fetches anew and closes the old source; one whose
// static key file is missing is refused with the key named and changes
// nothing. No goroutine of a retired key set survives.
func TestJWTReloadKeepsOrReplacesTheKeySet(t *testing.T) {
	checkNoGoroutineLeftAtEnd(t)
	is := jwttest.New(t)
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(jwtExtra string) {
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
			"auth:\n  require_key: true\n  jwt:\n    jwks_url: " + is.URL() + "\n    issuer: https://idp.test/\n    audience: sluice\n" + jwtExtra +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	write("")
	a := newApp(t, path)
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	token := is.RS256(t, jwt.MapClaims{"iss": "https://idp.test/", "aud": "sluice", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	send := func(bearer string) int {
		code, _ := chatWithBearer(t, srv.URL, bearer)
		return code
	}
	if c := send(token); c != 200 {
		t.Fatalf("token: %d", c)
	}
	if c := send(""); c != 401 {
		t.Fatalf("no credential with require_key: %d", c)
	}
	first := firstJWKS(a.built)
	write("    leeway: 10s\n") // the verifier changes, the key set does not
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if firstJWKS(a.built) != first || is.Hits() != 1 {
		t.Fatalf("key set replaced (%v) or fetched again (%d hits) by a reload that kept its settings", firstJWKS(a.built) != first, is.Hits())
	}
	write("    public_keys: [{file: /nonexistent/k.pem}]\n")
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "auth.jwt.public_keys[0].file") {
		t.Fatalf("missing key file: %v", err)
	}
	if firstJWKS(a.built) != first {
		t.Fatal("a refused reload replaced the key set")
	}
	write("    jwks_min_refresh: 2m\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if firstJWKS(a.built) == first || is.Hits() != 2 {
		t.Fatalf("new settings: same source %v, hits %d (want a new source and one fetch)", firstJWKS(a.built) == first, is.Hits())
	}
	if c := send(token); c != 200 {
		t.Fatalf("token after reload: %d", c)
	}
}

// firstJWKS is bt's first key set source, nil when it has none.
func firstJWKS(bt *Built) *auth.JWKS {
	if len(bt.jwks) == 0 {
		return nil
	}
	return bt.jwks[0]
}

// chatWithBearer posts a chat request for m1 to the gateway at url with
// the bearer token (no Authorization header when "") and returns its
// status and body.
func chatWithBearer(t *testing.T, url, bearer string) (int, string) {
	t.Helper()
	var hdr []string
	if bearer != "" {
		hdr = []string{"Authorization", "Bearer " + bearer}
	}
	code, _, body := do(t, http.MethodPost, url+"/v1/chat/completions", "", strings.NewReader(`{"model":"m1","messages":[]}`), hdr...)
	return code, string(body)
}
