package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// auth.jwt.issuers errors name the line, the entry's key path and what is
// allowed: names (required with two, no ':', unique), a repeated iss, a
// top-level key that belongs in each entry, and an entry's own checks.
func TestJWTIssuersErrorsNameKeyAndLine(t *testing.T) {
	_, err := loadFile(t, `auth:
  jwt:
    issuer: https://top/
    issuers:
      - issuer: https://a/
        audience: sluice
        jwks_url: https://a/jwks.json
      - name: "p:1"
        issuer: https://a/
        audience: sluice
        hmac_secret: short
      - name: ok
        issuer: https://c/
      - name: ok
        issuer: https://d/
        audience: sluice
        public_keys: [{file: d.pem}]
`+minimal)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"sluice.yaml:3: auth.jwt.issuer: must not be set with auth.jwt.issuers",
		":5: auth.jwt.issuers[0].name: must name the issuer",
		`:8: auth.jwt.issuers[1].name: must be letters, digits, ".", "_" or "-", at most 32 (no ":"`,
		":9: auth.jwt.issuers[1].issuer: repeats auth.jwt.issuers[0].issuer",
		":11: auth.jwt.issuers[1].hmac_secret: must be at least 32 bytes",
		"auth.jwt.issuers[1].algorithms: must list HS256, HS384 or HS512 when auth.jwt.issuers[1].hmac_secret is set",
		":12: auth.jwt.issuers[2].jwks_url: needs a key source: jwks_url, public_keys or hmac_secret",
		":12: auth.jwt.issuers[2].audience: must name this gateway's audience",
		`:14: auth.jwt.issuers[3].name: repeats auth.jwt.issuers[2].name "ok"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("an error quotes the secret:\n%v", err)
	}
	c, err := Parse([]byte("auth:\n  jwt:\n    issuers:\n      - {name: a, issuer: https://a/, audience: s, jwks_url: https://a/k}\n" +
		"      - {name: b.2_x-y, issuer: https://b/, audience: s, jwks_url: https://b/k}\n" + minimal))
	if err != nil || !c.Auth.JWT.Enabled() || !c.Auth.JWT.Namespaced() || c.Auth.JWT.TokenTenantPrefixFor("a") != "jwt:a:" {
		t.Fatalf("two valid issuers: %v", err)
	}
	if got := c.Auth.JWT.IssuerConfigs(); len(got) != 2 || got[1].Name != "b.2_x-y" || got[1].JWT.MaxTokenBytes != 8<<10 || got[1].JWT.JWKSRefresh.D().String() != "1h0m0s" {
		t.Fatalf("issuer configs: %+v", got)
	}
}

// loadFile writes src to a file named sluice.yaml and loads it, so
// errors carry the file name as sluice check shows them.
func loadFile(t *testing.T, src string) (*Config, error) {
	t.Helper()
	p := t.TempDir() + "/sluice.yaml"
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(p)
}

// The reference's rows for auth.jwt.issuers[] entries: an unset key is
// auth.jwt's value, printed with its default (inheritJWT).
func init() {
	d := Default().Auth.JWT
	const p = "auth.jwt.issuers[]."
	referenceUnset["auth.jwt.issuers"] = "the single form: auth.jwt's own issuer"
	referenceUnset[p+"name"] = "required with two or more issuers"
	referenceUnset[p+"issuer"] = "required"
	referenceUnset[p+"audience"] = "required"
	for _, k := range []string{"jwks_url", "public_keys", "hmac_secret"} {
		referenceUnset[p+k] = "none; one key source required"
	}
	referenceFillIns[p+"public_keys[].file"] = "required"
	referenceUnset[p+"public_keys[].kid"] = "the key verifies tokens without kid"
	inherited := func(k, v string) { referenceFillIns[p+k] = v + " (auth.jwt." + k + ")" }
	inherited("jwks_refresh", durationWords(d.JWKSRefresh.D()))
	inherited("jwks_min_refresh", durationWords(d.JWKSMinRefresh.D()))
	inherited("jwks_timeout", durationWords(d.JWKSTimeout.D()))
	inherited("leeway", durationWords(d.Leeway.D()))
	inherited("jwks_max_bytes", fmt.Sprintf("%d KiB", d.JWKSMaxBytes>>10))
	inherited("algorithms", "RS*, PS*, ES*, EdDSA")
	inherited("shared_tenants", "none")
	referenceUnset[p+"claims"] = "auth.jwt.claims, key by key"
	for k, v := range map[string]string{"tenant": d.Claims.Tenant, "subject": d.Claims.Subject, "weight": d.Claims.Weight,
		"priority": d.Claims.Priority, "max_priority": d.Claims.MaxPriority, "no_fallback": d.Claims.NoFallback,
		"requests": d.Claims.Requests, "tokens_per_minute": d.Claims.TokensPerMinute} {
		inherited("claims."+k, "`"+v+"`")
	}
}

// A key an issuer entry does not have is one error, its own: the entries'
// unset keys are auth.jwt's when the rest of the file is checked too, as
// when it loads. Before, the typo came with ten more errors, each entry's
// jwks_refresh, jwks_min_refresh, jwks_timeout, jwks_max_bytes and
// claims.tenant "must be ..., got 0".
func TestJWTIssuerUnknownKeyIsOneError(t *testing.T) {
	_, err := loadFile(t, `auth:
  jwt:
    issuers:
      - {name: corp, issuer: https://c/, audience: s, jwks_url: https://c/k}
      - {name: partner, issuer: https://p/, audience: s, jwks_url: https://p/k, bogus: 1}
`+minimal)
	if err == nil {
		t.Fatal("accepted")
	}
	if want := "sluice.yaml:5: auth.jwt.issuers[1].bogus: unknown key"; !strings.Contains(err.Error(), want) {
		t.Fatalf("missing %q in:\n%v", want, err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
		t.Fatalf("%d errors for one unknown key:\n%v", n, err)
	}
}
