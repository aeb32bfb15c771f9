package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
)

// A reload changing an issuer's jwks_* settings (here jwks_timeout) while
// its provider is down: the new key set's fetch fails, and it used to
// start empty, so the issuer's tokens, 200 a moment before, were 503
// auth_keys_unavailable until the provider came back. The keys of the
// same URL fetched before the reload now serve until the new settings'
// first fetch succeeds: 200 before and after, /readyz "degraded", the
// reload warned (the entry's key, "keys fetched before the reload"). The
// old source is closed by the swap as before (no goroutine survives the
// test), and the new one replaces the handed-over keys with its own once
// the provider is back. partner is untouched throughout.
func TestReloadOfJWKSSettingsKeepsTheKeysWhileTheProviderIsDown(t *testing.T) {
	checkNoGoroutineLeftAtEnd(t)
	corp, corpServer, down := switchableIssuer(t)
	partner := jwttest.New(t)
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(corpExtra string) {
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
			"auth:\n  require_key: true\n  jwt:\n    jwks_min_refresh: 200ms\n    issuers:\n" +
			"      - {name: corp, issuer: https://corp.test/, audience: sluice, jwks_url: " + corpServer.URL + "/jwks.json" + corpExtra + "}\n" +
			"      - {name: partner, issuer: https://partner.test/, audience: sluice, jwks_url: " + partner.URL() + "}\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	write("")
	a := newApp(t, path)
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	admin := httptest.NewServer(a.AdminHandler())
	defer admin.Close()
	send := func(token string) (int, string) { return chatWithBearer(t, srv.URL, token) }
	readyz := func() string {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	corpToken := issuerToken(t, corp, "https://corp.test/", "alice")
	partnerToken := issuerToken(t, partner, "https://partner.test/", "bob")
	if c, body := send(corpToken); c != 200 {
		t.Fatalf("corp's token before the reload: %d %s", c, body)
	}

	down.Store(true)
	before := append([]*auth.JWKS(nil), a.built.jwks...)
	write(", jwks_timeout: 3s")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	after := a.built.jwks
	if len(after) != 2 || after[0] == before[0] || after[1] != before[1] {
		t.Fatalf("key sets after the reload: corp replaced %v (want true: new settings), partner kept %v", after[0] != before[0], after[1] == before[1])
	}
	if !after[0].HandedOver() {
		t.Fatal("corp's new key set holds no handed-over keys")
	}
	if c, body := send(corpToken); c != 200 {
		t.Fatalf("corp's token after a reload of its jwks_timeout, its provider down: %d %s, want 200 (the keys held before)", c, body)
	}
	if c, body := send(partnerToken); c != 200 {
		t.Fatalf("partner's token: %d %s", c, body)
	}
	if r := readyz(); !strings.Contains(r, `"corp": "degraded"`) || !strings.Contains(r, `"partner": "ok"`) {
		t.Fatalf("/readyz: %s", r)
	}
	s := configStatus(t, admin.URL)
	if len(s.LastReloadWarnings) != 1 || !strings.Contains(s.LastReloadWarnings[0], "auth.jwt.issuers[0].jwks_url") ||
		!strings.Contains(s.LastReloadWarnings[0], "keys fetched before the reload") {
		t.Fatalf("reload warnings %q", s.LastReloadWarnings)
	}

	down.Store(false) // retried every jwks_min_refresh while failing
	eventually(t, "corp's new key set fetches its own keys", func() bool { return !after[0].HandedOver() })
	if r := readyz(); !strings.Contains(r, `"corp": "ok"`) {
		t.Fatalf("/readyz with the provider back: %s", r)
	}
	if c, body := send(corpToken); c != 200 {
		t.Fatalf("corp's token with its own keys: %d %s", c, body)
	}
}
