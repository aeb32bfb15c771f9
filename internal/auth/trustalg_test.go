package auth_test

import (
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// A running token is judged on the key material that verified it and on
// its alg, not on the key's config label. Tokens are verified once
// against an issuer with a static RSA key A (kid key-a), a kid-less
// static RSA key N, an hmac_secret and a key set, allowing RS256, PS256,
// HS256 and HS384; then each edit is asked which of them it still
// trusts. Before, algorithms was not in a Trust (dropping RS256 while
// PS256 keeps the key left RS256 tokens running) and a static key's kid
// was (giving N a kid cut its kid-less tokens, which still verify).
func TestTrustIsTheKeyMaterialAndTheAlg(t *testing.T) {
	r := newTrustRig(t, [2]string{"key-a", ""}, "RS256", "PS256", "HS256", "HS384")
	a, n, keyA, keyN := r.signers[0], r.signers[1], r.keys[0], r.keys[1]
	held := r.verify(map[string]string{
		"A RS256, kid":    r.sign(jwt.SigningMethodRS256, a.RSA, "key-a"),
		"A PS256, kid":    r.sign(jwt.SigningMethodPS256, a.RSA, "key-a"),
		"A RS256, no kid": r.sign(jwt.SigningMethodRS256, a.RSA, ""),
		"N RS256, no kid": r.sign(jwt.SigningMethodRS256, n.RSA, ""),
		"N PS256, no kid": r.sign(jwt.SigningMethodPS256, n.RSA, ""),
		"HS256":           r.sign(jwt.SigningMethodHS256, []byte(r.secret), ""),
		"HS384":           r.sign(jwt.SigningMethodHS384, []byte(r.secret), ""),
		"set RS256, kid":  r.set.RS256(t, claims(r.clk, nil)),
	}, nil)

	pkcs1 := func(is *jwttest.Issuer) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&is.RSA.PublicKey)})
	}
	byA := []string{"A RS256, kid", "A PS256, kid", "A RS256, no kid"}
	byN := []string{"N RS256, no kid", "N PS256, no kid"}
	r.checkTrusts(held, []trustEdit{
		{"nothing edited", nil, nil},
		{"RS256 dropped, PS256 kept", func(c *config.JWT) { c.Algorithms = []string{"PS256", "HS256", "HS384"} },
			[]string{"A RS256, kid", "A RS256, no kid", "N RS256, no kid", "set RS256, kid"}},
		{"HS256 dropped, HS384 kept", func(c *config.JWT) { c.Algorithms = []string{"RS256", "PS256", "HS384"} },
			[]string{"HS256"}},
		{"PS256 dropped", func(c *config.JWT) { c.Algorithms = []string{"RS256", "HS256", "HS384"} },
			[]string{"A PS256, kid", "N PS256, no kid"}},
		{"key N given a kid", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{keyA, {File: keyN.File, KID: "key-n"}}
		}, nil},
		{"key A's kid renamed", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: keyA.File, KID: "key-a2"}, keyN}
		}, nil},
		{"key A's kid removed", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: keyA.File}, keyN}
		}, nil},
		{"key A re-encoded as PKCS #1, same key", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: jwttest.WritePEM(t, "a1.pem", pkcs1(a)), KID: "key-a"}, keyN}
		}, nil},
		{"another key under key A's kid", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: jwttest.WritePEM(t, "a2.pem", jwttest.New(t).RSAPublicPEM(t)), KID: "key-a"}, keyN}
		}, byA},
		{"key N removed", func(c *config.JWT) { c.PublicKeys = []config.JWTKey{keyA} }, byN},
	})
}
