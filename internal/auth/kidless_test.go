package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
)

// flakyIssuer is is's key set behind a switch: while down, every fetch is
// a 503, as an identity provider being restarted answers.
func flakyIssuer(t *testing.T, is *jwttest.Issuer) (url string, down *atomic.Bool, hits *atomic.Int64) {
	t.Helper()
	down, hits = new(atomic.Bool), new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if down.Load() {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		is.Server.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/jwks.json", down, hits
}

// A token without kid is checked against every key held, so it never
// looked like an unknown kid and never caused a fetch: with the issuer
// down at the start every such token was refused until the periodic
// refresh (jwks_refresh, 1h), and one signed with a rotated key until the
// same. Now no key held, or no held key verifying it, causes one fetch,
// bounded as unknown kids are.
func TestTokenWithoutKIDFetchesAMissingOrRotatedKeySet(t *testing.T) {
	is := jwttest.New(t)
	url, down, hits := flakyIssuer(t, is)
	down.Store(true)
	clk := newClock()
	c := jwtConfig(url)
	jwks := auth.NewJWKS(auth.JWKSSettingsOf(c), nil, clk.now)
	t.Cleanup(jwks.Close)
	v, err := auth.NewVerifier(c, jwks, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	kidless := func(key any) string {
		return jwttest.Sign(t, jwt.SigningMethodRS256, key, "", claims(clk, nil))
	}
	if _, err := v.Verify(context.Background(), kidless(is.RSA)); err == nil || reasonOf(t, err) != auth.ReasonKeysUnavailable {
		t.Fatalf("issuer down: %v, want keys_unavailable", err)
	}
	if h := hits.Load(); h != 2 {
		t.Fatalf("fetches while down %d, want 2 (the start, the token's)", h)
	}
	down.Store(false)
	clk.add(c.JWKSMinRefresh.D())
	if _, err := v.Verify(context.Background(), kidless(is.RSA)); err != nil {
		t.Fatalf("issuer back, token without kid: %v", err)
	}
	if h := hits.Load(); h != 3 {
		t.Fatalf("fetches %d, want 3", h)
	}

	// Rotation: a new key, tokens still without kid.
	rotated := is.AddRSA(t, "rsa-2")
	clk.add(c.JWKSMinRefresh.D())
	if _, err := v.Verify(context.Background(), kidless(rotated)); err != nil {
		t.Fatalf("rotated key, token without kid: %v", err)
	}
	if h := hits.Load(); h != 4 {
		t.Fatalf("fetches %d, want 4", h)
	}
	// Made-up signatures cost one fetch per jwks_min_refresh.
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(c.JWKSMinRefresh.D())
	for i := 0; i < 20; i++ {
		if _, err := v.Verify(context.Background(), kidless(forger)); err == nil || reasonOf(t, err) != auth.ReasonSignature {
			t.Fatalf("forged %d: %v, want signature", i, err)
		}
	}
	if h := hits.Load(); h != 5 {
		t.Fatalf("fetches after 20 forged tokens %d, want 5 (one)", h)
	}
}

// A key set that failed to fetch is asked again every jwks_min_refresh,
// not every jwks_refresh, with no token arriving: the gateway's key set
// (and sluice_auth_jwks_last_fetch_timestamp_seconds) recovers on its own.
func TestFailedKeySetFetchRetriesAtMinRefresh(t *testing.T) {
	is := jwttest.New(t)
	url, down, _ := flakyIssuer(t, is)
	down.Store(true)
	j := auth.NewJWKS(auth.JWKSSettings{URL: url, Refresh: time.Hour, MinRefresh: 20 * time.Millisecond,
		Timeout: 5 * time.Second, MaxBytes: 1 << 20}, nil, nil)
	t.Cleanup(j.Close)
	if !j.Fetched().IsZero() {
		t.Fatal("fetched while down")
	}
	down.Store(false)
	deadline := time.Now().Add(30 * time.Second) // a generous bound on a 20 ms retry
	for j.Fetched().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the key set was not fetched again within 30 s of the issuer's return (jwks_refresh is 1h)")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
