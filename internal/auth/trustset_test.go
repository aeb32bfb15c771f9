package auth_test

import (
	"context"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth"
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
		return editedConfig(set.URL(), []config.JWTKey{pemKey}, []string{"RS256", "PS256", "ES256"}, edit)
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
		checkTrusted(t, tc.name, running, buildIssuers(t, cfg(tc.edit), clk), tokens, tc.trusted)
	}
}

// The reverse move: tokens verified through the issuer's key set, then a
// reload that drops the jwks_url and keeps (or adds) a static PEM of the
// same public key. The set is one source, so that reload ended every
// running request of the set's tokens; a key of the set is now also its
// own material, and the PEM of it keeps the tokens it signed, with kid
// or without (a set of two RSA keys: which one verified is found), and
// only those.
func TestSetKeyAlsoAsAPEMIsOneMaterial(t *testing.T) {
	set := jwttest.New(t)
	rotated := set.AddRSA(t, "rsa-2") // a second RSA key in the set
	clk := newClock()
	pemOf := func(name string, b []byte) config.JWTKey {
		return config.JWTKey{File: jwttest.WritePEM(t, name, b)}
	}
	setPEM := pemOf("set.pem", set.RSAPublicPEM(t))
	cfg := func(edit func(*config.JWT)) config.JWT {
		return editedConfig(set.URL(), nil, []string{"RS256", "ES256"}, edit)
	}
	running := buildIssuers(t, cfg(nil), clk)
	tokens := map[string]string{
		"RS256, kid":           set.RS256(t, claims(clk, nil)),
		"RS256, no kid":        jwttest.Sign(t, jwt.SigningMethodRS256, set.RSA, "", claims(clk, nil)),
		"ES256, kid":           set.ES256(t, claims(clk, nil)),
		"RS256 of rsa-2, kid":  jwttest.Sign(t, jwt.SigningMethodRS256, rotated, "rsa-2", claims(clk, nil)),
		"RS256 of rsa-2, none": jwttest.Sign(t, jwt.SigningMethodRS256, rotated, "", claims(clk, nil)),
	}
	rsa1 := []string{"RS256, kid", "RS256, no kid"}
	var all []string
	for name := range tokens {
		all = append(all, name)
	}
	for _, tc := range []struct {
		name    string
		edit    func(*config.JWT)
		trusted []string
	}{
		{"nothing edited", nil, all},
		{"a PEM of rsa-1 added", func(c *config.JWT) { c.PublicKeys = []config.JWTKey{setPEM} }, all},
		{"the set replaced by a PEM of rsa-1", func(c *config.JWT) { c.JWKSURL, c.PublicKeys = "", []config.JWTKey{setPEM} }, rsa1},
		{"the set replaced by a PEM of rsa-1 under a kid", func(c *config.JWT) {
			k := setPEM
			k.KID = "pem-1"
			c.JWKSURL, c.PublicKeys = "", []config.JWTKey{k}
		}, rsa1},
		{"the set replaced by a PEM of another key", func(c *config.JWT) {
			c.JWKSURL, c.PublicKeys = "", []config.JWTKey{pemOf("other.pem", jwttest.New(t).RSAPublicPEM(t))}
		}, nil},
		{"the set replaced by a PEM of rsa-1, RS256 dropped", func(c *config.JWT) {
			c.JWKSURL, c.PublicKeys, c.Algorithms = "", []config.JWTKey{setPEM}, []string{"ES256", "PS256"}
		}, nil},
	} {
		checkTrusted(t, tc.name, running, buildIssuers(t, cfg(tc.edit), clk), tokens, tc.trusted)
	}
}

// checkTrusted verifies each of tokens (by name) on running and checks
// that next, the issuers after the reload named edit, trusts the names in
// trusted and no other.
func checkTrusted(t *testing.T, edit string, running, next *auth.Issuers, tokens map[string]string, trusted []string) {
	t.Helper()
	for name, token := range tokens {
		id, err := running.Verify(context.Background(), token)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := slices.Contains(trusted, name)
		if got := next.Trusts(id.Issuer, id.Trust); got != want {
			t.Errorf("%s: a token of %s trusted %v; want %v", edit, name, got, want)
		}
	}
}

// editedConfig is an issuer of the key set at jwksURL with the static
// keys and algs, then edited by edit (nil: none).
func editedConfig(jwksURL string, keys []config.JWTKey, algs []string, edit func(*config.JWT)) config.JWT {
	c := jwtConfig(jwksURL)
	c.PublicKeys, c.Algorithms = keys, algs
	if edit != nil {
		edit(&c)
	}
	return c
}
