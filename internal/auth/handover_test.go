package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// A source made for new settings of the same URL takes over the keys of
// the one it replaces, which may then be closed: they verify until its own
// fetch succeeds (here never: the provider is gone). A source for another
// URL is another provider and takes nothing: its tokens are not judged.
func TestNewJWKSAfterHandsOverTheKeysOfTheSameURLOnly(t *testing.T) {
	is := jwttest.New(t)
	clk := newClock()
	c := jwtConfig(is.URL())
	prev := auth.NewJWKS(auth.JWKSSettingsOf(c), nil, clk.now)
	token := is.RS256(t, claims(clk, nil))
	is.Server.Close() // the provider goes down before the reload

	changed := c
	changed.JWKSTimeout = config.Duration(3 * time.Second)
	next := auth.NewJWKSAfter(prev, auth.JWKSSettingsOf(changed), nil, clk.now)
	t.Cleanup(next.Close)
	prev.Close() // the swap closes the replaced source; the keys stay
	if !next.HandedOver() || next.Fetched().IsZero() {
		t.Fatalf("handed over %v, fetched %v: want the replaced source's keys and fetch time", next.HandedOver(), next.Fetched())
	}
	v, err := auth.NewVerifier(changed, next, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("a token of the keys held before the change: %v", err)
	}
	if state, _, _ := v.KeySet(); state != auth.KeySetDegraded {
		t.Fatalf("key set state %q, want degraded (keys held, the last fetch failed)", state)
	}

	other := jwtConfig("http://127.0.0.1:1/jwks.json") // another provider, unreachable
	moved := auth.NewJWKSAfter(next, auth.JWKSSettingsOf(other), nil, clk.now)
	t.Cleanup(moved.Close)
	v, err = auth.NewVerifier(other, moved, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	var f *auth.Failure
	if _, err := v.Verify(context.Background(), token); !errors.As(err, &f) || f.Reason != auth.ReasonKeysUnavailable {
		t.Fatalf("a new URL's source: %v, want keys_unavailable (nothing handed over)", err)
	}
}
