package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// A running token is judged on the key material that verified it and on
// its alg, not on the key's config label. Tokens are verified once
// against an issuer with a static RSA key A (kid key-a), a kid-less
// static RSA key N, an hmac_secret and a key set, allowing RS256, PS256,
// HS256 and HS384; then each edit is asked which of them it still
// trusts. Before, algorithms was not in a Trust (dropping RS256 while
// PS256 keeps the key left RS256 tokens running) and a static key's kid
// was (giving N a kid cut its kid-less tokens, which still verify).
func TestTrustIsTheKeyMaterialAndTheAlg(t *testing.T) {
	a, n, set := jwttest.New(t), jwttest.New(t), jwttest.New(t)
	clk := newClock()
	keyA := config.JWTKey{File: jwttest.WritePEM(t, "a.pem", a.RSAPublicPEM(t)), KID: "key-a"}
	keyN := config.JWTKey{File: jwttest.WritePEM(t, "n.pem", n.RSAPublicPEM(t))}
	secret := strings.Repeat("s", 32)
	cfg := func(edit func(*config.JWT)) config.JWT {
		c := jwtConfig(set.URL())
		c.PublicKeys, c.HMACSecret = []config.JWTKey{keyA, keyN}, secret
		c.Algorithms = []string{"RS256", "PS256", "HS256", "HS384"}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	running := buildIssuers(t, cfg(nil), clk)
	sign := func(m jwt.SigningMethod, key any, kid string) string {
		return jwttest.Sign(t, m, key, kid, claims(clk, nil))
	}
	tokens := map[string]string{
		"A RS256, kid":    sign(jwt.SigningMethodRS256, a.RSA, "key-a"),
		"A PS256, kid":    sign(jwt.SigningMethodPS256, a.RSA, "key-a"),
		"A RS256, no kid": sign(jwt.SigningMethodRS256, a.RSA, ""),
		"N RS256, no kid": sign(jwt.SigningMethodRS256, n.RSA, ""),
		"N PS256, no kid": sign(jwt.SigningMethodPS256, n.RSA, ""),
		"HS256":           sign(jwt.SigningMethodHS256, []byte(secret), ""),
		"HS384":           sign(jwt.SigningMethodHS384, []byte(secret), ""),
		"set RS256, kid":  set.RS256(t, claims(clk, nil)),
	}
	var all []string
	held := map[string]auth.Identity{}
	for name, tok := range tokens {
		id, err := running.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		held[name] = id
		all = append(all, name)
	}

	pkcs1 := func(is *jwttest.Issuer) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&is.RSA.PublicKey)})
	}
	byA := []string{"A RS256, kid", "A PS256, kid", "A RS256, no kid"}
	byN := []string{"N RS256, no kid", "N PS256, no kid"}
	for _, tc := range []struct {
		name      string
		edit      func(*config.JWT)
		untrusted []string
	}{
		{"nothing edited", nil, nil},
		{"RS256 dropped, PS256 kept", func(c *config.JWT) { c.Algorithms = []string{"PS256", "HS256", "HS384"} },
			[]string{"A RS256, kid", "A RS256, no kid", "N RS256, no kid", "set RS256, kid"}},
		{"HS256 dropped, HS384 kept", func(c *config.JWT) { c.Algorithms = []string{"RS256", "PS256", "HS384"} },
			[]string{"HS256"}},
		{"PS256 dropped", func(c *config.JWT) { c.Algorithms = []string{"RS256", "HS256", "HS384"} },
			[]string{"A PS256, kid", "N PS256, no kid"}},
		{"key N given a kid", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{keyA, {File: keyN.File, KID: "key-n"}}
		}, nil},
		{"key A's kid renamed", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: keyA.File, KID: "key-a2"}, keyN}
		}, nil},
		{"key A's kid removed", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: keyA.File}, keyN}
		}, nil},
		{"key A re-encoded as PKCS #1, same key", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: jwttest.WritePEM(t, "a1.pem", pkcs1(a)), KID: "key-a"}, keyN}
		}, nil},
		{"another key under key A's kid", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: jwttest.WritePEM(t, "a2.pem", jwttest.New(t).RSAPublicPEM(t)), KID: "key-a"}, keyN}
		}, byA},
		{"key N removed", func(c *config.JWT) { c.PublicKeys = []config.JWTKey{keyA} }, byN},
	} {
		next := buildIssuers(t, cfg(tc.edit), clk)
		for _, name := range all {
			want := !containsString(tc.untrusted, name)
			if got := next.Trusts(held[name].Issuer, held[name].Trust); got != want {
				t.Errorf("%s: a token of %s trusted %v; want %v", tc.name, name, got, want)
			}
		}
	}
}
