package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/rate"
)

// Every JWKS closes its goroutines (the periodic refresh, a fetch in
// progress): none may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	issuer   = "https://idp.test/"
	audience = "sluice"
	secret   = "0123456789abcdef0123456789abcdef-hmac"
)

// clock is the injected time: tokens are checked against it, and the
// unknown-kid refresh bound counts on it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func jwtConfig(jwksURL string) config.JWT {
	c := config.Default().Auth.JWT
	c.JWKSURL, c.Issuer, c.Audience = jwksURL, issuer, audience
	return c
}

// setup is an issuer, its JWKS fetched by the gateway's source, and a
// verifier over it on the clock.
func setup(t *testing.T, edit func(*config.JWT)) (*jwttest.Issuer, *auth.Verifier, *auth.JWKS, *clock) {
	t.Helper()
	is := jwttest.New(t)
	clk := newClock()
	c := jwtConfig(is.URL())
	if edit != nil {
		edit(&c)
	}
	var jwks *auth.JWKS
	if c.JWKSURL != "" {
		jwks = auth.NewJWKS(auth.JWKSSettingsOf(c), nil, clk.now)
		t.Cleanup(jwks.Close)
	}
	v, err := auth.NewVerifier(c, jwks, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return is, v, jwks, clk
}

// claims are valid at clk's time, with extra set (nil values deleted).
func claims(clk *clock, extra jwt.MapClaims) jwt.MapClaims {
	now := clk.now()
	c := jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "alice", "exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(), "nbf": now.Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func reasonOf(t *testing.T, err error) auth.Reason {
	t.Helper()
	var f *auth.Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v is not an *auth.Failure", err)
	}
	return f.Reason
}

func TestVerifiedClaimsMapToTheIdentity(t *testing.T) {
	is, v, _, clk := setup(t, nil)
	full := claims(clk, jwt.MapClaims{"tenant": "acme", "sluice_weight": 2.5, "sluice_priority": "batch",
		"sluice_max_priority": "interactive", "sluice_no_fallback": true,
		"sluice_requests": "10r/s burst=20 nodelay", "sluice_tokens_per_minute": 50000})
	for name, tok := range map[string]string{"RS256": is.RS256(t, full), "ES256": is.ES256(t, full)} {
		id, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := rate.ParseNginx("10r/s burst=20 nodelay")
		if id.Subject != "alice" || id.Tenant != "jwt:alice" || id.Weight != 2.5 || id.Priority != "batch" ||
			id.MaxPriority != "interactive" || !id.NoFallback || id.Limits == nil ||
			id.Limits.Requests != want || id.Limits.TokensPerMinute != 50000 {
			t.Fatalf("%s: identity %+v (limits %+v)", name, id, id.Limits)
		}
	}
	// The tenant claim is configurable; absent optional claims keep the
	// defaults an API key has.
	_, v2, _, _ := setupWith(t, is, clk, func(c *config.JWT) { c.Claims.Tenant = "tenant" })
	id, err := v2.Verify(context.Background(), is.RS256(t, claims(clk, jwt.MapClaims{"tenant": "acme"})))
	if err != nil {
		t.Fatal(err)
	}
	if id.Tenant != "jwt:acme" || id.Subject != "alice" || id.Weight != 0 || id.Priority != "" || id.NoFallback || id.Limits != nil {
		t.Fatalf("identity %+v", id)
	}
}

// A token's tenant is "jwt:<claim>" unless auth.jwt.shared_tenants lists
// the claim: then it is the claim as is, the API keys' tenant of that
// name. A shared claim in a reserved namespace is refused ("jwt:x" as is
// would be the token tenant of the claim "x").
func TestSharedTenantsKeepTheClaimAsIs(t *testing.T) {
	is, _, _, clk := setup(t, nil)
	_, v, _, _ := setupWith(t, is, clk, func(c *config.JWT) { c.SharedTenants = []string{"acme", "team-*", "jwt:*"} })
	for claim, want := range map[string]string{"acme": "acme", "team-a": "team-a", "other": "jwt:other", "acme2": "jwt:acme2"} {
		id, err := v.Verify(context.Background(), is.RS256(t, claims(clk, jwt.MapClaims{"sub": claim})))
		if err != nil || id.Tenant != want {
			t.Errorf("claim %q: tenant %q, %v; want %q", claim, id.Tenant, err, want)
		}
	}
	_, err := v.Verify(context.Background(), is.RS256(t, claims(clk, jwt.MapClaims{"sub": "jwt:x"})))
	if reasonOf(t, err) != auth.ReasonClaims {
		t.Fatalf("shared claim jwt:x: %v", err)
	}
}

