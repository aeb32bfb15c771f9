package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"testing"

	"github.com/sluice-gw/sluice/internal/auth"
)

// signHS256 is a token over payload as given, bytes the claims library
// never wrote (its encoder cannot produce trailing data or a key twice).
func signHS256(key, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(input))
	return input + "." + enc(mac.Sum(nil))
}

// With several issuers the token's iss is read before any signature
// check, to pick the verifier; that read must see the payload as the
// verifier does (jwt.MapClaims through a json.Decoder): the iss key
// exactly, and the first JSON value of the payload. Before, it unmarshalled
// into a struct, which matches "ISS" or "Iss" as iss and refuses what
// follows the object: corp's own token was routed to partner (refused
// "signature") or refused "malformed", though corp's verifier accepts it.
func TestPeekIssuerReadsThePayloadAsTheVerifier(t *testing.T) {
	const partnerSecret = "fedcba9876543210fedcba9876543210-hmac"
	clk := newClock()
	s := buildIssuers(t, parseJWT(t, "    issuers:\n"+
		"      - {name: corp, issuer: "+issuerA+", audience: sluice, hmac_secret: "+secret+", algorithms: [HS256]}\n"+
		"      - {name: partner, issuer: "+issuerB+", audience: sluice, hmac_secret: "+partnerSecret+", algorithms: [HS256]}\n"), clk)
	times := `"iat":` + strconv.FormatInt(clk.now().Unix(), 10) + `,"exp":` + strconv.FormatInt(clk.now().Unix()+3600, 10)
	good := []struct{ name, payload string }{
		{"another key spelled ISS after iss", `{"iss":"` + issuerA + `","ISS":"` + issuerB + `","aud":"sluice","sub":"alice",` + times + `}`},
		{"data after the object", `{"iss":"` + issuerA + `","aud":"sluice","sub":"alice",` + times + `} trailing`},
	}
	for _, c := range good {
		if _, err := s.Verify(context.Background(), signHS256(secret, c.payload)); err != nil {
			t.Errorf("%s: corp's token refused: %v", c.name, err)
		}
	}
	// iss spelled otherwise is no iss to the verifier: refused, and not
	// routed on.
	tok := signHS256(secret, `{"Iss":"`+issuerA+`","aud":"sluice","sub":"alice",`+times+`}`)
	if _, err := s.Verify(context.Background(), tok); err == nil || reasonOf(t, err) != auth.ReasonMalformed {
		t.Errorf("Iss: %v, want malformed (no iss)", err)
	}
}
