package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// A header that names its alg twice, "alg" and a case variant ("ALG"), is
// read two ways: Go's struct decoding (the gateway's header peek) takes
// the last key matching case-insensitively, the JWT library's map the
// exact "alg". Signed PS256 with {"alg":"PS256","ALG":"RS256"}, such a
// token was verified PS256 but held as RS256 (its Trust), so a reload
// dropping PS256 left its running requests going while the reloaded
// config refused the same token anew. It is refused now: one token, one
// alg.
func TestHeaderAlgReadTwoWaysIsRefused(t *testing.T) {
	a := jwttest.New(t)
	clk := newClock()
	c := jwtConfig(jwttest.New(t).URL())
	c.PublicKeys = []config.JWTKey{{File: jwttest.WritePEM(t, "a.pem", a.RSAPublicPEM(t)), KID: "key-a"}}
	c.Algorithms = []string{"RS256", "PS256"}
	running := buildIssuers(t, c, clk)

	enc := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	payload, err := json.Marshal(claims(clk, nil))
	if err != nil {
		t.Fatal(err)
	}
	signing := enc([]byte(`{"alg":"PS256","ALG":"RS256","kid":"key-a","typ":"JWT"}`)) + "." + enc(payload)
	sig, err := jwt.SigningMethodPS256.Sign(signing, a.RSA)
	if err != nil {
		t.Fatal(err)
	}
	tok := signing + "." + enc(sig)

	id, err := running.Verify(context.Background(), tok)
	var f *auth.Failure
	if err == nil {
		c.Algorithms = []string{"RS256"}
		next := buildIssuers(t, c, clk)
		_, again := next.Verify(context.Background(), tok)
		t.Fatalf("a token whose header alg reads PS256 and RS256 accepted; after PS256 is dropped, still trusted %v, verified anew: %v",
			next.Trusts(id.Issuer, id.Trust), again)
	}
	if !errors.As(err, &f) || f.Reason != auth.ReasonMalformed {
		t.Fatalf("refused with %v; want reason %s", err, auth.ReasonMalformed)
	}
}
