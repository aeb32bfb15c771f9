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
	const (
		corpEntry    = "{name: corp, issuer: c, audience: a, hmac_secret: 0123456789abcdef0123456789abcdef, algorithms: [HS256], shared_tenants: []}"
		partnerEntry = "{name: partner, issuer: p, audience: a, hmac_secret: 0123456789abcdef0123456789abcdef, algorithms: [HS256], shared_tenants: [ops]}"
	)
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
			[]string{"\"acme\"", "no issuer's shared_tenants matches it", "tokens': jwt:<claim>"}},
		{"ip open mode", "ip:127.0.0.10", "", nil},
		{"ip key required", "ip:127.0.0.10", "auth: {require_key: true, keys: [{key: k1-7c3f09a1d54e82b6f0a3, tenant: acme}]}\n",
			[]string{"\"ip:127.0.0.10\"", "auth.require_key refuses"}},
		// Several issuers: tokens' tenants are jwt:<name>:<claim>, and
		// what an entry shares is its own list (auth.jwt's only the
		// default of an entry writing none). Before, "ops" (shared by
		// partner) was warned about, and jwt:alice and jwt:nosuch:x,
		// which no token can have, were not.
		{"issuers own shared", "ops", "auth: {require_key: true, jwt: {shared_tenants: [top], issuers: [" + corpEntry + ", " + partnerEntry + "]}}\n", nil},
		{"issuers namespaced", "jwt:partner:alice", "auth: {require_key: true, jwt: {issuers: [" + corpEntry + ", " + partnerEntry + "]}}\n", nil},
		{"issuers top shared overridden", "top", "auth: {require_key: true, jwt: {shared_tenants: [top], issuers: [" + corpEntry + ", " + partnerEntry + "]}}\n",
			[]string{"\"top\"", "no issuer's shared_tenants matches it", "jwt:<name>:<claim>, <name> one of corp, partner"}},
		{"issuers top shared inherited", "top", "auth: {require_key: true, jwt: {shared_tenants: [top], issuers: [" + corpEntry + ", " + strings.Replace(partnerEntry, ", shared_tenants: [ops]", "", 1) + "]}}\n", nil},
		{"issuers unprefixed", "jwt:alice", "auth: {require_key: true, jwt: {issuers: [" + corpEntry + ", " + partnerEntry + "]}}\n",
			[]string{"\"jwt:alice\"", "with several auth.jwt.issuers a token's tenant is \"jwt:<name>:<claim>"}},
		{"issuers unknown name", "jwt:nosuch:x", "auth: {require_key: true, jwt: {issuers: [" + corpEntry + ", " + partnerEntry + "]}}\n",
			[]string{"\"jwt:nosuch:x\"", "no auth.jwt.issuers entry is named \"nosuch\""}},
		{"one issuer colon claim", "jwt:corp:alice", "auth: {require_key: true, jwt: {issuers: [" + corpEntry + "]}}\n", nil},
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