// setupWith is a verifier over an existing issuer.
func setupWith(t *testing.T, is *jwttest.Issuer, clk *clock, edit func(*config.JWT)) (*jwttest.Issuer, *auth.Verifier, *auth.JWKS, *clock) {
	t.Helper()
	c := jwtConfig(is.URL())
	edit(&c)
	jwks := auth.NewJWKS(auth.JWKSSettingsOf(c), nil, clk.now)
	t.Cleanup(jwks.Close)
	v, err := auth.NewVerifier(c, jwks, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return is, v, jwks, clk
}

// Each way a token can be wrong is refused, with its reason (for the log
// and the metric only). Times are on the injected clock, at the leeway's
// edge: 30s of skew passes, a second more does not.
func TestRefusals(t *testing.T) {
	is, v, _, clk := setup(t, nil)
	_, vHMAC, _, _ := setupWith(t, is, clk, func(c *config.JWT) {
		c.HMACSecret = secret
		c.Algorithms = []string{"RS256", "ES256", "HS256"}
	})
	now := clk.now()
	tampered := is.RS256(t, claims(clk, nil))
	parts := strings.Split(tampered, ".")
	evil := strings.Split(is.RS256(t, claims(clk, jwt.MapClaims{"sub": "mallory"})), ".")
	tampered = parts[0] + "." + evil[1] + "." + parts[2] // mallory's claims under alice's signature
	sig := []byte(parts[2])
	// Another base64url letter in the middle: the same length, still
	// decodable, different signature bits. (XOR-ing a bit of the ASCII
	// letter could leave the alphabet, e.g. 'a' -> '`', and the token would
	// be refused as malformed instead, depending on the random key.)
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	flipped := parts[0] + "." + parts[1] + "." + string(sig)
	confusion := jwttest.Sign(t, jwt.SigningMethodHS256, is.RSAPublicPEM(t), jwttest.RSAKID, claims(clk, nil))
	none := jwttest.Sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwttest.RSAKID, claims(clk, nil))
	for _, c := range []struct {
		name  string
		v     *auth.Verifier
		token string
		want  auth.Reason
	}{
		{"HS256 signed with the RSA public key, no secret configured", v, confusion, auth.ReasonAlgorithm},
		{"HS256 signed with the RSA public key, a secret configured", vHMAC, confusion, auth.ReasonSignature},
		{"alg none", v, none, auth.ReasonAlgorithm},
		{"alg none, HMAC configured", vHMAC, none, auth.ReasonAlgorithm},
		{"expired", v, is.RS256(t, claims(clk, jwt.MapClaims{"exp": now.Add(-31 * time.Second).Unix()})), auth.ReasonExpired},
		{"not yet valid", v, is.RS256(t, claims(clk, jwt.MapClaims{"nbf": now.Add(31 * time.Second).Unix()})), auth.ReasonNotYetValid},
		{"issued in the future", v, is.RS256(t, claims(clk, jwt.MapClaims{"iat": now.Add(31 * time.Second).Unix()})), auth.ReasonNotYetValid},
		{"wrong audience", v, is.RS256(t, claims(clk, jwt.MapClaims{"aud": "billing"})), auth.ReasonAudience},
		{"no audience", v, is.RS256(t, claims(clk, jwt.MapClaims{"aud": nil})), auth.ReasonClaims},
		{"wrong issuer", v, is.ES256(t, claims(clk, jwt.MapClaims{"iss": "https://evil.test/"})), auth.ReasonIssuer},
		{"no expiry", v, is.RS256(t, claims(clk, jwt.MapClaims{"exp": nil})), auth.ReasonClaims},
		{"unknown kid", v, jwttest.Sign(t, jwt.SigningMethodRS256, is.RSA, "nobody", claims(clk, nil)), auth.ReasonUnknownKID},
		{"claims swapped under a signature", v, tampered, auth.ReasonSignature},
		{"signature bit flipped", v, flipped, auth.ReasonSignature},
		{"EC-signed token naming the RSA key", v, jwttest.Sign(t, jwt.SigningMethodES256, is.EC, jwttest.RSAKID, claims(clk, nil)), auth.ReasonAlgorithm},
		{"oversized", v, is.RS256(t, claims(clk, jwt.MapClaims{"pad": strings.Repeat("x", 9<<10)})), auth.ReasonOversized},
		{"malformed", v, "a.b.c", auth.ReasonMalformed},
		{"tenant missing", v, is.RS256(t, claims(clk, jwt.MapClaims{"sub": nil})), auth.ReasonClaims},
		{"tenant of the wrong kind", v, is.RS256(t, claims(clk, jwt.MapClaims{"sub": 7})), auth.ReasonClaims},
		{"reserved tenant", v, is.RS256(t, claims(clk, jwt.MapClaims{"sub": "ip:10.0.0.1"})), auth.ReasonClaims},
		{"weight out of range", v, is.RS256(t, claims(clk, jwt.MapClaims{"sluice_weight": 1e9})), auth.ReasonClaims},
		{"priority unknown", v, is.RS256(t, claims(clk, jwt.MapClaims{"sluice_priority": "urgent"})), auth.ReasonClaims},
		{"limit unparsable", v, is.RS256(t, claims(clk, jwt.MapClaims{"sluice_requests": "lots"})), auth.ReasonClaims},
		{"token limit not an integer", v, is.RS256(t, claims(clk, jwt.MapClaims{"sluice_tokens_per_minute": 1.5})), auth.ReasonClaims},
	} {
		_, err := c.v.Verify(context.Background(), c.token)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if got := reasonOf(t, err); got != c.want {
			t.Errorf("%s: reason %s, want %s (%v)", c.name, got, c.want, err)
		}
	}
	// Within the leeway, the same skews pass.
	for name, tok := range map[string]string{
		"expired 29s ago":       is.RS256(t, claims(clk, jwt.MapClaims{"exp": now.Add(-29 * time.Second).Unix()})),
		"valid in 29s":          is.RS256(t, claims(clk, jwt.MapClaims{"nbf": now.Add(29 * time.Second).Unix()})),
		"HS256 with the secret": jwttest.Sign(t, jwt.SigningMethodHS256, []byte(secret), "", claims(clk, nil)),
	} {
		vv := v
		if strings.HasPrefix(name, "HS256") {
			vv = vHMAC
		}
		if _, err := vv.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The clock moves: a token valid now expires.
	tok := is.RS256(t, claims(clk, nil))
	clk.add(time.Hour + 31*time.Second)
	if _, err := v.Verify(context.Background(), tok); err == nil || reasonOf(t, err) != auth.ReasonExpired {
		t.Fatalf("after an hour: %v", err)
	}
}

// A token naming a kid the key set lacks re-fetches the set, at most once
// per jwks_min_refresh however many such tokens arrive: the key set
// server's hits are counted. A key rotated in is found by the next
// refresh allowed.
func TestUnknownKIDRefreshIsRateBounded(t *testing.T) {
	is, v, _, clk := setup(t, nil)
	if h := is.Hits(); h != 1 {
		t.Fatalf("hits at start %d, want 1", h)
	}
	for i := 0; i < 20; i++ {
		tok := jwttest.Sign(t, jwt.SigningMethodRS256, is.RSA, "made-up-"+string(rune('a'+i)), claims(clk, nil))
		if _, err := v.Verify(context.Background(), tok); err == nil || reasonOf(t, err) != auth.ReasonUnknownKID {
			t.Fatalf("made-up kid %d: %v", i, err)
		}
	}
	if h := is.Hits(); h != 2 {
		t.Fatalf("hits after 20 unknown kids %d, want 2 (one refresh)", h)
	}
	rotated := is.AddRSA(t, "rsa-2")
	tok := jwttest.Sign(t, jwt.SigningMethodRS256, rotated, "rsa-2", claims(clk, nil))
	if _, err := v.Verify(context.Background(), tok); err == nil || reasonOf(t, err) != auth.ReasonUnknownKID {
		t.Fatalf("rotated key within the bound: %v", err)
	}
	if h := is.Hits(); h != 2 {
		t.Fatalf("hits %d, want still 2", h)
	}
	clk.add(config.Default().Auth.JWT.JWKSMinRefresh.D())
	tok = jwttest.Sign(t, jwt.SigningMethodRS256, rotated, "rsa-2", claims(clk, nil))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("rotated key after the bound: %v", err)
	}
	if h := is.Hits(); h != 3 {
		t.Fatalf("hits %d, want 3", h)
	}
	// Known kids never fetch.
	for i := 0; i < 5; i++ {
		if _, err := v.Verify(context.Background(), is.ES256(t, claims(clk, nil))); err != nil {
			t.Fatal(err)
		}
	}
	if h := is.Hits(); h != 3 {
		t.Fatalf("hits %d after known kids, want 3", h)
	}
}

