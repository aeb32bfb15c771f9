package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/config"
)

// bodyAnswer answers every request 200 with one body: the key set under
// test, without a socket per input.
type bodyAnswer []byte

func (b bodyAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(b)), Request: r}, nil
}

// FuzzJWKSBody: whatever the issuer's key set endpoint answers (any JSON,
// any keys, damaged or hostile), fetching it never panics, and a token
// verifies only when the set holds the key that signed it: an ES256 token
// of a key whose x coordinate the body does not carry, and an HS256 token
// whose secret is that coordinate (algorithm confusion), never verify.
func FuzzJWKSBody(f *testing.F) {
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	pt, err := ek.PublicKey.Bytes()
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	x, y := b64(pt[1:33]), b64(pt[33:])
	claims := jwt.MapClaims{"iss": "i", "aud": "a", "sub": "s", "iat": 1e9, "exp": 1e9 + 3600}
	sign := func(m jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(m, claims)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	es := sign(jwt.SigningMethodES256, ek)
	hs := sign(jwt.SigningMethodHS256, []byte(x))

	good := []byte(`{"keys":[{"kty":"EC","kid":"k1","use":"sig","alg":"ES256","crv":"P-256","x":"` + x + `","y":"` + y + `"}]}`)
	f.Add(good)
	f.Add([]byte(`{"keys":[{"kty":"EC","kid":"k1","crv":"P-256","x":"` + y + `","y":"` + x + `"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","kid":"k1","k":"` + b64([]byte(x)) + `"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"k1","n":"AQAB","e":"AA"},{"kty":"RSA","n":"","e":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"},{"kty":"EC","crv":"P-521","x":"AA","y":"AA"},null,{}]}`))
	f.Add([]byte(`{"keys":null}`))

	c := config.Default().Auth.JWT
	c.JWKSURL, c.Issuer, c.Audience, c.Algorithms = "http://issuer.test/jwks.json", "i", "a", []string{"RS256", "ES256"}
	now := func() time.Time { return time.Unix(1e9+60, 0) }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	verify := func(body []byte) (hsErr, esErr error) {
		j := &JWKS{set: JWKSSettingsOf(c), log: log, now: now,
			client: &http.Client{Transport: bodyAnswer(body), Timeout: time.Second}}
		j.ctx, j.cancel = context.WithCancel(context.Background())
		defer j.Close()
		j.fetch()
		v, err := NewVerifier(c, j, now)
		if err != nil {
			return err, err
		}
		_, hsErr = v.Verify(context.Background(), hs)
		_, esErr = v.Verify(context.Background(), es)
		return hsErr, esErr
	}
	// The harness serves the set for real: the set holding the key
	// verifies its token.
	if _, err := verify(good); err != nil {
		f.Fatalf("the signing key's own set: %v", err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		hsErr, err := verify(body)
		if hsErr == nil {
			t.Fatalf("an HS256 token verified with the key set %s", body)
		}
		var fl *Failure
		if err != nil && !errors.As(err, &fl) {
			t.Fatalf("refusal %v is not a *Failure", err)
		}
		if err == nil && !(bytes.Contains(body, []byte(x)) || bytes.Contains(body, []byte(strings.TrimRight(base64.URLEncoding.EncodeToString(pt[1:33]), "=")))) {
			t.Fatalf("a token verified by a key set without its key: %s", body)
		}
	})
}
