// Package jwttest is a token issuer for tests: RSA and EC P-256 signing
// keys generated per test, their JWKS served by a real HTTP server on
// loopback that counts its fetches, and a signer. It follows RFC 7517/7518
// for the key set, so the gateway fetches it exactly as it would an
// identity provider's.
package jwttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer signs tokens and serves its public keys.
type Issuer struct {
	RSA *rsa.PrivateKey // kid RSAKID
	EC  *ecdsa.PrivateKey
	// Server serves the key set at Server.URL + "/jwks.json".
	Server *httptest.Server

	hits  atomic.Int64
	mu    sync.Mutex
	extra []map[string]string // keys added by AddRSA (rotation)
}

// The key ids of the issuer's keys.
const (
	RSAKID = "rsa-1"
	ECKID  = "ec-1"
)

// New makes an issuer and starts its key set server; both end with t.
func New(t testing.TB) *Issuer {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{RSA: rk, EC: ek}
	is.Server = httptest.NewServer(http.HandlerFunc(is.serve))
	t.Cleanup(is.Server.Close)
	return is
}

// URL is the key set's address.
func (is *Issuer) URL() string { return is.Server.URL + "/jwks.json" }

// Hits is how many times the key set was fetched.
func (is *Issuer) Hits() int64 { return is.hits.Load() }

// AddRSA publishes another RSA key under kid (a rotation) and returns it.
func (is *Issuer) AddRSA(t testing.TB, kid string) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	is.extra = append(is.extra, rsaJWK(&k.PublicKey, kid))
	is.mu.Unlock()
	return k
}

func (is *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/jwks.json" {
		http.NotFound(w, r)
		return
	}
	is.hits.Add(1)
	is.mu.Lock()
	keys := []map[string]string{rsaJWK(&is.RSA.PublicKey, RSAKID), ecJWK(&is.EC.PublicKey, ECKID)}
	keys = append(keys, is.extra...)
	is.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(k *rsa.PublicKey, kid string) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(k *ecdsa.PublicKey, kid string) map[string]string {
	b, err := k.Bytes() // uncompressed point: 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	n := (len(b) - 1) / 2
	return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
		"x": b64(b[1 : 1+n]), "y": b64(b[1+n:])}
}

// Sign signs claims with method and key, naming kid in the header ("" : no kid).
func Sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// RS256 signs claims with the issuer's RSA key.
func (is *Issuer) RS256(t testing.TB, claims jwt.MapClaims) string {
	return Sign(t, jwt.SigningMethodRS256, is.RSA, RSAKID, claims)
}

// ES256 signs claims with the issuer's EC key.
func (is *Issuer) ES256(t testing.TB, claims jwt.MapClaims) string {
	return Sign(t, jwt.SigningMethodES256, is.EC, ECKID, claims)
}

// RSAPublicPEM is the RSA public key as a PEM PUBLIC KEY block: what an
// attacker has, and what algorithm confusion signs HS256 tokens with.
func (is *Issuer) RSAPublicPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&is.RSA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// WritePEM writes b into a file of t's temporary directory.
func WritePEM(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
