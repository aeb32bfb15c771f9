package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"hash"
	"slices"

	"github.com/sluice-gw/sluice/internal/config"
)

// Trust is what a token was accepted on: its issuer's iss and audience,
// and each source of keys that could have verified it (the jwks_url, the
// hmac_secret, each of the public_keys as read: kid and key), as digests.
// A reload whose issuer of that iss has the same iss and audience and
// still every one of those sources (Issuers.Trusts) trusts the token
// still; one that drops the iss, renames the audience, or removes or
// changes any source (a leaked hmac_secret replaced, a key file
// replaced, the provider's key set moved to another URL) no longer does,
// and the gateway ends the token's running requests as a removed API
// key's (gateway keyRequests). A source added cuts nothing: a static key
// is rotated by adding the new one first, and the tokens the old one
// signed are as trusted as before (as a provider's own key rotation at
// the same jwks_url is). What only shapes a token's tenant or limits
// (name, claims, shared_tenants, leeway, algorithms, the jwks_* timings)
// is not in it: editing those cuts nothing.
type Trust struct {
	claims [sha256.Size]byte
	// sources is the issuer's Verifier's own slice, never modified: a
	// request holds it without a copy.
	sources [][sha256.Size]byte
}

// trustOf is the Trust of the issuer c with the static keys read from it.
func trustOf(c config.JWT, static []staticKey) Trust {
	var t Trust
	t.claims = digest(c.Issuer, c.Audience)
	if c.JWKSURL != "" {
		t.sources = append(t.sources, digest("jwks_url", c.JWKSURL))
	}
	if c.HMACSecret != "" {
		t.sources = append(t.sources, digest("hmac_secret", c.HMACSecret))
	}
	for _, k := range static {
		der, err := x509.MarshalPKIXPublicKey(k.key)
		if err != nil { // readPublicKey admits only kinds it marshals
			der = nil
		}
		t.sources = append(t.sources, digest("public_key", k.kid, string(der)))
	}
	return t
}

// digest hashes fields length-prefixed, so that no two lists of fields
// hash alike.
func digest(fields ...string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range fields {
		writeField(h, []byte(f))
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// Trusts reports whether s has an issuer of iss that still trusts a token
// accepted on t before a reload: the same iss and audience, and every
// source of keys t had (more may have been added).
func (s *Issuers) Trusts(iss string, t Trust) bool {
	v := s.byIss[iss]
	if v == nil || v.trust.claims != t.claims {
		return false
	}
	for _, src := range t.sources {
		if !slices.Contains(v.trust.sources, src) {
			return false
		}
	}
	return true
}
