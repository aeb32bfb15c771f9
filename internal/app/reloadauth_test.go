package app

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// authConfig writes a config of one model on be with auth (YAML lines
// under "auth:", none for no auth section).
func authConfig(t *testing.T, path, be, auth string) {
	t.Helper()
	src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n"
	if auth != "" {
		src += "auth:\n" + auth
	}
	src += fmt.Sprintf("models:\n  - name: m\n    backends:\n      - url: %s\n", be)
	writeFile(t, path, src)
}

// chatWith posts a chat request to url with authorization (none when "")
// and returns its status.
func chatWith(t *testing.T, url, authorization string) int {
	t.Helper()
	var hdr []string
	if authorization != "" {
		hdr = []string{"Authorization", authorization}
	}
	code, _, _ := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"q"}]}`), hdr...)
	return code
}

// A reload that leaves no credential to check (the last API key gone
// with no auth.jwt, or auth.jwt gone with no key) is refused: before, it
// was applied and the gateway served every caller, a removed or invented
// key and no key at all, as ip:<address> (200). Now the running keys stay
// in force, the reload is reported failed naming the key, its file and
// line, and saying a restart runs open.
func TestReloadToOpenModeIsRefused(t *testing.T) {
	const hmac = "    issuer: https://idp.test/\n    audience: sluice\n    hmac_secret: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n    algorithms: [HS256]\n"
	cases := []struct {
		name, start, next, want string
	}{
		{"keys removed with the auth section", "  require_key: true\n  keys: [{key: sk-a, tenant: acme}]\n", "",
			"sluice.yaml: auth.keys: the reload removes the last API key"},
		{"keys emptied", "  require_key: true\n  keys: [{key: sk-a, tenant: acme}]\n", "  keys: []\n",
			"sluice.yaml:6: auth.keys: the reload removes the last API key"},
		{"jwt removed, no keys", "  require_key: true\n  jwt:\n" + hmac, "  trusted_proxies: [10.0.0.0/8]\n",
			"sluice.yaml:5: auth.jwt: the reload removes auth.jwt and no API key is listed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be := backend(t, "a")
			path := filepath.Join(t.TempDir(), "sluice.yaml")
			authConfig(t, path, be.URL, c.start)
			a := newApp(t, path)
			defer a.release()
			url, _ := serveApp(t, a)
			admin := httptest.NewServer(a.AdminHandler())
			defer admin.Close()
			if code := chatWith(t, url, ""); code != http.StatusUnauthorized {
				t.Fatalf("no key before the reload: %d, want 401", code)
			}

			authConfig(t, path, be.URL, c.next)
			err := a.Reload()
			if code := chatWith(t, url, ""); code != http.StatusUnauthorized {
				t.Fatalf("no key after the reload: %d, want 401 (the running keys kept)", code)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "restart the gateway to run open") {
				t.Fatalf("reload: %v, want refused: %q, saying a restart runs open", err, c.want)
			}
			if code := chatWith(t, url, "Bearer sk-invented"); code != http.StatusUnauthorized {
				t.Fatalf("an unlisted key after the reload: %d, want 401", code)
			}
			if strings.HasPrefix(c.start, "  require_key: true\n  keys:") {
				if code := chatWith(t, url, "Bearer sk-a"); code != http.StatusOK {
					t.Fatalf("the kept key after the reload: %d, want 200", code)
				}
			}
			if s := configStatus(t, admin.URL); s.LastReloadSuccessful || s.LastRefusal == nil || !strings.Contains(s.LastRefusal.Error, c.want) {
				t.Fatalf("/status after the refusal: %+v", s)
			}
		})
	}
}

// Open mode chosen at start stays the zero-setup demo: a no-key request
// is served, reloads between open configs apply, and a reload that adds a
// key turns checking on (removing it again is then refused).
func TestOpenModeAtStartStaysOpen(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	authConfig(t, path, be.URL, "")
	a := newApp(t, path)
	defer a.release()
	url, _ := serveApp(t, a)
	if code := chatWith(t, url, "Bearer anything"); code != http.StatusOK {
		t.Fatalf("open mode at start: %d, want 200", code)
	}
	authConfig(t, path, be.URL, "  trusted_proxies: [10.0.0.0/8]\n")
	if err := a.Reload(); err != nil {
		t.Fatalf("a reload open to open: %v", err)
	}
	if code := chatWith(t, url, ""); code != http.StatusOK {
		t.Fatalf("after an open reload: %d, want 200", code)
	}
	authConfig(t, path, be.URL, "  require_key: true\n  keys: [{key: sk-a, tenant: acme}]\n")
	if err := a.Reload(); err != nil {
		t.Fatalf("a reload adding a key: %v", err)
	}
	if code := chatWith(t, url, ""); code != http.StatusUnauthorized {
		t.Fatalf("after a key was added: %d, want 401", code)
	}
	authConfig(t, path, be.URL, "")
	if err := a.Reload(); err == nil {
		t.Fatal("a reload removing the added key again: applied, want refused")
	}
}
