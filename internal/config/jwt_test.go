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
