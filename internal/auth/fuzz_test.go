package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// FuzzPeekHeader: the pre-parse of a bearer that looks like a JWT never
// panics, accepts only three base64url segments with a JSON header naming
// an algorithm, and agrees with LooksLikeJWT.
func FuzzPeekHeader(f *testing.F) {
	for _, s := range []string{
		"eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.e30.c2ln", // {"alg":"RS256","kid":"rsa-1"}
		"eyJhbGciOiJub25lIn0.e30.",                         // {"alg":"none"}
		"eyJhbGciOiJIUzI1NiIsImNyaXQiOlsiYiJdfQ.e30.c2ln",  // crit
		"eyJhbGciOjF9.e30.c2ln",                            // alg a number
		"eyJhbGciOiJSUzI1NiIsImtpZCI6N30.e30.c2ln",         // kid a number
		"e30.e30.e30", "..", "a.b.c", "sk-abc", "eyJ.eyJ.", "=.=.=", "a.b.c.d", "\x00.\x00.\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := peekHeader(s)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v is not errMalformed", err)
			}
			return
		}
		if !LooksLikeJWT(s) || h.Alg == "" || strings.ContainsFunc(s, func(r rune) bool { return r != '.' && !isBase64URL(byte(r)) || r > 0x7f }) {
			t.Fatalf("accepted %q as %+v", s, h)
		}
		if !h.HasKid && h.Kid != "" {
			t.Fatalf("kid %q without HasKid", h.Kid)
		}
	})
}

// FuzzVerify: whatever the bearer, a verifier (HMAC and a static key set)
// refuses it with a *Failure, never a panic, and never accepts a token it
// did not sign.
func FuzzVerify(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add(strings.Repeat("A", 9000) + ".e30.e30")
	c := config.Default().Auth.JWT
	c.HMACSecret, c.Algorithms, c.Issuer, c.Audience = strings.Repeat("k", 32), []string{"HS256"}, "i", "a"
	v, err := NewVerifier(c, nil, func() time.Time { return time.Unix(1e9, 0) })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, err := v.Verify(context.Background(), s)
		var fl *Failure
		if err == nil || !errors.As(err, &fl) || fl.Reason == "" {
			t.Fatalf("%q: %v", s, err)
		}
	})
}
