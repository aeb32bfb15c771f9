package auth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// A token's Trust names the one source of keys that verified it, so that
// a reload removing another key of the issuer (the last step of a static
// key's rotation: the new key added, signing moved to it, the old one
// removed) still trusts it. Each token here is verified once against an
// issuer with two static RSA keys, an hmac_secret and a key set, with and
// without kid (without, several keys of its kind are tried, and the one
// that verified is the one named); then each edit is asked which of them
// it still trusts. Before, a Trust held every source of the issuer and
// any source removed untrusted all its tokens.
func TestTrustNamesTheKeyThatVerified(t *testing.T) {
	a, b, set := jwttest.New(t), jwttest.New(t), jwttest.New(t)
	clk := newClock()
	keyA := config.JWTKey{File: jwttest.WritePEM(t, "a.pem", a.RSAPublicPEM(t)), KID: "key-a"}
	keyB := config.JWTKey{File: jwttest.WritePEM(t, "b.pem", b.RSAPublicPEM(t)), KID: "key-b"}
	secret := strings.Repeat("s", 32)
	cfg := func(edit func(*config.JWT)) config.JWT {
		c := jwtConfig(set.URL())
		c.PublicKeys, c.HMACSecret = []config.JWTKey{keyA, keyB}, secret
		c.Algorithms = []string{"RS256", "ES256", "HS256"}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	running := buildIssuers(t, cfg(nil), clk)
	rs := func(key any, kid string) string {
		return jwttest.Sign(t, jwt.SigningMethodRS256, key, kid, claims(clk, nil))
	}
	tokens := map[string]string{
		"key A, kid":             rs(a.RSA, "key-a"),
		"key A, no kid":          rs(a.RSA, ""),
		"key B, kid":             rs(b.RSA, "key-b"),
		"key B, no kid":          rs(b.RSA, ""),
		"hmac":                   jwttest.Sign(t, jwt.SigningMethodHS256, []byte(secret), "", claims(clk, nil)),
		"key set, kid":           set.RS256(t, claims(clk, nil)),
		"key set RSA, no kid":    rs(set.RSA, ""), // tried after A and B
		"key set EC, no kid":     jwttest.Sign(t, jwt.SigningMethodES256, set.EC, "", claims(clk, nil)),
		"key set EC, kid":        set.ES256(t, claims(clk, nil)),
		"key B, key A's kid":     rs(b.RSA, "key-a"),
		"key A, no such kid":     rs(a.RSA, "key-x"),
		"key set, key B's kid":   rs(set.RSA, "key-b"),
		"a stranger's, no kid":   rs(jwttest.New(t).RSA, ""),
		"hmac of another secret": jwttest.Sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), "", claims(clk, nil)),
	}
	refused := map[string]bool{"key B, key A's kid": true, "key A, no such kid": true, "key set, key B's kid": true,
		"a stranger's, no kid": true, "hmac of another secret": true}
	held := map[string]auth.Identity{}
	for name, tok := range tokens {
		id, err := running.Verify(context.Background(), tok)
		if refused[name] {
			if err == nil {
				t.Fatalf("%s: verified; want refused", name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		held[name] = id
	}

	byKeyA := []string{"key A, kid", "key A, no kid"}
	byKeyB := []string{"key B, kid", "key B, no kid"}
	bySet := []string{"key set, kid", "key set RSA, no kid", "key set EC, no kid", "key set EC, kid"}
	all := append(append(append([]string{"hmac"}, byKeyA...), byKeyB...), bySet...)
	for _, tc := range []struct {
		name      string
		edit      func(*config.JWT)
		untrusted []string
	}{
		{"nothing edited", nil, nil},
		{"key A removed (a rotation's last step)", func(c *config.JWT) { c.PublicKeys = []config.JWTKey{keyB} }, byKeyA},
		{"key B removed", func(c *config.JWT) { c.PublicKeys = []config.JWTKey{keyA} }, byKeyB},
		{"key A's file replaced under its kid", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: jwttest.WritePEM(t, "a2.pem", jwttest.New(t).RSAPublicPEM(t)), KID: "key-a"}, keyB}
		}, byKeyA},
		{"a key C added", func(c *config.JWT) {
			c.PublicKeys = append(c.PublicKeys, config.JWTKey{File: jwttest.WritePEM(t, "c.pem", jwttest.New(t).RSAPublicPEM(t)), KID: "key-c"})
		}, nil},
		{"the hmac_secret replaced", func(c *config.JWT) { c.HMACSecret = strings.Repeat("t", 32) }, []string{"hmac"}},
		{"the jwks_url removed", func(c *config.JWT) { c.JWKSURL = "" }, bySet},
		{"another audience", func(c *config.JWT) { c.Audience = "other" }, all},
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

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
