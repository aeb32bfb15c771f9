package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
)

// staticKey is a public key from a PEM file.
type staticKey struct {
	kid string // "" : tried for tokens that name no kid only
	key crypto.PublicKey
	src keySource // staticSource: what a token it verified holds (Trust)
}

// loadStaticKeys reads auth.jwt.public_keys. Errors name the key's path in
// the config.
func loadStaticKeys(keys []config.JWTKey) ([]staticKey, error) {
	out := make([]staticKey, 0, len(keys))
	for i, k := range keys {
		pub, err := readPublicKey(k.File)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.public_keys[%d].file: %w", i, err)
		}
		out = append(out, staticKey{kid: k.KID, key: pub, src: staticSource(pub)})
	}
	return out, nil
}

// readPublicKey reads the first PEM block of file: PUBLIC KEY (PKIX: RSA,
// ECDSA, Ed25519), RSA PUBLIC KEY (PKCS #1) or CERTIFICATE (its key).
// A private key is refused: the gateway never needs one, and a file that
// holds one is in the wrong place.
func readPublicKey(file string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)")
	}
	var pub any
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE") {
			return nil, fmt.Errorf("holds a %s: give the public key only", block.Type)
		}
		return nil, fmt.Errorf("PEM block %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("PEM %s: %w", block.Type, err)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("unsupported key type %T (want RSA, ECDSA or Ed25519)", pub)
}

// isHMAC reports an HS* algorithm: verified with the configured secret
// only, never with any public key.
func isHMAC(alg string) bool { return strings.HasPrefix(alg, "HS") }

// fits reports whether key is of the kind alg verifies with: RSA for RS*
// and PS*, ECDSA on the matching curve for ES*, Ed25519 for EdDSA. A key
// of another kind is never tried, whatever a key set or token says: that
// is what algorithm confusion exploits (a public key's bytes used as an
// HMAC secret, an RSA key offered to an EC verifier).
func fits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}
