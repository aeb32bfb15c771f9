package config

import (
	"strings"
	"testing"
)

// auth.jwt errors name the file's line, the key and what is allowed.
func TestJWTErrorsNameKeyLineAndWhatIsAllowed(t *testing.T) {
	_, err := Parse([]byte(`auth:
  keys:
    - key: a.b.c
  jwt:
    jwks_url: http://idp.example.com/jwks.json
    hmac_secret: short
    algorithms: [none, HS256, RS257]
    leeway: 10m
    max_token_bytes: 1MiB
` + minimal))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"line 3: auth.keys[0].key: must not contain exactly two dots while auth.jwt is on",
		"line 5: auth.jwt.jwks_url: must be https:// (http:// only to a loopback address)",
		"line 6: auth.jwt.hmac_secret: must be at least 32 bytes",
		"line 7: auth.jwt.algorithms[0]: none is never allowed",
		"auth.jwt.algorithms[2]: must be one of RS256, RS384",
		"line 4: auth.jwt.issuer: must name the tokens' issuer",
		"line 4: auth.jwt.audience: must name this gateway's audience",
		"line 8: auth.jwt.leeway: must be between 0 and 5m0s",
		"line 9: auth.jwt.max_token_bytes: must be between 256 and 64KiB",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	_, err = Parse([]byte("auth:\n  jwt:\n    public_keys: [{file: k.pem}]\n    algorithms: [HS256]\n    issuer: i\n    audience: a\n" + minimal))
	if err == nil || !strings.Contains(err.Error(), "line 4: auth.jwt.algorithms[0]: HS256 needs auth.jwt.hmac_secret (HMAC is never verified with a public key)") ||
		!strings.Contains(err.Error(), "lists no asymmetric algorithm") {
		t.Fatalf("HMAC without a secret: %v", err)
	}
	c, err := Parse([]byte("auth:\n  require_key: true\n  jwt:\n    jwks_url: https://idp.example.com/jwks.json\n    issuer: i\n    audience: a\n" + minimal))
	if err != nil {
		t.Fatalf("a valid auth.jwt: %v", err)
	}
	if !c.Auth.JWT.Enabled() || c.Auth.JWT.Claims.Tenant != "sub" || len(c.Auth.JWT.JWTAlgorithms()) != 10 {
		t.Fatalf("defaults: %+v", c.Auth.JWT)
	}
}

// The gateway's own tenant namespaces (anonymous callers "ip:", keys
// naming no tenant "key:", tokens "jwt:") cannot be an API key's tenant:
// before, a key of tenant "ip:127.0.0.1" shared the files and jobs of
// anonymous callers from that address, and one of tenant "jwt:x" would
// share a token tenant's. A shared_tenants entry must be a valid pattern.
func TestReservedTenantNamespaces(t *testing.T) {
	_, err := Parse([]byte(`auth:
  keys:
    - {key: k1, tenant: "ip:127.0.0.1"}
    - {key: k2, tenant: "key:0a1b2c3d4e5f"}
    - {key: k3, tenant: "jwt:acme"}
    - {key: k4, tenant: "acme"}
  jwt:
    jwks_url: https://idp.example.com/jwks.json
    issuer: i
    audience: a
    shared_tenants: [acme, "team-[", ""]
` + minimal))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`line 3: auth.keys[0].tenant: must not start with "ip:", "key:" or "jwt:" (the gateway's own names`,
		`line 4: auth.keys[1].tenant: must not start with`,
		`line 5: auth.keys[2].tenant: must not start with`,
		`auth.jwt.shared_tenants[1]: want a tenant name or a path.Match pattern, got "team-["`,
		`auth.jwt.shared_tenants[2]: want a tenant name or a path.Match pattern, got ""`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "auth.keys[3]") || strings.Contains(err.Error(), "shared_tenants[0]") {
		t.Errorf("refused a plain tenant or pattern:\n%v", err)
	}
	for _, c := range []struct {
		patterns []string
		claim    string
		want     bool
	}{{nil, "acme", false}, {[]string{"acme"}, "acme", true}, {[]string{"team-*"}, "team-a", true},
		{[]string{"team-*"}, "acme", false}, {[]string{"*"}, "anyone", true}} {
		if got := SharedTenant(c.patterns, c.claim); got != c.want {
			t.Errorf("SharedTenant(%q, %q) = %v", c.patterns, c.claim, got)
		}
	}
	if PolicyTenant("jwt:acme") != "acme" || PolicyTenant("acme") != "" || PolicyTenant("ip:1.2.3.4") != "" {
		t.Error("PolicyTenant")
	}
	r := CacheRule{Tenants: []string{"acme"}}
	if !r.Matches("m", "", "acme") || !r.Matches("m", "", "jwt:acme") || r.Matches("m", "", "jwt:other") || r.Matches("m", "", "key:acme") {
		t.Error("a cache rule for tenant acme: want acme and jwt:acme only")
	}
}

