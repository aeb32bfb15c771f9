package gateway

import (
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// TestReloadRemovingAPEMTheSetStillHolds: an issuer moving from a static
// key to its provider's key set serves the same key both ways for a while
// (the PEM and the jwks_url), then drops the PEM. Static keys are tried
// first, so the running tokens were held on the PEM, and that last
// reload ended their streams with api_key_revoked although the set still
// verifies them. The same key material through the set now keeps them.
func TestReloadRemovingAPEMTheSetStillHolds(t *testing.T) {
	is := jwttest.New(t)
	pemKey := config.JWTKey{File: pemFile(t, is.RSAPublicPEM(t)), KID: jwttest.RSAKID}
	var be string
	cfg := func(keys ...config.JWTKey) *config.Config {
		c := jwtConfig(is, be) // jwks_url: the issuer's set, which holds the same key
		c.Auth.JWT.PublicKeys = keys
		return c
	}
	g, _, release := newIssuerReloadGateway(t, func(u string) *config.Config { be = u; return cfg(pemKey) })
	kidBR, kidResp, _ := g.held(is.RS256(t, validClaims(jwt.MapClaims{"org": "acme"})), true)
	noKidBR, noKidResp, _ := g.held(jwttest.Sign(t, jwt.SigningMethodRS256, is.RSA, "", validClaims(jwt.MapClaims{"org": "acme"})), true)
	if cut := g.swap(cfg()); cut != "" {
		t.Fatalf("a reload removing a PEM whose key the set still holds: %q; want nothing cut", cut)
	}
	close(release)
	for name, r := range map[string]string{"kid": rest(t, kidBR, kidResp), "no kid": rest(t, noKidBR, noKidResp)} {
		if !strings.Contains(r, "[DONE]") || strings.Contains(r, "api_key_revoked") {
			t.Fatalf("the %s token's stream across the reload: %q; want it to run to [DONE]", name, r)
		}
	}
}

// TestReloadDroppingTheSetAPEMStillHolds: the reverse move, from the
// provider's key set to a static key. Tokens verified through the set
// held it as their source, and the reload that dropped the jwks_url while
// a PEM of the same public key stays ended their streams with
// api_key_revoked although the PEM verifies them. The key's material
// kept now keeps them.
func TestReloadDroppingTheSetAPEMStillHolds(t *testing.T) {
	is := jwttest.New(t)
	pemKey := config.JWTKey{File: pemFile(t, is.RSAPublicPEM(t)), KID: jwttest.RSAKID}
	var be string
	cfg := func(jwks bool, keys ...config.JWTKey) *config.Config {
		c := jwtConfig(is, be)
		if !jwks {
			c.Auth.JWT.JWKSURL = ""
		}
		c.Auth.JWT.PublicKeys = keys
		return c
	}
	g, _, release := newIssuerReloadGateway(t, func(u string) *config.Config { be = u; return cfg(true) })
	kidBR, kidResp, _ := g.held(is.RS256(t, validClaims(jwt.MapClaims{"org": "acme"})), true)
	noKidBR, noKidResp, _ := g.held(jwttest.Sign(t, jwt.SigningMethodRS256, is.RSA, "", validClaims(jwt.MapClaims{"org": "acme"})), true)
	if cut := g.swap(cfg(true, pemKey)); cut != "" {
		t.Fatalf("a reload adding a PEM of the set's key: %q; want nothing cut", cut)
	}
	if cut := g.swap(cfg(false, pemKey)); cut != "" {
		t.Fatalf("a reload dropping the set while a PEM of its key stays: %q; want nothing cut", cut)
	}
	close(release)
	for name, r := range map[string]string{"kid": rest(t, kidBR, kidResp), "no kid": rest(t, noKidBR, noKidResp)} {
		if !strings.Contains(r, "[DONE]") || strings.Contains(r, "api_key_revoked") {
			t.Fatalf("the %s token's stream across the reloads: %q; want it to run to [DONE]", name, r)
		}
	}
}
