package app

import (
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// A reload to a jwks_url whose key set cannot be fetched is applied (its
// tokens answered 503 auth_keys_unavailable, the replica ready), and now
// says so where an operator looks: the reload's own line is a warning
// naming auth.jwt.jwks_url, and /status's config carries it in
// last_reload_warnings, for as long as reloads find the key set never
// fetched. Before, the reload logged "config reloaded" at Info and /status
// said nothing; only the fetch's own line, "keeping the keys held" (none
// were), told of it.
func TestReloadToAnUnfetchableKeySetWarns(t *testing.T) {
	_, issuer, down := switchableIssuer(t)
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(jwksPath string) {
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
			"auth:\n  jwt:\n    jwks_url: " + issuer.URL + jwksPath + "\n    jwks_min_refresh: 200ms\n    jwks_timeout: 2s\n" +
			"    issuer: https://idp.test/\n    audience: sluice\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	write("/jwks.json")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := new(logbuf.Buffer)
	a, err := New(cfg, Source{Path: path}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.release()
	admin := httptest.NewServer(a.AdminHandler())
	defer admin.Close()
	status := func() gateway.ConfigStatus { return configStatus(t, admin.URL) }
	reload := func() {
		t.Helper()
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	warned := func(s gateway.ConfigStatus) bool {
		return len(s.LastReloadWarnings) == 1 && strings.Contains(s.LastReloadWarnings[0], "auth.jwt.jwks_url") &&
			strings.Contains(s.LastReloadWarnings[0], "auth_keys_unavailable")
	}

	down.Store(true)
	write("/jwks.json?v=2") // new settings: a new key set, fetched at the reload
	reload()
	if s := status(); !s.LastReloadSuccessful || !warned(s) {
		t.Fatalf("after a reload to a key set that cannot be fetched: /status config %+v, want applied with a jwks_url warning", s)
	}
	if out := logs.String(); !strings.Contains(out, `"level":"WARN","msg":"config reloaded with warnings"`) ||
		!strings.Contains(out, "no keys held") {
		t.Fatalf("reload log:\n%s", out)
	}
	reload() // the same file again: the key set kept, still never fetched
	if s := status(); !warned(s) {
		t.Fatalf("a second reload while the key set is still unfetched cleared the warning: %+v", s)
	}
	down.Store(false) // the refresh finds it within jwks_min_refresh
	eventually(t, "the reload's key set fetched", func() bool {
		j := firstJWKS(a.built)
		return j != nil && !j.Fetched().IsZero()
	})
	reload()
	if s := status(); len(s.LastReloadWarnings) != 0 {
		t.Fatalf("a reload with the key set fetched still warns: %+v", s)
	}
}

// A reload warning for an unfetched key set names the key path its URL was
// written at: with several issuers, the entry's (the first of a shared
// key set's), not auth.jwt.jwks_url, which such a config does not have.
func TestReloadWarningNamesTheIssuersKeyPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	load := func(jwt string) config.JWT {
		t.Helper()
		src := "listen: 127.0.0.1:0\n" + noProbes + "queue: {enabled: false}\nauth:\n  jwt:\n" + jwt +
			"models:\n  - name: m1\n    backends:\n      - url: http://127.0.0.1:9\n"
		writeFile(t, path, src)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Auth.JWT
	}
	several := load("    jwks_min_refresh: 200ms\n    issuers:\n" +
		"      - {name: corp, issuer: https://corp.test/, audience: sluice, hmac_secret: " + strings.Repeat("k", 32) + ", algorithms: [HS256]}\n" +
		"      - {name: partner, issuer: https://partner.test/, audience: sluice, jwks_url: https://partner.test/jwks.json}\n" +
		"      - {name: third, issuer: https://third.test/, audience: sluice, jwks_url: https://third.test/jwks.json}\n")
	ics := several.IssuerConfigs()
	for i, want := range map[int]string{1: "auth.jwt.issuers[1].jwks_url", 2: "auth.jwt.issuers[2].jwks_url"} {
		if got := jwksURLPath(several, auth.JWKSSettingsOf(ics[i].JWT)); got != want {
			t.Errorf("key set of issuers[%d]: warning names %q, want %q", i, got, want)
		}
	}
	single := load("    issuer: https://idp.test/\n    audience: sluice\n    jwks_url: https://idp.test/jwks.json\n")
	if got := jwksURLPath(single, auth.JWKSSettingsOf(single.IssuerConfigs()[0].JWT)); got != "auth.jwt.jwks_url" {
		t.Errorf("single form: warning names %q, want auth.jwt.jwks_url", got)
	}
}
