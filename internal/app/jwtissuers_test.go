package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// issuersApp starts the app from a file with two issuers, corp and
// partner, each with its own JWKS server, and per-key and per-tenant
// limits of one request a minute: a second request in a bucket is 429.
func issuersApp(t *testing.T, corp, partner *jwttest.Issuer) (a *App, send func(bearer string) int, get func(path string) (int, string)) {
	t.Helper()
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
		"auth:\n  require_key: true\n  jwt:\n    issuers:\n" +
		"      - {name: corp, issuer: https://corp.test/, audience: sluice, jwks_url: " + corp.URL() + "}\n" +
		"      - {name: partner, issuer: https://partner.test/, audience: sluice, jwks_url: " + partner.URL() + "}\n" +
		"rate_limits:\n  per_key: {requests: \"rate=1r/m burst=0 nodelay\"}\n  per_tenant: {requests: \"rate=1r/m burst=0 nodelay\"}\n" +
		"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
	writeFile(t, path, src)
	a = newApp(t, path)
	t.Cleanup(a.release)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	send = func(bearer string) int {
		code, _ := chatWithBearer(t, srv.URL, bearer)
		return code
	}
	get = func(p string) (int, string) {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	return a, send, get
}

func issuerToken(t *testing.T, is *jwttest.Issuer, iss, sub string) string {
	return is.RS256(t, jwt.MapClaims{"iss": iss, "aud": "sluice", "sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
}

// Two providers' sub=alice are two tenants and two keys: corp's alice
// spends her buckets, partner's alice still has hers. An iss no issuer
// names is a 401 saying nothing of why.
func TestTwoIssuersSameSubjectAreTwoTenants(t *testing.T) {
	corp, partner := jwttest.New(t), jwttest.New(t)
	_, send, _ := issuersApp(t, corp, partner)
	a := issuerToken(t, corp, "https://corp.test/", "alice")
	if c := send(a); c != 200 {
		t.Fatalf("corp's alice: %d", c)
	}
	if c := send(a); c != 429 {
		t.Fatalf("corp's alice again (her buckets spent): %d", c)
	}
	if c := send(issuerToken(t, partner, "https://partner.test/", "alice")); c != 200 {
		t.Fatalf("partner's alice after corp's spent hers: %d (one bucket for both)", c)
	}
	if c := send(issuerToken(t, corp, "https://other.test/", "bob")); c != 401 {
		t.Fatalf("unknown iss: %d", c)
	}
}

// One provider's key set down from the start: its tokens are 503
// (keys_unavailable), the other's are served, and the replica is ready
// (/readyz names the issuer that is down, and so does the freshness
// gauge: the down one's series is 0, the other's a fetch time).
func TestIssuerJWKSDownOthersServed(t *testing.T) {
	corp, partner := jwttest.New(t), jwttest.New(t)
	partner.Server.Close()
	a, send, get := issuersApp(t, corp, partner)
	if c := send(issuerToken(t, corp, "https://corp.test/", "alice")); c != 200 {
		t.Fatalf("corp's token while partner's JWKS is down: %d", c)
	}
	if c := send(issuerToken(t, partner, "https://partner.test/", "bob")); c != 503 {
		t.Fatalf("partner's token while its JWKS is down: %d", c)
	}
	code, body := get("/readyz")
	if code != 200 || !strings.Contains(body, `"corp": "ok"`) || !strings.Contains(body, `"partner": "unavailable"`) {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	rec := httptest.NewRecorder()
	a.AdminHandler().ServeHTTP(rec, adminRequest(http.MethodGet, "/metrics"))
	metrics := rec.Body.String()
	for _, want := range []string{
		`sluice_auth_jwks_last_fetch_timestamp_seconds{issuer="corp"} 1`, // a recent Unix time
		`sluice_auth_jwks_last_fetch_timestamp_seconds{issuer="partner"} 0` + "\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %s:\n%s", want, grepLines(metrics, "sluice_auth_jwks"))
		}
	}
}

// A reload builds the issuers aside: a provider whose settings are
// unchanged keeps its key set (no fetch), one whose settings change gets a
// new one and its old one is closed (no goroutine survives), and both
// providers' tokens are served after the swap.
func TestReloadKeepsEachIssuersKeySetOnItsOwn(t *testing.T) {
	checkNoGoroutineLeftAtEnd(t)
	corp, partner := jwttest.New(t), jwttest.New(t)
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(partnerExtra string) {
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
			"auth:\n  require_key: true\n  jwt:\n    issuers:\n" +
			"      - {name: corp, issuer: https://corp.test/, audience: sluice, jwks_url: " + corp.URL() + "}\n" +
			"      - {name: partner, issuer: https://partner.test/, audience: sluice, jwks_url: " + partner.URL() + partnerExtra + "}\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	write("")
	a := newApp(t, path)
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	send := func(bearer string) int {
		code, _ := chatWithBearer(t, srv.URL, bearer)
		return code
	}
	before := append([]*auth.JWKS(nil), a.built.jwks...)
	write(", jwks_min_refresh: 2m")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	after := a.built.jwks
	if len(before) != 2 || len(after) != 2 || after[0] != before[0] || after[1] == before[1] {
		t.Fatalf("key sets: corp kept %v, partner replaced %v", after[0] == before[0], after[1] != before[1])
	}
	if corp.Hits() != 1 || partner.Hits() != 2 {
		t.Fatalf("fetches: corp %d (want 1: kept), partner %d (want 2: new settings)", corp.Hits(), partner.Hits())
	}
	if c := send(issuerToken(t, corp, "https://corp.test/", "alice")); c != 200 {
		t.Fatalf("corp's token after the reload: %d", c)
	}
	if c := send(issuerToken(t, partner, "https://partner.test/", "alice")); c != 200 {
		t.Fatalf("partner's token after the reload: %d", c)
	}
}

// The 503 for a token whose issuer's key set was never fetched named
// auth.jwt.jwks_url, a key a config with several issuers does not have.
// The client's text now names no config key (the entry's index is the
// gateway's layout); the access line's cause names the entry's key.
func TestKeysUnavailableNamesTheEntryInTheLogOnly(t *testing.T) {
	corp, partner := jwttest.New(t), jwttest.New(t)
	partner.Server.Close()
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\n" + noProbes + "queue: {enabled: false}\n" +
		"auth:\n  require_key: true\n  jwt:\n    issuers:\n" +
		"      - {name: corp, issuer: https://corp.test/, audience: sluice, jwks_url: " + corp.URL() + "}\n" +
		"      - {name: partner, issuer: https://partner.test/, audience: sluice, jwks_url: " + partner.URL() + "}\n" +
		"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
	writeFile(t, path, src)
	a, logs := newLoggedApp(t, path, config.Load)
	t.Cleanup(a.release)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m1","messages":[]}`))
	req.Header.Set("Authorization", "Bearer "+issuerToken(t, partner, "https://partner.test/", "bob"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"auth_keys_unavailable"`) {
		t.Fatalf("partner's token, its key set never fetched: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "auth.jwt") || !strings.Contains(string(body), "has not fetched the keys of the token's issuer") {
		t.Fatalf("the client's message names a config key, or not the issuer's keys: %s", body)
	}
	eventually(t, "the access line's cause names auth.jwt.issuers[1].jwks_url", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "status=503") && strings.Contains(line, "keys_unavailable") &&
				strings.Contains(line, "auth.jwt.issuers[1].jwks_url") {
				return true
			}
		}
		return false
	})
}