// The key set is fetched from the configured URL only, bounded in size:
// a redirect is not followed (the target is never asked) and a key set
// over jwks_max_bytes is refused; either way no keys are held.
func TestJWKSFetchBounds(t *testing.T) {
	is := jwttest.New(t)
	redirect := httptest.NewServer(http.RedirectHandler(is.URL(), http.StatusFound))
	defer redirect.Close()
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":[` + strings.Repeat(`{"kty":"oct","k":"AAAA"},`, 4000) + `{}]}`))
	}))
	defer big.Close()
	clk := newClock()
	for name, url := range map[string]string{"redirect": redirect.URL, "oversized": big.URL} {
		c := jwtConfig(url)
		c.JWKSMaxBytes = 16 << 10
		jwks := auth.NewJWKS(auth.JWKSSettingsOf(c), nil, clk.now)
		v, err := auth.NewVerifier(c, jwks, clk.now)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), is.RS256(t, claims(clk, nil)))
		jwks.Close()
		if err == nil || reasonOf(t, err) != auth.ReasonKeysUnavailable {
			t.Fatalf("%s: %v, want keys_unavailable", name, err)
		}
	}
	if h := is.Hits(); h != 0 {
		t.Fatalf("the redirect target was fetched %d times", h)
	}
}

// Static PEM keys verify tokens naming their kid, or naming none; a file
// holding a private key is refused.
func TestStaticPublicKeys(t *testing.T) {
	is := jwttest.New(t)
	clk := newClock()
	pemFile := jwttest.WritePEM(t, "rsa.pem", is.RSAPublicPEM(t))
	c := jwtConfig("")
	c.PublicKeys = []config.JWTKey{{File: pemFile, KID: "static-1"}}
	v, err := auth.NewVerifier(c, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"static-1", ""} {
		if _, err := v.Verify(context.Background(), jwttest.Sign(t, jwt.SigningMethodRS256, is.RSA, kid, claims(clk, nil))); err != nil {
			t.Fatalf("kid %q: %v", kid, err)
		}
	}
	if _, err := v.Verify(context.Background(), is.ES256(t, claims(clk, nil))); err == nil {
		t.Fatal("an EC token verified against an RSA key")
	}
	c.PublicKeys = []config.JWTKey{{File: jwttest.WritePEM(t, "priv.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))}}
	if _, err := auth.NewVerifier(c, nil, clk.now); err == nil || !strings.Contains(err.Error(), "auth.jwt.public_keys[0].file") {
		t.Fatalf("private key file: %v", err)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	for s, want := range map[string]bool{"a.b.c": true, "sk-abc": false, "a.b": false, "a.b.c.d": false, "..": true} {
		if auth.LooksLikeJWT(s) != want {
			t.Errorf("%q: %v", s, !want)
		}
	}
}

// A token without kid is tried against every key set key of its
// algorithm's kind whose JWK allows it.
func TestTokenWithoutKIDUsesTheKeySet(t *testing.T) {
	is, v, _, clk := setup(t, nil)
	for name, tok := range map[string]string{
		"RS256": jwttest.Sign(t, jwt.SigningMethodRS256, is.RSA, "", claims(clk, nil)),
		"ES256": jwttest.Sign(t, jwt.SigningMethodES256, is.EC, "", claims(clk, nil)),
	} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// The RSA JWK says alg RS256: an RS512 token finds no key it may use.
	tok := jwttest.Sign(t, jwt.SigningMethodRS512, is.RSA, "", claims(clk, nil))
	if _, err := v.Verify(context.Background(), tok); err == nil || reasonOf(t, err) != auth.ReasonAlgorithm {
		t.Fatalf("RS512 against an RS256 JWK: %v", err)
	}
}
