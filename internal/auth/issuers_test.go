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

const (
	issuerA = "https://a.idp.test/"
	issuerB = "https://b.idp.test/"
)

// parseJWT reads auth.jwt from YAML through config.Parse (so the list
// form's entries inherit what they leave unset, as from a file).
func parseJWT(t *testing.T, jwtYAML string) config.JWT {
	t.Helper()
	c, err := config.Parse([]byte("models:\n  - name: m1\n    backends: [{url: http://127.0.0.1:1}]\nauth:\n  jwt:\n" + jwtYAML))
	if err != nil {
		t.Fatal(err)
	}
	return c.Auth.JWT
}

// buildIssuers makes a key set per issuer with a jwks_url, as the app's
// build does, and the router over them.
func buildIssuers(t *testing.T, c config.JWT, clk *clock) *auth.Issuers {
	t.Helper()
	var list []auth.NamedVerifier
	for _, ic := range c.IssuerConfigs() {
		var jwks *auth.JWKS
		if ic.JWT.JWKSURL != "" {
			jwks = auth.NewJWKS(auth.JWKSSettingsOf(ic.JWT), nil, clk.now)
			t.Cleanup(jwks.Close)
		}
		v, err := auth.NewVerifier(ic.JWT, jwks, clk.now)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, auth.NamedVerifier{Name: ic.Name, Verifier: v})
	}
	s, err := auth.NewIssuers(c, list)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func twoIssuers(a, b *jwttest.Issuer, extraB string) string {
	return "    issuers:\n" +
		"      - {name: corp, issuer: " + issuerA + ", audience: sluice, jwks_url: " + a.URL() + "}\n" +
		"      - {name: partner, issuer: " + issuerB + ", audience: sluice, jwks_url: " + b.URL() + extraB + "}\n"
}

// Two providers' tokens for the same subject are two tenants and two
// per-key names; each is verified with its own issuer's keys only (both
// test issuers publish their RSA key under the same kid), and an iss no
// issuer has is refused before any key is looked at.
func TestIssuersRouteByIssAndNamespaceTenants(t *testing.T) {
	a, b := jwttest.New(t), jwttest.New(t)
	clk := newClock()
	s := buildIssuers(t, parseJWT(t, twoIssuers(a, b, "")), clk)
	ctx := context.Background()

	idA, err := s.Verify(ctx, a.RS256(t, claims(clk, jwt.MapClaims{"iss": issuerA})))
	if err != nil {
		t.Fatalf("corp's token: %v", err)
	}
	idB, err := s.Verify(ctx, b.RS256(t, claims(clk, jwt.MapClaims{"iss": issuerB})))
	if err != nil {
		t.Fatalf("partner's token: %v", err)
	}
	if idA.Tenant != "jwt:corp:alice" || idB.Tenant != "jwt:partner:alice" || idA.Key != "jwt:corp:alice" || idB.Key != "jwt:partner:alice" {
		t.Fatalf("same sub, two issuers: tenants %q %q, keys %q %q", idA.Tenant, idB.Tenant, idA.Key, idB.Key)
	}
	// corp's key (same kid as partner's) signing a token that says partner.
	if _, err := s.Verify(ctx, a.RS256(t, claims(clk, jwt.MapClaims{"iss": issuerB}))); reasonOf(t, err) != auth.ReasonSignature {
		t.Fatalf("partner's iss signed by corp's key: %v", err)
	}
	_, err = s.Verify(ctx, a.RS256(t, claims(clk, jwt.MapClaims{"iss": "https://evil.test/"})))
	if reasonOf(t, err) != auth.ReasonIssuer {
		t.Fatalf("unknown iss: %v", err)
	}
	if _, err := s.Verify(ctx, a.RS256(t, claims(clk, jwt.MapClaims{"iss": nil}))); reasonOf(t, err) != auth.ReasonMalformed {
		t.Fatalf("no iss: %v", err)
	}
	if a.Hits() != 1 || b.Hits() != 1 {
		t.Fatalf("key set fetches: corp %d, partner %d (want one each)", a.Hits(), b.Hits())
	}
}

