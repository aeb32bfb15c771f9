package auth_test

import (
	"context"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// The same public key given as a static PEM and through the issuer's key
// set is one key material. Static keys are tried first, so a token of
// that key held the PEM as its source, and the reload that removed the
// PEM (the last step of a move from static keys to the provider's set)
// ended its running requests, 401 api_key_revoked, though the set still
// verifies it. Such a token is now trusted while either holds the key, fit
// for its alg; another set, or a set whose JWK forbids the token's alg,
// does not hold it.
func TestStaticKeyAlsoInTheSetIsOneMaterial(t *testing.T) {
	set, other := jwttest.New(t), jwttest.New(t)
	clk := newClock()
	pemKey := config.JWTKey{File: jwttest.WritePEM(t, "set.pem", set.RSAPublicPEM(t)), KID: jwttest.RSAKID}
	cfg := func(edit func(*config.JWT)) config.JWT {
		c := jwtConfig(set.URL())
		c.PublicKeys = []config.JWTKey{pemKey}
		c.Algorithms = []string{"RS256", "PS256", "ES256"}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	running := buildIssuers(t, cfg(nil), clk)
	tokens := map[string]string{
		"RS256, kid":    set.RS256(t, claims(clk, nil)),
		"RS256, no kid": jwttest.Sign(t, jwt.SigningMethodRS256, set.RSA, "", claims(clk, nil)),
		// The set's JWK says alg RS256: it would not verify a PS256
		// token, which only the PEM does.
		"PS256, no kid": jwttest.Sign(t, jwt.SigningMethodPS256, set.RSA, "", claims(clk, nil)),
	}
	rs256 := []string{"RS256, kid", "RS256, no kid"}
	all := append([]string{"PS256, no kid"}, rs256...)
	for _, tc := range []struct {
		name    string
		edit    func(*config.JWT)
		trusted []string
	}{
		{"nothing edited", nil, all},
		{"the PEM removed, the set holds the key", func(c *config.JWT) { c.PublicKeys = nil }, rs256},
		{"the PEM removed, another set", func(c *config.JWT) { c.PublicKeys, c.JWKSURL = nil, other.URL() }, nil},
		{"the set removed, the PEM kept", func(c *config.JWT) { c.JWKSURL = "" }, all},
	} {
		next := buildIssuers(t, cfg(tc.edit), clk)
		for _, name := range all {
			id, err := running.Verify(context.Background(), tokens[name])
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want := slices.Contains(tc.trusted, name)
			if got := next.Trusts(id.Issuer, id.Trust); got != want {
				t.Errorf("%s: a token of %s trusted %v; want %v", tc.name, name, got, want)
			}
		}
	}
}
