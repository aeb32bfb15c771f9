package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"hash"

	"github.com/sluice-gw/sluice/internal/config"
)

// Trust is what a token was accepted on: its issuer's iss and audience
// and the source of the keys that verified it (the jwks_url, the
// hmac_secret, the public_keys as read: kid and key), as a digest. Two
// configs of an issuer with the same Trust accept the same tokens from
// the same signers; a reload that drops the iss, or changes any of these
// (a leaked hmac_secret replaced, a key file rotated, the provider's key
// set moved to another URL, the audience renamed), no longer trusts the
// tokens accepted before, and the gateway ends their running requests as
// a removed API key's (gateway keyRequests). What only shapes a token's
// tenant or limits (name, claims, shared_tenants, leeway, algorithms, the
// jwks_* timings) is not in it: editing those cuts nothing.
type Trust [sha256.Size]byte

// trustOf is the Trust of the issuer c with the static keys read from it.
func trustOf(c config.JWT, static []staticKey) Trust {
	h := sha256.New()
	field := func(s string) { writeField(h, []byte(s)) }
	field(c.Issuer)
	field(c.Audience)
	field(c.JWKSURL)
	field(c.HMACSecret)
	for _, k := range static {
		field(k.kid)
		der, err := x509.MarshalPKIXPublicKey(k.key)
		if err != nil { // readPublicKey admits only kinds it marshals
			der = nil
		}
		writeField(h, der)
	}
	var t Trust
	h.Sum(t[:0])
	return t
}

// writeField writes b length-prefixed, so that no two lists of fields
// hash alike.
func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// Trusts reports whether s has an issuer of iss whose Trust is t: a token
// accepted with t before a reload is still trusted by the issuers after.
func (s *Issuers) Trusts(iss string, t Trust) bool {
	v := s.byIss[iss]
	return v != nil && v.trust == t
}