// A provider whose key set cannot be fetched refuses its own tokens
// (keys_unavailable) and nobody else's; /readyz is not held by it alone.
func TestIssuerKeySetDownLeavesTheOthers(t *testing.T) {
	a, b := jwttest.New(t), jwttest.New(t)
	b.Server.Close() // partner's JWKS down from the start
	clk := newClock()
	s := buildIssuers(t, parseJWT(t, twoIssuers(a, b, "")), clk)
	ctx := context.Background()
	if id, err := s.Verify(ctx, a.RS256(t, claims(clk, jwt.MapClaims{"iss": issuerA}))); err != nil || id.Tenant != "jwt:corp:alice" {
		t.Fatalf("corp's token while partner's key set is down: %+v %v", id, err)
	}
	if _, err := s.Verify(ctx, b.RS256(t, claims(clk, jwt.MapClaims{"iss": issuerB}))); reasonOf(t, err) != auth.ReasonKeysUnavailable {
		t.Fatalf("partner's token: %v", err)
	}
	state, _, ok := s.KeySet()
	if !ok || state != auth.KeySetUnavailable {
		t.Fatalf("worst key set state: %q %v", state, ok)
	}
	sets := s.KeySets()
	if len(sets) != 2 || sets[0] != (auth.IssuerKeySet{Name: "corp", State: auth.KeySetOK}) ||
		sets[1] != (auth.IssuerKeySet{Name: "partner", State: auth.KeySetUnavailable}) {
		t.Fatalf("per issuer: %+v", sets)
	}
}

// The list form with one entry, and the single form, keep "jwt:<claim>";
// an entry takes auth.jwt's keys it leaves unset (claims.tenant here) and
// overrides the ones it writes.
func TestOneIssuerKeepsItsTenantNames(t *testing.T) {
	a := jwttest.New(t)
	clk := newClock()
	for _, src := range []string{
		"    issuer: " + issuerA + "\n    audience: sluice\n    jwks_url: " + a.URL() + "\n    claims: {tenant: org}\n",
		"    claims: {tenant: org}\n    issuers:\n      - {issuer: " + issuerA + ", audience: sluice, jwks_url: " + a.URL() + "}\n",
	} {
		s := buildIssuers(t, parseJWT(t, src), clk)
		id, err := s.Verify(context.Background(), a.RS256(t, claims(clk, jwt.MapClaims{"iss": issuerA, "org": "acme"})))
		if err != nil || id.Tenant != "jwt:acme" || id.Key != "jwt:alice" {
			t.Fatalf("%s: %+v %v", src, id, err)
		}
	}
	c := parseJWT(t, "    leeway: 10s\n    claims: {tenant: org, subject: uid}\n    issuers:\n"+
		"      - {name: x, issuer: "+issuerA+", audience: sluice, jwks_url: "+a.URL()+", leeway: 0s, claims: {tenant: team}}\n"+
		"      - {name: y, issuer: "+issuerB+", audience: sluice, hmac_secret: "+secret+", algorithms: [HS256]}\n")
	x, y := c.Issuers[0], c.Issuers[1]
	if x.Leeway != 0 || x.Claims.Tenant != "team" || x.Claims.Subject != "uid" || x.JWKSRefresh.D() != config.Default().Auth.JWT.JWKSRefresh.D() {
		t.Fatalf("entry x: leeway %s, claims %+v, refresh %s", x.Leeway.D(), x.Claims, x.JWKSRefresh.D())
	}
	if y.Leeway.D().String() != "10s" || y.Claims.Tenant != "org" || y.JWKSURL != "" {
		t.Fatalf("entry y: leeway %s, claims %+v, jwks_url %q", y.Leeway.D(), y.Claims, y.JWKSURL)
	}
}

