package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A queue.batch_webhooks tenant no caller can have (a typo of an
// auth.keys tenant, a jwt: tenant without auth.jwt, an ip: tenant when
// every caller needs a key, a key: tenant when every key names its own)
// is warned about, with the file, its line and key path and the tenants
// known; the file still loads. Before, the endpoint silently received
// nothing for it.
func TestBatchWebhookTenantNoCallerHasIsWarned(t *testing.T) {
	const head = "queue:\n  webhook_secret: s\n  batch_webhooks:\n    - url: https://hooks.example/a\n      tenants: [%s]\n"
	for _, c := range []struct {
		name, tenants, auth string
		want                []string // substrings of the one warning; none: no warning
	}{
		{"typo", "acmee", "auth: {require_key: true, keys: [{key: k1-7c3f09a1d54e82b6f0a3, tenant: acme}, {key: k2-5e8a1c7d20f49b36e1d8, tenant: globex}]}\n",
			[]string{"FILE:5: queue.batch_webhooks[0].tenants[0]: \"acmee\" is no tenant a caller can have", "auth.keys' tenants: acme, globex"}},
		{"key tenant", "acme", "auth: {require_key: true, keys: [{key: k1-7c3f09a1d54e82b6f0a3, tenant: acme}]}\n", nil},
		{"jwt without jwt", "jwt:acme", "auth: {require_key: true, keys: [{key: k1-7c3f09a1d54e82b6f0a3, tenant: acme}]}\n",
			[]string{"\"jwt:acme\"", "auth.jwt is not configured"}},
		{"jwt tenant", "jwt:acme", "auth: {require_key: true, jwt: {hmac_secret: 0123456789abcdef0123456789abcdef, algorithms: [HS256], issuer: i, audience: a}}\n", nil},
		{"jwt shared", "acme", "auth: {require_key: true, jwt: {hmac_secret: 0123456789abcdef0123456789abcdef, algorithms: [HS256], issuer: i, audience: a, shared_tenants: [\"ac*\"]}}\n", nil},
		{"jwt plain", "acme", "auth: {require_key: true, jwt: {hmac_secret: 0123456789abcdef0123456789abcdef, algorithms: [HS256], issuer: i, audience: a}}\n",
			[]string{"\"acme\"", "shared_tenants does not match it", "tokens': jwt:<claim>"}},
		{"ip open mode", "ip:127.0.0.10", "", nil},
		{"ip key required", "ip:127.0.0.10", "auth: {require_key: true, keys: [{key: k1-7c3f09a1d54e82b6f0a3, tenant: acme}]}\n",
			[]string{"\"ip:127.0.0.10\"", "auth.require_key refuses"}},
		{"key own", "key:0123abcd", "auth: {keys: [{key: k1-7c3f09a1d54e82b6f0a3}]}\n", nil},
		{"key named", "key:0123abcd", "auth: {keys: [{key: k1-7c3f09a1d54e82b6f0a3, tenant: acme}]}\n", []string{"\"key:0123abcd\"", "every auth.keys entry names"}},
	} {
		path := filepath.Join(t.TempDir(), "sluice.yaml")
		src := strings.Replace(head, "%s", c.tenants, 1) + c.auth + minimal
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		w := cfg.Warnings()
		if c.want == nil {
			if len(w) != 0 {
				t.Errorf("%s: warnings %q, want none", c.name, w)
			}
			continue
		}
		if len(w) != 1 {
			t.Errorf("%s: warnings %q, want one", c.name, w)
			continue
		}
		for _, s := range c.want {
			if !strings.Contains(w[0], strings.Replace(s, "FILE", path, 1)) {
				t.Errorf("%s: warning %q, want %q in it", c.name, w[0], s)
			}
		}
	}
}
