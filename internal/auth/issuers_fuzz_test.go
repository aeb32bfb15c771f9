package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/config"
)

// FuzzPeekIssuer: whatever the payload segment of a correctly signed
// HS256 token, peekIssuer never panics and reads the token as the
// verifier does: when the verifier accepts it, the peek returns the
// verifier's issuer (it would have been routed there); when the peek
// returns an iss, jwt's own parser, with the verifier's decoding options,
// reads that same string as the iss; when the peek refuses, that parser
// refuses the token or finds no string iss.
func FuzzPeekIssuer(f *testing.F) {
	const iss, key = "https://a/", "0123456789abcdef0123456789abcdef-hmac"
	c := config.Default().Auth.JWT
	c.Issuer, c.Audience, c.HMACSecret, c.Algorithms = iss, "sluice", key, []string{"HS256"}
	v, err := NewVerifier(c, nil, func() time.Time { return time.Unix(1_800_000_000, 0) })
	if err != nil {
		f.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	claims := `"iss":"https://a/","aud":"sluice","sub":"s","iat":1700000000,"exp":1900000000`
	for _, p := range []string{
		`{` + claims + `}`,
		`{` + claims + `} trailing`,
		`{` + claims + `,"ISS":"https://b/"}`,
		`{"Iss":"https://a/"}`,
		`{"iss":1}`,
		`null`,
		`{"iss":"https:\/\/a\/","iss":"x"}`,
	} {
		f.Add(enc([]byte(p)))
	}
	f.Add(base64.URLEncoding.EncodeToString([]byte(`{` + claims + `}` + "\n"))) // padded
	f.Add(enc([]byte(`{`+claims[:20])) + "\n" + enc([]byte(claims[20:]+`}`)))
	f.Add("")
	header := enc([]byte(`{"alg":"HS256","typ":"JWT"}`))
	f.Fuzz(func(t *testing.T, payload string) {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(header + "." + payload))
		token := header + "." + payload + "." + enc(mac.Sum(nil))
		peeked, peekErr := peekIssuer(token)
		if peekErr != nil && peeked != "" {
			t.Fatalf("error %v with iss %q", peekErr, peeked)
		}
		if _, err := v.Verify(context.Background(), token); err == nil && (peekErr != nil || peeked != iss) {
			t.Fatalf("the verifier accepts %q; the peek: %q %v", payload, peeked, peekErr)
		}
		read := jwt.MapClaims{}
		_, _, parseErr := jwt.NewParser(payloadDecoding()...).ParseUnverified(token, read)
		got, isString := read["iss"].(string)
		switch {
		case peekErr == nil && (parseErr != nil || !isString || got != peeked):
			t.Fatalf("peek routes %q on iss %q; the parser reads %q (%v)", payload, peeked, got, parseErr)
		case peekErr != nil && parseErr == nil && isString:
			t.Fatalf("peek refuses %q (%v); the parser reads iss %q", payload, peekErr, got)
		}
	})
}