// shared_tenants is per issuer: one provider's claim "team-a" may be the
// API keys' tenant "team-a" while another's stays in its namespace.
func TestSharedTenantsArePerIssuer(t *testing.T) {
	a, b := jwttest.New(t), jwttest.New(t)
	clk := newClock()
	s := buildIssuers(t, parseJWT(t, twoIssuers(a, b, ", shared_tenants: [team-*]")), clk)
	ctx := context.Background()
	c := func(iss string) jwt.MapClaims { return claims(clk, jwt.MapClaims{"iss": iss, "sub": "team-a"}) }
	idA, errA := s.Verify(ctx, a.RS256(t, c(issuerA)))
	idB, errB := s.Verify(ctx, b.RS256(t, c(issuerB)))
	if errA != nil || errB != nil || idA.Tenant != "jwt:corp:team-a" || idB.Tenant != "team-a" {
		t.Fatalf("corp %+v %v; partner %+v %v", idA, errA, idB, errB)
	}
}

func TestPeekIssuerRefusesWhatIsNotAToken(t *testing.T) {
	a, b := jwttest.New(t), jwttest.New(t)
	clk := newClock()
	s := buildIssuers(t, parseJWT(t, twoIssuers(a, b, "")), clk)
	for _, tok := range []string{"a.b.c", "e30.e30.x", "e30." + strings.Repeat("A", 10) + ".x", "e30.eyJpc3MiOjF9.x"} {
		if _, err := s.Verify(context.Background(), tok); reasonOf(t, err) != auth.ReasonMalformed {
			t.Fatalf("%q: %v", tok, err)
		}
	}
}

// With several issuers, one whose start key set was never fetched holds
// readiness only while no other issuer can verify a token: an issuer of
// static keys (public_keys, hmac_secret) always can, so partner's JWKS
// down from the start leaves the replica ready for corp's tokens. Before,
// only the issuers with a jwks_url were asked, and partner's alone held
// the replica out (503): corp's tokens too.
func TestIssuerOfStaticKeysKeepsTheReplicaReady(t *testing.T) {
	b := jwttest.New(t)
	b.Server.Close() // partner's JWKS down from the start
	clk := newClock()
	c := parseJWT(t, "    issuers:\n"+
		"      - {name: corp, issuer: "+issuerA+", audience: sluice, hmac_secret: "+secret+", algorithms: [HS256]}\n"+
		"      - {name: partner, issuer: "+issuerB+", audience: sluice, jwks_url: "+b.URL()+"}\n")
	var list []auth.NamedVerifier
	for _, ic := range c.IssuerConfigs() {
		var jwks *auth.JWKS
		if ic.JWT.JWKSURL != "" {
			jwks = auth.NewJWKS(auth.JWKSSettingsOf(ic.JWT), nil, clk.now)
			jwks.MarkStartup() // the start's, as the app's first build makes it
			t.Cleanup(jwks.Close)
		}
		v, err := auth.NewVerifier(ic.JWT, jwks, clk.now)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, auth.NamedVerifier{Name: ic.Name, Verifier: v})
	}
	s, err := auth.NewIssuers(c, list)
	if err != nil {
		t.Fatal(err)
	}
	state, holds, ok := s.KeySet()
	if !ok || state != auth.KeySetUnavailable {
		t.Fatalf("worst key set state: %q %v", state, ok)
	}
	if holds {
		t.Fatal("partner's key set holds readiness while corp's static keys verify its tokens")
	}
	// The single form, and partner alone: its start key set holds, as before.
	alone := parseJWT(t, "    issuers:\n      - {name: partner, issuer: "+issuerB+", audience: sluice, jwks_url: "+b.URL()+"}\n")
	jwks := auth.NewJWKS(auth.JWKSSettingsOf(alone.IssuerConfigs()[0].JWT), nil, clk.now)
	jwks.MarkStartup()
	t.Cleanup(jwks.Close)
	v, err := auth.NewVerifier(alone.IssuerConfigs()[0].JWT, jwks, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	one, err := auth.NewIssuers(alone, []auth.NamedVerifier{{Name: "partner", Verifier: v}})
	if err != nil {
		t.Fatal(err)
	}
	if _, holds, _ := one.KeySet(); !holds {
		t.Fatal("one issuer's start key set never fetched does not hold readiness")
	}
}