// An API key spelled as one of the gateway's own names ("jwt:alice", the
// per-key bucket of the token subject alice; "ip:10.0.0.7", that of the
// anonymous callers from 10.0.0.7) is refused, without quoting it: before,
// it was accepted and shared their rate limit buckets.
func TestReservedKeyNamespaces(t *testing.T) {
	_, err := Parse([]byte(`auth:
  keys:
    - {key: "jwt:SECRETMARK"}
    - {key: "ip:10.0.0.7"}
    - {key: "key:0a1b2c3d4e5f"}
    - {key: "sk-jwt:ok"}
` + minimal))
	if err == nil {
		t.Fatal("accepted keys spelled as the gateway's own names")
	}
	for _, want := range []string{
		`line 3: auth.keys[0].key: must not start with "ip:", "key:" or "jwt:"`,
		`line 4: auth.keys[1].key: must not start with`,
		`line 5: auth.keys[2].key: must not start with`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "auth.keys[3]") || strings.Contains(err.Error(), "SECRETMARK") {
		t.Errorf("refused a plain key or quoted a key:\n%v", err)
	}
}

// A config refusal never quotes an API key: one written where a list or
// section belongs (auth.keys: sk-abc, keys: [sk-abc], a cache rule's keys,
// rate_limits.keys: sk-abc) is "a value not shown", and a rate_limits.keys
// entry is named by KeyRef, as its validation names it, not by the key
// (before: "rate_limits.keys.sk-abc.reqests: unknown key", and the value
// quoted whole; a reload's refusal reaches the log and the admin /status).
func TestConfigErrorsDoNotQuoteAPIKeys(t *testing.T) {
	for _, src := range []string{
		"auth: {keys: sk-SECRETMARK}\n",
		"auth: {keys: [sk-SECRETMARK]}\n",
		"cache: {rules: [{keys: sk-SECRETMARK}]}\n",
		"rate_limits: {keys: sk-SECRETMARK}\n",
		"rate_limits: {keys: {sk-SECRETMARK: 5}}\n",
		"rate_limits: {keys: {sk-SECRETMARK: {reqests: 1r/s}}}\n",
		"rate_limits: {keys: {sk-SECRETMARK: {requests: bogus}}}\n",
		"rate_limits: {keys: {sk-SECRETMARK: {}, sk-SECRETMARK: {}}}\n",
		"cache: {rules: [{keys: [\"sk-SECRETMARK[\"]}]}\n",
	} {
		_, err := Parse([]byte(src + minimal))
		if err == nil || strings.Contains(err.Error(), "SECRETMARK") || !strings.Contains(err.Error(), "keys") {
			t.Errorf("%q: %v", src, err)
		}
	}
	_, err := Parse([]byte("rate_limits: {keys: {sk-SECRETMARK: {reqests: 1r/s}}}\n" + minimal))
	if want := "rate_limits.keys[" + KeyRef("sk-SECRETMARK") + "].reqests: unknown key"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("want %q in %v", want, err)
	}
	_, err = Parse([]byte("auth: {keys: [{key: k, weight: heavy}]}\n" + minimal))
	if err == nil || !strings.Contains(err.Error(), `got "heavy"`) {
		t.Errorf("a key's other fields are quoted as before: %v", err)
	}
}
